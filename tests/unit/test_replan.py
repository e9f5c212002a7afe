"""Re-planning writes only what changed (issue 27.3): an unchanged re-plan compiles and writes
nothing, one edit rewrites only its nodes, and anything plan reads that changes compiles again.

Files are compared by inode and mtime (a rewrite is os.replace of a new file: a new inode).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner

from cruijff.cli import cli
from cruijff.compiler import pipeline
from cruijff.compiler.render.yaml import dump_yaml

TASK = "from inspect_ai import task\n\n\n@task\ndef exact(**kwargs):\n    pass\n"


def rows(word: str) -> dict:
    return {split: [{"input": word, "output": word.upper()}] * 40 for split in ("train", "validation", "test")}


def write_manifest(tmp: Path, lrs=(1e-5, 2e-5, 3e-5), extra_env: str | None = None) -> Path:
    (tmp / "tasks.py").write_text(TASK)
    (tmp / "words.json").write_text(json.dumps(rows("a")))
    m = {"experiment": "replan", "output_dir": str(tmp / "out"), "executor": {"kind": "slurm"},
         "models": {"tiny": {"path": f"{'$' + extra_env if extra_env else str(tmp)}/nonexistent", "family": "custom",
                             "builder": {"_component_": "torchtune.models.llama3.lora_llama3"},
                             "checkpoint_files": ["model.safetensors"], "model_type": "LLAMA3"}},
         "datasets": {"words": {"path": "words.json", "format": "instruct_json"}},
         "finetune": {"hyperparameters": {"epochs": 1, "batch_size": 2}},
         "grid": {"lr": list(lrs)},
         "eval": {"tasks": [{"name": "exact", "file": "tasks.py", "task": "exact"}], "epochs": "all"}}
    path = tmp / "m.yaml"
    path.write_text(dump_yaml(m))
    return path


def plan(path: Path) -> dict:
    res = CliRunner().invoke(cli, ["plan", str(path), "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    return json.loads(res.output)


def files(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in out.rglob("*") if p.is_file() and p.name != ".cruijff.lock"}


@pytest.fixture
def counted(monkeypatch):
    """Counts compiles (the real compile_manifest, counted)."""
    calls = []
    real = pipeline.compile_manifest

    def compile_counted(*a, **kw):
        calls.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(pipeline, "compile_manifest", compile_counted)
    return calls


@pytest.fixture(params=[True, False], ids=["files checked by a child", "files checked here"])
def child(request, monkeypatch):
    """Whether the plan's files are checked in a child (cruijff.cores.ahead), whatever the
    machine's cores."""
    monkeypatch.setattr("cruijff.cores.workers", lambda: 2 if request.param else 1)
    return request.param


def test_an_unchanged_replan_compiles_nothing_writes_nothing_and_says_the_same(tmp_path, counted, child):
    path = write_manifest(tmp_path)
    first = plan(path)
    before = files(tmp_path / "out")
    second = plan(path)
    assert len(counted) == 1, "the unchanged re-plan compiled"
    assert files(tmp_path / "out") == before
    for d in (first, second):
        d["slurm"] = {k: v for k, v in (d["slurm"] or {}).items() if k != "cluster_facts"}
    assert second["changes"] == {"added": 0, "changed": 0, "removed": 0, "unchanged": 6}
    assert second["diff"]["unchanged"] == [n for n in first["diff"]["added"]]
    first.pop("changes"), second.pop("changes"), first.pop("diff"), second.pop("diff")
    assert second == first


def test_one_edit_rewrites_only_the_nodes_it_changed(tmp_path, counted):
    path = write_manifest(tmp_path)
    plan(path)
    before = files(tmp_path / "out")
    write_manifest(tmp_path, lrs=(1e-5, 2e-5, 4e-5))  # one grid value: one run replaced by another
    data = plan(path)
    assert len(counted) == 2
    after = files(tmp_path / "out")
    rewritten = sorted(rel for rel in after if before.get(rel) != after[rel])
    new_nodes = set(data["diff"]["added"]) | set(data["diff"]["changed"])
    assert data["changes"]["added"] == 2 and data["changes"]["unchanged"] == 4
    assert rewritten and all(rel in ("plan.json", "manifest.yaml", "store-keys.json", "store-settings.json") or rel.rsplit("/", 1)[0] in new_nodes for rel in rewritten), rewritten
    for node in data["diff"]["unchanged"]:
        assert all(after[rel] == before[rel] for rel in after if rel.startswith(node + "/"))


@pytest.mark.parametrize("change", ["task file", "dataset", "plan file deleted", "plan file edited",
                                    "model folder appears", "environment variable"])
