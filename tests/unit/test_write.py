"""Writing a plan directory: nothing partial on error, the old plan.json kept, and the diff."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cruijff.compiler import write as write_mod
from cruijff.compiler.pipeline import compile_manifest
from cruijff.errors import ManifestError, StateError
from cruijff.compiler.write import write_plan

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "manifests"


def manifest(tmp_path: Path, *, lr=(1e-4, 3e-4), epochs=2, tasks=("a",), broken=False) -> Path:
    text = f"""
experiment: write-test
output_dir: out
models:
  tiny:
    path: model
    family: custom
    builder: {{_component_: torchtune.models.llama3.lora_llama3}}
    tokenizer: {{_component_: torchtune.models.qwen2.qwen2_tokenizer, path: vocab.json}}
    checkpoint_files: [model.safetensors]
    model_type: LLAMA3
datasets:
  words: {{path: {FIXTURES / 'data' / 'words.json'}, format: instruct_json}}
finetune:
  hyperparameters: {{epochs: {epochs}}}
  save_epochs: all
  resources: {{gpus: 0}}
grid:
  lr: [{', '.join(map(str, lr))}]
eval:
  tasks: [{', '.join(f'{{name: {t}, file: {t}.py, task: {t}}}' for t in tasks)}]
  epochs: {'[7]' if broken else 'last'}
"""
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    for t in tasks:  # a file per task: adding task b must not edit task a's file (its hash reads it)
        (tmp_path / f"{t}.py").write_text(f"from inspect_ai import task\n\n\n@task\ndef {t}(**kwargs):\n    pass\n")
    return path


def plan_dir(path: Path):
    compiled = compile_manifest(path)
    return compiled, write_plan(compiled.plan, compiled.files)


def tree(root: Path) -> dict[str, str]:
    """Files under root, less the lock file (its holder's pid and time: cruijff/lock.py)."""
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file() and p.name != ".cruijff.lock"}


def test_failing_manifest_writes_nothing(tmp_path):
    path = manifest(tmp_path, broken=True)
    with pytest.raises(ManifestError):
        plan_dir(path)
    assert not (tmp_path / "out").exists()


def test_plan_directory_layout(tmp_path):
    compiled, diff = plan_dir(manifest(tmp_path))
    out = tmp_path / "out"
    assert set(tree(out)) == {*compiled.files, "plan.json"}
    plan = json.loads((out / "plan.json").read_text())
    assert [n["id"] for n in plan["nodes"]] == [n.id for n in compiled.plan.nodes]
    script = out / compiled.plan.nodes[0].script
    assert os.access(script, os.X_OK)
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name != ".cruijff.lock"], "temporary files left behind"
    assert len(diff.added) == len(compiled.plan.nodes) and not diff.changed and not diff.removed


def test_replan_after_an_edit_reports_the_diff(tmp_path):
    first, _ = plan_dir(manifest(tmp_path, lr=(1e-4, 3e-4)))
    # drop lr 3e-4, add 1e-3, add a task: its evals are new; the kept run's fine-tune is unchanged
    second, diff = plan_dir(manifest(tmp_path, lr=(1e-4, 1e-3), tasks=("a", "b")))
    ids1 = {n.id for n in first.plan.nodes}
    ids2 = {n.id for n in second.plan.nodes}
    assert set(diff.added) == ids2 - ids1
    assert set(diff.removed) == ids1 - ids2
    assert "finetune/tiny_words_lr1e-4" in diff.unchanged
    assert "eval/tiny_words_lr1e-4/epoch_1/a" in diff.unchanged
    assert "eval/tiny_words_lr1e-4/epoch_1/b" in diff.added
    assert not diff.changed
    # a change that alters the fine-tune changes it and every evaluation below it
    third, diff = plan_dir(manifest(tmp_path, lr=(1e-4, 1e-3), tasks=("a", "b"), epochs=3))
    assert "finetune/tiny_words_lr1e-4" in diff.changed
    assert "eval/tiny_words_lr1e-4/epoch_1/a" in diff.removed and "eval/tiny_words_lr1e-4/epoch_2/a" in diff.added
    _, diff = plan_dir(manifest(tmp_path, lr=(1e-4, 1e-3), tasks=("a", "b"), epochs=3))
    assert not diff.added and not diff.changed and not diff.removed
    assert len(diff.unchanged) == len(third.plan.nodes)


def test_unchanged_files_are_not_rewritten(tmp_path):
    compiled, _ = plan_dir(manifest(tmp_path))
    target = tmp_path / "out" / compiled.plan.nodes[0].script
    before = target.stat().st_ino
    plan_dir(manifest(tmp_path))
    assert target.stat().st_ino == before


def test_write_failure_keeps_the_old_plan(tmp_path, monkeypatch):
    path = manifest(tmp_path)
    plan_dir(path)
    out = tmp_path / "out"
    old = tree(out)
    calls = {"n": 0}
    real = write_mod._write_new

    def flaky(p, data, executable):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device", p)
        return real(p, data, executable)

    monkeypatch.setattr(write_mod, "_write_new", flaky)
    with pytest.raises(StateError) as info:
        plan_dir(manifest(tmp_path, lr=(1e-4, 1e-3), tasks=("a", "b")))
    assert "previous plan.json is unchanged" in str(info.value.hint)
    assert tree(out) == old, "a failed write changed the plan directory"
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name != ".cruijff.lock"]


