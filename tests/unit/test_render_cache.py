"""A re-plan keeps the nodes an edit did not touch as the plan on disk has them
(cruijff.compiler.render_cache): the plan directory it leaves must be byte for byte the one a plan
from scratch writes, after any kind of edit, and only the nodes an edit touched (or whose files
were deleted or edited since) are rendered again."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from cruijff.compiler import pipeline, render_cache, renderer
from cruijff.compiler.render.yaml import dump_yaml
from cruijff.compiler.write import write_plan
from cruijff.lock import LOCK_FILE
from cruijff.plan import plan_digest

REPO = Path(__file__).resolve().parents[2]
# token lengths are not this test's business (a real model folder would start the measuring subprocess)
UNMEASURED = {"measure": lambda requests: {r["key"]: {"error": "not measured here"} for r in requests}}
TASK = "from inspect_ai import task\n\n\n@task\ndef exact(**kwargs):\n    pass\n"


@pytest.fixture
def renders(tmp_path, monkeypatch):
    """Node ids rendered (the real renderer, counted); cruijff's cache in tmp_path."""
    monkeypatch.setenv("CRUIJFF_CACHE_DIR", str(tmp_path / "cache"))
    seen: list[str] = []
    real = renderer.Renderer.render

    def render(self, spec):
        seen.append(spec.id)
        return real(self, spec)

    monkeypatch.setattr(renderer.Renderer, "render", render)
    return seen


def tree(root: Path) -> dict[str, bytes]:
    """The plan's files: plan.json and those beside it, and its nodes' (a node an edit removed keeps
    its folder; the lock file says who holds it)."""
    folders = [root, *(root / n["id"] for n in json.loads((root / "plan.json").read_text())["nodes"])]
    return {str(f.relative_to(root)): f.read_bytes() for folder in folders for f in sorted(folder.iterdir())
            if f.is_file() and f.name != LOCK_FILE}


def plan_into(path: Path, *, reuse: bool = True, **kw) -> tuple:
    """Compile and write as `cruijff plan` does (with reuse: keeping what the plan on disk has, then
    saving the cache); everything the plan directory then holds, the node hashes and the store keys."""
    compiled = pipeline.compile_manifest(path, reuse=reuse, **kw)
    data = compiled.plan_json()
    write_plan(compiled.plan, pipeline.with_store_keys(compiled), compiled.previous, data)
    if reuse:
        render_cache.save(compiled.plan.output_dir, *compiled.rendered, plan_digest(data))
    return (tree(Path(compiled.plan.output_dir)), [(n.id, n.hash, n.inputs) for n in compiled.plan.nodes],
            json.dumps(compiled.store, sort_keys=True, default=str))


def from_scratch(path: Path, **kw) -> tuple:
    """The same plan rendered whole into an emptied plan directory."""
    out = Path(kw.get("out") or pipeline.check(path, check_paths=False).manifest["output_dir"])
    shutil.rmtree(out)
    return plan_into(path, reuse=False, **kw)


@pytest.mark.parametrize("name", ["tiny", "twins", "capitalization", "smollm2", "tiny_prompts"])
def test_a_replan_of_a_shipped_experiment_reuses_every_node_and_equals_a_full_render(name, tmp_path, renders,
                                                                                     monkeypatch):
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    path = REPO / "experiments" / f"{name}.yaml"
    out = str(tmp_path / "plan")
    first = plan_into(path, out=out, check_paths=False)
    renders.clear()
    again = plan_into(path, out=out, check_paths=False)
    assert [i for i in renders if not i.startswith("prepare/")] == [], "an unchanged compile rendered nodes again"
    assert again == first == from_scratch(path, out=out, check_paths=False)


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
    plan_into(write(tmp_path), **UNMEASURED)
    assert len(renders) == 9
    path = write(tmp_path, **change)
    renders.clear()
    reused = plan_into(path, **UNMEASURED)
    assert len(renders) == rendered_again, renders
    assert reused == from_scratch(path, **UNMEASURED)


def test_a_cache_from_another_cruijff_or_a_damaged_one_is_a_miss(tmp_path, renders, monkeypatch):
    path = write(tmp_path)
    first = plan_into(path, **UNMEASURED)
    cache = render_cache._path(str(tmp_path / "out"))
    cache.write_bytes(cache.read_bytes()[:100])  # truncated
    renders.clear()
    assert plan_into(path, **UNMEASURED) == first
    assert len(renders) == 9
    monkeypatch.setattr("cruijff.compiler.replan.code_signature", lambda: "another cruijff")
    renders.clear()
    assert plan_into(path, **UNMEASURED) == first
    assert len(renders) == 9


@pytest.mark.parametrize("ahead", [True, False], ids=["checked by a child", "checked here"])
def test_a_kept_nodes_file_deleted_or_edited_since_is_rendered_and_written_again(ahead, tmp_path, renders,
                                                                                 monkeypatch):
    # a child whatever the machine's cores, or none
    monkeypatch.setattr("cruijff.cores.workers", lambda: 2 if ahead else 1)
    path = write(tmp_path)
    first = plan_into(path, **UNMEASURED)
    (tmp_path / "out" / "finetune" / first[1][0][0].split("/", 1)[1] / "finetune.yaml").unlink()
    job = next((tmp_path / "out" / "eval").rglob("job.sbatch"))
    job.write_text(job.read_text() + "# an edit\n")
    renders.clear()
    assert plan_into(path, **UNMEASURED) == first
    assert sorted(renders) == sorted([first[1][0][0], str(job.parent.relative_to(tmp_path / "out"))])