def test_anything_plan_reads_that_changes_compiles_again(tmp_path, counted, monkeypatch, change, child):
    monkeypatch.setenv("REPLAN_MODELS", str(tmp_path))
    path = write_manifest(tmp_path, extra_env="REPLAN_MODELS")
    first = plan(path)
    job = tmp_path / "out" / first["diff"]["added"][0] / "job.sbatch"
    if change == "task file":
        (tmp_path / "tasks.py").write_text(TASK + "\n# edited\n")
    elif change == "dataset":
        (tmp_path / "words.json").write_text(json.dumps(rows("b")))
    elif change == "plan file deleted":
        job.unlink()
    elif change == "plan file edited":
        job.write_text(job.read_text() + "# an edit\n")
    elif change == "model folder appears":  # plan now checks the folder: it has no config.json
        (tmp_path / "nonexistent").mkdir()
        res = CliRunner().invoke(cli, ["plan", str(path), "--json"])
        assert len(counted) == 2 and res.exit_code == 2 and "config.json" in res.output
        return
    else:
        other = tmp_path / "elsewhere"
        other.mkdir()
        monkeypatch.setenv("REPLAN_MODELS", str(other))
    plan(path)
    assert len(counted) == 2, f"{change}: the re-plan did not compile"
    assert job.is_file() and "# an edit" not in job.read_text()
    plan(path)
    assert len(counted) == 2, f"{change}: the re-plan after it compiled again"


def test_a_code_change_compiles_again(tmp_path, counted, monkeypatch):
    from cruijff.compiler import replan

    path = write_manifest(tmp_path)
    plan(path)
    monkeypatch.setattr(replan, "code_signature", lambda: "another cruijff")
    plan(path)
    assert len(counted) == 2


def test_files_appearing_beside_a_missing_model_folder_do_not_force_a_compile(tmp_path, counted):
    """The folder that would hold a missing model is watched by folder names (plan suggests near
    ones), not by what happens in it: the usual churn of a shared folder keeps the stamp."""
    path = write_manifest(tmp_path)
    plan(path)
    (tmp_path / "unrelated.log").write_text("x")
    plan(path)
    assert len(counted) == 1
    (tmp_path / "nonexistant").mkdir()  # a folder whose name is near the missing one's
    plan(path)
    assert len(counted) == 2



def test_an_unchanged_plan_whose_plan_json_was_deleted_compiles_again(tmp_path, counted, child):
    """Its SLURM layout is made ready while its files are checked, and needs plan.json when the
    cluster's MaxArraySize changed since (no layout for it in the stamp): that read fails, and the
    check's answer wins: a compile, as before."""
    from cruijff.compiler import replan

    path = write_manifest(tmp_path)
    plan(path)
    stamp_file = replan.stamp_file(path, None)
    key, _, body = stamp_file.read_bytes().partition(b"\n")
    stamp_file.write_bytes(key + b"\n" + pickle.dumps({**pickle.loads(body), "layouts": {}}))
    (tmp_path / "out" / "plan.json").unlink()
    assert plan(path)["changes"]["added"] == 6 and len(counted) == 2
    assert (tmp_path / "out" / "plan.json").is_file()


@pytest.mark.parametrize("damage", ["cut short", "garbage after the key", "the key only", "empty",
                                    "a pickle of something else"])
def test_a_damaged_stamp_is_no_stamp_the_manifest_is_compiled(damage, tmp_path, counted):
    """A stamp cut short by a full disk, or damaged otherwise, never fails a plan: it compiles, and
    writes a stamp the next plan answers from."""
    from cruijff.compiler import replan

    path = write_manifest(tmp_path)
    first = plan(path)
    stamp_file = replan.stamp_file(path, None)
    key, _, body = stamp_file.read_bytes().partition(b"\n")
    stamp_file.write_bytes({"cut short": key + b"\n" + body[:len(body) // 2],
                            "garbage after the key": key + b"\n" + b"\x80\x05garbage" * 10,
                            "the key only": key, "empty": b"",
                            "a pickle of something else": key + b"\n" + b"\x80\x04cno_such_module\nthing\n."}[damage])
    assert plan(path)["changes"] == {**first["changes"], "added": 0, "unchanged": 6} and len(counted) == 2
    assert plan(path)["changes"]["unchanged"] == 6 and len(counted) == 2  # answered from the new stamp


def test_an_error_making_an_unchanged_plan_ready_counts_when_its_files_are_intact(tmp_path, counted, child,
                                                                                 monkeypatch):
    from cruijff.commands import compile as compile_command
    from cruijff.errors import StateError

    path = write_manifest(tmp_path)
    plan(path)

    def layout(stamp, refresh):
        raise StateError("the layout could not be read")

    monkeypatch.setattr(compile_command, "_slurm_fit_again", layout)
    res = CliRunner().invoke(cli, ["plan", str(path)])  # `cruijff` (cli.main) prints it as one line
    assert isinstance(res.exception, StateError) and len(counted) == 1