def test_unwritable_output_dir_is_a_state_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    compiled = compile_manifest(manifest(tmp_path), out=str(blocker / "out"))
    with pytest.raises(StateError):
        write_plan(compiled.plan, compiled.files)


# --- the plan.json a re-plan replaces (cruijff.plan.PlanText) -------------------------------------

def test_the_plan_json_read_by_line_is_the_plan_json_parsed_whole(tmp_path):
    """Each node's id, hash and line found by slicing equal the parsed plan; a node read from its
    line is the node; the lines put together again are plan.json."""
    from cruijff.plan import dumps, encode, load_plan, node_line, read_plan_text

    compiled, _ = plan_dir(manifest(tmp_path))
    plan = load_plan(tmp_path / "out")
    text = read_plan_text(tmp_path / "out")
    assert text.hashes() == {n.id: n.hash for n in plan.nodes}
    assert all(text.node(n.id) == n and text.data[start:end] == ("    " + node_line(n)).encode()
               for n in plan.nodes for _, start, end in [text.spans[n.id]])
    assert encode(plan, text, {n.id for n in plan.nodes}) == (tmp_path / "out" / "plan.json").read_bytes()
    assert dumps(plan) == (tmp_path / "out" / "plan.json").read_text()


@pytest.mark.parametrize("seed", range(6))
def test_a_plan_json_made_from_kept_lines_is_the_plan_json_encoded_whole(seed, tmp_path):
    """A re-plan copies its kept nodes' lines from the plan.json it replaces, a stretch of
    consecutive lines at a time: whatever was removed, added, changed or moved in between (first
    and last nodes included), the bytes are those of the new plan encoded whole."""
    import random

    from cruijff.plan import PLAN_FILE, Node, Plan, Resources, encode, read_plan_text

    rng = random.Random(seed)

    def node(i: int, h: str) -> Node:
        return Node(f"eval/r{i}/x", "eval", (), Resources(gpus=i % 2), h, {"run": f"r{i}", "é": "\"q\""})

    old = [node(i, f"h{i}") for i in range(40)]
    (tmp_path / PLAN_FILE).write_bytes(encode(Plan("e", str(tmp_path), "m.yaml", "slurm", 1, {}, tuple(old))))
    previous = read_plan_text(tmp_path)
    new, kept = [], set()
    for n in old:
        roll = rng.random()
        if roll < 0.15:
            continue  # removed
        if roll < 0.3:
            new.append(node(int(n.id.split("/")[1][1:]), "changed"))
            continue
        new.append(n)
        kept.add(n.id)
        if roll > 0.9:
            new.append(node(100 + len(new), "added"))
    if seed % 2:
        rng.shuffle(new)
    plan = Plan("e", str(tmp_path), "m.yaml", "slurm", 1, {}, tuple(new))
    assert encode(plan, previous, kept) == encode(plan)
    assert json.loads(encode(plan, previous, kept))["nodes"] == [n.as_dict() for n in new]


@pytest.mark.parametrize("edit", ["reindented", "an id with quotes and non-ASCII", "another version", "not JSON",
                                  "missing"])
def test_a_plan_json_not_laid_out_as_plan_writes_it_is_parsed_whole_or_counts_as_none(edit, tmp_path):
    from cruijff.plan import PLAN_FILE, Node, Plan, Resources, dumps, read_plan_text

    weird = 'eval/r "q"/épоch_0\\t/x'
    plan = Plan("e", str(tmp_path), "m.yaml", "slurm", 1, {}, (
        Node("finetune/r", "finetune", (), Resources(gpus=1), "h1", {"run": "r"}),
        Node(weird, "eval", ("finetune/r",), Resources(), "h2", {"hash": '"hash": "x"'})))
    path = tmp_path / PLAN_FILE
    text = dumps(plan)
    if edit == "reindented":
        text = json.dumps(json.loads(text), indent=4)
    elif edit == "another version":
        text = text.replace('"schema_version": 1', '"schema_version": 99')
    elif edit == "not JSON":
        text = text[:-10]
    if edit != "missing":
        path.write_text(text)
    read = read_plan_text(tmp_path)
    if edit in ("another version", "not JSON", "missing"):
        assert read is None
        return
    assert read.hashes() == {"finetune/r": "h1", weird: "h2"}
    assert read.node(weird) == plan.nodes[1]


def test_a_node_line_edited_by_hand_is_no_node_and_a_replan_still_writes_the_plan(tmp_path):
    from cruijff.compiler.summary import setting_changes
    from cruijff.plan import load_plan, read_plan_text

    path = manifest(tmp_path)
    plan_dir(path)
    plan_json = tmp_path / "out" / "plan.json"
    first = load_plan(tmp_path / "out").nodes[-1]
    plan_json.write_text(plan_json.read_text().replace(f'"hash": "{first.hash}", ', '"hash": "edited", "oops', 1))
    old = read_plan_text(tmp_path / "out")
    assert old.node(first.id) is None
    compiled = compile_manifest(path)
    assert setting_changes(old, compiled.plan, compiled.files, lambda rel: None) == {}  # nothing known of it
    diff = write_plan(compiled.plan, compiled.files, old)
    assert diff.changed == (first.id,) and load_plan(tmp_path / "out").nodes[-1] == first