def test_the_childs_check_of_the_kept_files_is_the_one_done_here_and_counts_only_for_the_cache_file_it_read(
        tmp_path, renders, monkeypatch):
    monkeypatch.setattr("cruijff.cores.workers", lambda: 2)
    plan_into(write(tmp_path), **UNMEASURED)
    out = str(tmp_path / "out")
    job = next((tmp_path / "out" / "eval").rglob("job.sbatch"))
    job.unlink()
    cache = render_cache._path(out)
    entries, identity = pickle.loads(cache.read_bytes())["nodes"], render_cache._identity(cache.stat())
    here = render_cache.missing(out, entries)
    assert here == {str(job.parent.relative_to(tmp_path / "out"))}
    ahead = render_cache.check_ahead(out)
    assert ahead is not None
    assert ahead.result() == (identity, here)
    with pytest.raises(ChildProcessError):  # the child was waited for
        os.waitpid(ahead.pid, os.WNOHANG)

    class AboutAnotherFile:  # the cache was replaced after the child read it
        def result(self):
            return (identity[0], identity[1] + 1, *identity[2:]), set()

    assert render_cache.missing(out, entries, identity, AboutAnotherFile()) == here
    assert render_cache.check_ahead(str(tmp_path / "never planned")) is None  # no cache: no child


def test_beside_a_plan_json_another_command_wrote_every_node_is_rendered(tmp_path, renders):
    """`cruijff apply MANIFEST` plans without the cache: the cache is not that plan's."""
    plan_into(write(tmp_path), **UNMEASURED)
    path = write(tmp_path, lrs=(1e-5, 2e-5, 4e-5))
    plan_into(path, reuse=False, **UNMEASURED)
    renders.clear()
    assert plan_into(path, **UNMEASURED) == from_scratch(path, **UNMEASURED)
    assert len(renders) == 9 + 9  # every node, then every node from scratch


def test_a_cache_saved_late_by_a_plan_whose_plan_json_was_replaced_since_is_not_used(tmp_path, renders):
    """Two plans of one directory at once: the first one's cache, saved after the second wrote its
    plan.json, names the plan.json the first wrote, so the next plan does not take it for the other."""
    first = pipeline.compile_manifest(write(tmp_path), reuse=True, **UNMEASURED)
    first_json = first.plan_json()
    write_plan(first.plan, pipeline.with_store_keys(first), first.previous, first_json)
    path = write(tmp_path, lrs=(1e-5, 2e-5, 4e-5))
    plan_into(path, **UNMEASURED)  # the second plan, its cache saved
    render_cache.save(first.plan.output_dir, *first.rendered, plan_digest(first_json))  # the first's, late
    renders.clear()
    assert plan_into(path, **UNMEASURED) == from_scratch(path, **UNMEASURED)
    assert len(renders) == 9 + 9


def test_only_the_most_recent_plan_directories_renderings_are_kept(tmp_path, renders, monkeypatch):
    monkeypatch.setattr(render_cache, "KEEP", 2)
    path = write(tmp_path)
    for i in range(4):
        plan_into(path, out=str(tmp_path / f"out{i}"), **UNMEASURED)
    kept = sorted(p.name for p in (tmp_path / "cache" / "plans").glob("*.nodes"))
    assert kept == sorted(render_cache._path(str(tmp_path / f"out{i}")).name for i in (2, 3))


def test_cruijff_plan_after_one_edit_renders_only_the_touched_nodes_and_writes_what_a_plan_from_scratch_does(
        tmp_path, renders):
    """Through the command: `cruijff plan` saves the cache beside the plan.json it wrote, the next
    one keeps the untouched nodes (their lines in plan.json included) and renders the rest."""
    from click.testing import CliRunner

    from cruijff.cli import cli

    def plan(path: Path) -> dict:
        res = CliRunner().invoke(cli, ["plan", str(path), "--json"])
        assert res.exit_code == 0, (res.output, res.exception)
        return json.loads(res.output)

    plan(write(tmp_path))
    path = write(tmp_path, lrs=(1e-5, 2e-5, 4e-5))
    renders.clear()
    changes = plan(path)["changes"]
    assert len(renders) == 3 and all("4e-5" in node_id for node_id in renders)  # the new run's nodes
    assert changes["unchanged"] == 6 and changes["added"] == changes["removed"] == 3
    reused = tree(tmp_path / "out")
    assert reused == from_scratch(path, **UNMEASURED)[0]


def test_the_cache_holds_each_distinct_job_script_header_shape_once_per_plan_that_rendered_it(tmp_path, renders):
    """Thousands of nodes share a few header shapes: the nodes one plan renders share one object
    per shape (pickled once, loaded once); a kept node keeps the object it was loaded with."""
    def objects() -> tuple[int, int, int]:
        shapes = [entry[6] for entry in render_cache._read(str(tmp_path / "out"))[1]["nodes"].values()]
        return len(shapes), len(set(shapes)), len({id(s) for s in shapes})

    plan_into(write(tmp_path), **UNMEASURED)
    nodes, distinct, first = objects()
    assert nodes == 9 and first == distinct < nodes
    plan_into(write(tmp_path, lrs=(1e-5, 2e-5, 4e-5)), **UNMEASURED)  # three nodes rendered, six kept
    assert objects() == (9, distinct, 2 * distinct)
