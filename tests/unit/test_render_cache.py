"""A re-plan reuses the last plan's rendering of untouched nodes (cruijff.compiler.render_cache):
what it gives must be byte for byte what rendering every node gives, after any kind of edit, and
only the nodes an edit touched are rendered again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cruijff.compiler import pipeline, render_cache
from cruijff.compiler.render.yaml import dump_yaml
from cruijff.store.keys import SETTINGS_FILE

REPO = Path(__file__).resolve().parents[2]
# token lengths are not this test's business (a real model folder would start the measuring subprocess)
UNMEASURED = {"measure": lambda requests: {r["key"]: {"error": "not measured here"} for r in requests}}
TASK = "from inspect_ai import task\n\n\n@task\ndef exact(**kwargs):\n    pass\n"


@pytest.fixture
def renders(tmp_path, monkeypatch):
    """Node ids rendered (the real renderer, counted); cruijff's cache in tmp_path."""
    monkeypatch.setenv("CRUIJFF_CACHE_DIR", str(tmp_path / "cache"))
    seen: list[str] = []
    real = pipeline._Renderer.render

    def render(self, spec):
        seen.append(spec.id)
        return real(self, spec)

    monkeypatch.setattr(pipeline._Renderer, "render", render)
    return seen


def outcome(compiled) -> tuple:
    """Everything a compile hands on: files, node hashes, store keys, and the text of
    store-settings.json (put together from each node's settings text, kept by the cache; test_store
    checks the joining against the whole document)."""
    written = pipeline.with_store_keys(compiled)[SETTINGS_FILE]
    return (compiled.files, [(n.id, n.hash, n.inputs) for n in compiled.plan.nodes],
            json.dumps(compiled.store, sort_keys=True, default=str), written)


def compile_and_save(path: Path, **kw):
    compiled = pipeline.compile_manifest(path, reuse=True, **kw)
    render_cache.save(compiled.plan.output_dir, *compiled.rendered)
    return compiled


@pytest.mark.parametrize("name", ["tiny", "twins", "capitalization", "smollm2", "tiny_prompts"])
def test_a_replan_of_a_shipped_experiment_reuses_every_node_and_equals_a_full_render(name, tmp_path, renders,
                                                                                     monkeypatch):
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    path = REPO / "experiments" / f"{name}.yaml"
    out = str(tmp_path / "plan")
    first = compile_and_save(path, out=out, check_paths=False)
    renders.clear()
    again = compile_and_save(path, out=out, check_paths=False)
    assert [i for i in renders if not i.startswith("prepare/")] == [], "an unchanged compile rendered nodes again"
    fresh = pipeline.compile_manifest(path, out=out, check_paths=False)
    assert outcome(again) == outcome(fresh) == outcome(first)


def write(tmp: Path, *, lrs=(1e-5, 2e-5, 3e-5), batch_size=2, system="Capitalize.", task=TASK, data="a",
          model_folder=False) -> Path:
    if model_folder:  # reachable now: its jobs no longer check it when they start
        (tmp / "model").mkdir(exist_ok=True)
        for name in ("config.json", "tokenizer.json", "model.safetensors"):
            (tmp / "model" / name).write_text("{}")
    (tmp / "tasks.py").write_text(task)
    (tmp / "words.json").write_text(json.dumps(
        {s: [{"input": data, "output": data.upper()}] * 8 for s in ("train", "validation", "test")}))
    m = {"experiment": "rc", "output_dir": str(tmp / "out"), "executor": {"kind": "slurm"},
         "models": {"tiny": {"path": str(tmp / "model"), "family": "custom",
                             "builder": {"_component_": "torchtune.models.llama3.lora_llama3"},
                             "checkpoint_files": ["model.safetensors"], "model_type": "LLAMA3"}},
         "datasets": {"words": {"path": "words.json", "format": "instruct_json"}},
         "prompt": {"system": system, "template": "{input}"},
         "finetune": {"hyperparameters": {"epochs": 2, "batch_size": batch_size}, "save_epochs": "all"},
         "grid": {"lr": list(lrs)},
         "eval": {"tasks": [{"name": "exact", "file": "tasks.py", "task": "exact"}], "epochs": "all"}}
    path = tmp / "m.yaml"
    path.write_text(dump_yaml(m))
    return path


# edit → how many nodes it must render again (3 runs, each a fine-tune and 2 evaluations)
EDITS = {
    "one grid value": ({"lrs": (1e-5, 2e-5, 4e-5)}, 3),
    "a grid value added": ({"lrs": (1e-5, 2e-5, 3e-5, 5e-5)}, 3),
    "a hyperparameter outside the grid": ({"batch_size": 4}, 9),
    "the prompt": ({"system": "Capitalize the word."}, 9),
    "the task file's content": ({"task": TASK + "\n# fixed\n"}, 6),
    "the dataset's bytes": ({"data": "b"}, 9),
    "the model folder appearing": ({"model_folder": True}, 9),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_after_an_edit_only_the_touched_nodes_are_rendered_and_the_plan_equals_a_full_render(edit, tmp_path, renders):
    change, rendered_again = EDITS[edit]
    compile_and_save(write(tmp_path), **UNMEASURED)
    assert len(renders) == 9
    path = write(tmp_path, **change)
    renders.clear()
    reused = compile_and_save(path, **UNMEASURED)
    assert len(renders) == rendered_again, renders
    assert outcome(reused) == outcome(pipeline.compile_manifest(path, **UNMEASURED))


def test_a_cache_from_another_cruijff_or_a_damaged_one_is_a_miss(tmp_path, renders, monkeypatch):
    path = write(tmp_path)
    compiled = compile_and_save(path)
    cache = render_cache._path(compiled.plan.output_dir)
    cache.write_bytes(cache.read_bytes()[:100])  # truncated
    renders.clear()
    assert outcome(compile_and_save(path)) == outcome(compiled)
    assert len(renders) == 9
    monkeypatch.setattr("cruijff.compiler.replan.code_signature", lambda: "another cruijff")
    renders.clear()
    assert outcome(compile_and_save(path)) == outcome(compiled)
    assert len(renders) == 9


def test_only_the_most_recent_plan_directories_renderings_are_kept(tmp_path, renders, monkeypatch):
    monkeypatch.setattr(render_cache, "KEEP", 2)
    path = write(tmp_path)
    for i in range(4):
        compile_and_save(path, out=str(tmp_path / f"out{i}"), **UNMEASURED)
    kept = sorted(p.name for p in (tmp_path / "cache" / "plans").glob("*.nodes"))
    assert kept == sorted(render_cache._path(str(tmp_path / f"out{i}")).name for i in (2, 3))
