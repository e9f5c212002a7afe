"""The results store (cruijff/store, docs/store.md): keys, publish and verify, reuse by plan and
apply, misses explained, gc. Fast: stand-in models and fake jobs; the real two-experiment run
through SLURM, torchtune and inspect is tests/integration/test_store_slurm.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cruijff.cli import cli
from cruijff.compiler.pipeline import compile_manifest
from cruijff.compiler.render.yaml import dump_yaml
from cruijff.paths import recipes_dir
from cruijff.store.entries import Store
from cruijff.store.keys import KEY_VERSION, KEYS_FILE, differences, explain, node_key, settings_text
from tests.helpers_models import stand_in_model

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "fixtures" / "manifests" / "data" / "words.json"
TASK = """from inspect_ai import task


@task
def t(data, format="instruct_json", split="test", template=None, system=None):
    return None
"""


def manifest(folder: Path, *, experiment: str = "a", dataset: str = "words", lr: float = 1.0e-3,
             ranks=(4, 8), data_bytes: bytes | None = None, task_text: str = TASK, **over) -> Path:
    """A manifest in its own folder, with its own copy of the data, task file and model files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{dataset}.json").write_bytes(data_bytes if data_bytes is not None else DATA.read_bytes())
    (folder / "t.py").write_text(task_text)
    stand_in_model(folder / "model")
    m = {
        "experiment": experiment, "output_dir": "out", "executor": {"kind": "local"},
        "models": {"tiny": {"path": "model", "family": "custom",
                            "builder": {"_component_": "torchtune.models.llama3.lora_llama3"},
                            "tokenizer": {"_component_": "torchtune.models.qwen2.qwen2_tokenizer", "path": "v.json"},
                            "checkpoint_files": ["model.safetensors"], "model_type": "LLAMA3"}},
        "datasets": {dataset: {"path": f"{dataset}.json", "format": "instruct_json"}},
        "finetune": {"hyperparameters": {"epochs": 1, "lr": lr}, "resources": {"gpus": 0}},
        "grid": {"lora_rank": list(ranks)},
        "eval": {"tasks": [{"name": "t", "file": "t.py", "task": "t"}], "base_models": True},
    }
    m.update(over)
    path = folder / "m.yaml"
    path.write_text(dump_yaml(m))
    return path


def keys(path: Path, **kw) -> dict[str, str | None]:
    return compile_manifest(path, env={}, check_paths=False, **kw).store["keys"]


def by_role(k: dict[str, str | None]) -> dict[str, str | None]:
    """node id → key with the run's dataset name taken out (two experiments name runs differently)."""
    return {i.replace("_w2_", "_words_").replace("/w2/", "/words/"): v for i, v in k.items()}


# --- keys -----------------------------------------------------------------------------------------

def test_a_key_put_together_from_its_parts_is_the_key_of_the_whole_document():
    """node_key writes its JSON from the parts (a worker's settings text): the bytes of the whole."""
    import hashlib

    settings = {"config": {"lr": 1e-05, "β": "é\u2028", "layers": [1, 2.5, None, True], "z": {}, "a": []},
                "inputs": {"dataset": "d" * 64, "cruijff code": "c"}, "model": "m", "gpus": 2, "when": Path("/x")}
    for parents in ([], ["k1", "k2"]):
        whole = json.dumps({"v": KEY_VERSION, "kind": "eval", "settings": settings, "parents": parents},
                           sort_keys=True, separators=(",", ":"), default=str)
        expected = hashlib.sha256(whole.encode()).hexdigest()[:32]
        assert node_key("eval", settings, parents) == expected
        assert node_key("eval", settings, parents, settings_text(settings)) == expected
    assert node_key("eval", settings, ["k1", None]) is None


def test_store_settings_put_together_from_each_nodes_text_is_the_json_of_the_whole_document():
    """store-settings.json is joined from each node's settings text (kept by a re-plan): the bytes of
    json.dumps of the whole document, whatever order the nodes were added in."""
    from cruijff.compiler.graph import JobSpec
    from cruijff.compiler.nodekeys import NodeKeys
    from cruijff.plan import Resources

    settings = {"finetune/b": {"config": {"lr": 1e-05, "β": "é\u2028"}, "inputs": {"dataset": "d"}, "gpus": 1},
                "eval/a/epoch_0/t": {"task": "t", "z": {}, "a": [1, None, True], "inputs": {}},
                "base_eval/m\"q/t": {"model": "f", "inputs": {"task file": "x"}}}
    keys = NodeKeys({"output_dir": "/plan", "models": {}, "datasets": {}}, "/recipes", lambda path: "f")
    for node_id, value in settings.items():
        keys.add_normalised(JobSpec(node_id, node_id.split("/")[0], Resources()), (), value)
    assert keys.settings_file() == json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str) + "\n"
    assert NodeKeys({"output_dir": "/plan"}, "/recipes", lambda path: "f").settings_file() == "{}\n"


def test_two_experiments_training_the_same_thing_get_the_same_keys(tmp_path):
    a = compile_manifest(manifest(tmp_path / "a"), env={}, check_paths=False)
    b = compile_manifest(manifest(tmp_path / "b", experiment="b", dataset="w2"), env={}, check_paths=False)
    ka, kb = a.store["keys"], by_role(b.store["keys"])
    assert ka == kb and all(ka.values())
    # the node hashes differ (they cover the rendered files, which name the paths); the keys do not
    hb = {n.id.replace("_w2_", "_words_").replace("/w2/", "/words/"): n.hash for n in b.plan.nodes}
    assert all(n.hash != hb[n.id] for n in a.plan.nodes)


@pytest.mark.parametrize("change, kinds", [
    ("dataset", {"finetune", "eval", "base_eval"}),
    ("task", {"eval", "base_eval"}),
    ("recipe", {"finetune", "eval"}),
    ("lr", {"finetune", "eval"}),
])
def test_changing_what_decides_a_result_changes_the_key(tmp_path, change, kinds):
    base = keys(manifest(tmp_path / "a"))
    recipes = None
    kw = {}
    if change == "dataset":
        rows = json.loads(DATA.read_text())
        rows["train"][0]["output"] = rows["train"][0]["output"] + "x"
        kw["data_bytes"] = json.dumps(rows).encode()
    elif change == "task":
        kw["task_text"] = TASK + "\n# edited\n"
    elif change == "lr":
        kw["lr"] = 3.0e-4
    elif change == "recipe":
        recipes = tmp_path / "recipes"
        shutil.copytree(recipes_dir(), recipes)
        with (recipes / "lora_finetune_single_device.py").open("a") as f:
            f.write("\n# edited\n")
    other = keys(manifest(tmp_path / "b", **kw), **({"recipes": str(recipes)} if recipes else {}))
    changed = {i.split("/", 1)[0] for i in base if base[i] != other[i]}
    assert changed == kinds


def test_a_model_that_cannot_be_fingerprinted_gets_no_key(tmp_path):
    path = manifest(tmp_path / "a")
    shutil.rmtree(tmp_path / "a" / "model")
    k = keys(path)
    assert not any(k[i] for i in k if not i.startswith("prepare/"))


def test_explain_names_the_setting_and_the_experiment():
    here = {"config": {"optimizer": {"lr": 1e-4}, "seed": 1}, "inputs": {"dataset": "aa"}}
    stored = [{"settings": {"config": {"optimizer": {"lr": 3e-4}, "seed": 1}, "inputs": {"dataset": "aa"}},
               "parents": [], "experiment": "twins-v1", "key": "k1", "created": 1},
              {"settings": {"config": {"optimizer": {"lr": 5e-4}, "seed": 2}, "inputs": {"dataset": "bb"}},
               "parents": [], "experiment": "other", "key": "k2", "created": 2}]
    from cruijff.store.keys import flatten

    here = flatten(here)
    for meta in stored:
        meta["settings"] = flatten(meta["settings"])
    out = explain("finetune/llama_r8", here, [], stored)
    assert out["entry"] == "k1"  # the nearest: one difference, not three
    assert out["text"] == ("finetune/llama_r8: not reused — optimizer.lr 0.0001 here, 0.0003 in the stored run "
                           "from experiment twins-v1")
    assert differences(here, stored[0]["settings"]) == [("config.optimizer.lr", 1e-4, 3e-4)]
    assert differences(flatten({"a": [1, 2]}), flatten({"a": [1, 3]})) == [("a", "[1, 2]", "[1, 3]")]


# --- publish, verify, gc --------------------------------------------------------------------------

def outputs(folder: Path) -> Path:
    (folder / "epoch_0" / "model").mkdir(parents=True, exist_ok=True)
    (folder / "epoch_0" / "model" / "model.safetensors").write_bytes(b"w" * 1000)
    (folder / "logs").mkdir(exist_ok=True)
    (folder / "logs" / "metrics.jsonl").write_text('{"loss": 1}\n')
    return folder


def test_publish_is_atomic_and_an_entry_is_verified(tmp_path):
    st = Store(tmp_path / "store")
    src = outputs(tmp_path / "node")
    files = ["epoch_0/model/model.safetensors", "logs/metrics.jsonl"]
    entry, what = st.publish("ab" * 16, "near1", {"experiment": "x", "node": "finetune/r"}, src, files)
    assert what == "published" and st.verify(entry) is None
    assert st.lookup("ab" * 16).files == entry.files
    again, what = st.publish("ab" * 16, "near1", {"experiment": "y"}, src, files)
    assert what == "present" and again.meta["experiment"] == "x"  # never replaced
    assert [e.key for e in st.near("near1")] == ["ab" * 16]
    assert list((st.root / "tmp").iterdir()) == []


def test_an_entry_edited_or_truncated_after_publishing_is_refused(tmp_path):
    st = Store(tmp_path / "store")
    src = outputs(tmp_path / "node")
    entry, _ = st.publish("cd" * 16, None, {}, src, ["epoch_0/model/model.safetensors", "logs/metrics.jsonl"])
    stored = entry.path / "files" / "logs" / "metrics.jsonl"
    os.unlink(stored)  # a hard link: replace it, as an editor that writes a new file would
    stored.write_text('{"loss": 2}\n')
    assert "changed after it was published" in st.verify(st.lookup(entry.key))
    weights = entry.path / "files" / "epoch_0" / "model" / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(10)
    assert "10 bytes, 1000 when published" in st.verify(st.lookup(entry.key))
    assert st.materialise(st.lookup(entry.key), tmp_path / "dest", str(tmp_path), "n", "e") is not None
    assert not (tmp_path / "dest" / "logs").exists()


def test_a_file_system_without_hard_links_gets_copies(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    st = Store(tmp_path / "store")
    src = outputs(tmp_path / "node")
    entry, what = st.publish("ef" * 16, None, {}, src, ["logs/metrics.jsonl"])
    assert what == "published" and st.verify(entry) is None
    assert (entry.path / "files" / "logs" / "metrics.jsonl").stat().st_ino != (src / "logs" / "metrics.jsonl").stat().st_ino
    assert st.materialise(entry, tmp_path / "dest", str(tmp_path), "n", "e") is None
    assert (tmp_path / "dest" / "logs" / "metrics.jsonl").read_text() == '{"loss": 1}\n'


KILLED_PUBLISH = """
import os, signal, sys
from cruijff.store import entries
real = entries.link_or_copy
count = 0
def dying(src, dst):
    global count
    count += 1
    if count == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # killed halfway: one file copied, one not, no meta.json
    return real(src, dst)
entries.link_or_copy = dying
st = entries.Store(sys.argv[1])
st.publish("12" * 16, "n", {}, sys.argv[2], ["epoch_0/model/model.safetensors", "logs/metrics.jsonl"])
"""


def test_a_publish_killed_halfway_leaves_no_entry(tmp_path):
    src = outputs(tmp_path / "node")
    proc = subprocess.run([sys.executable, "-c", KILLED_PUBLISH, str(tmp_path / "store"), str(src)],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    st = Store(tmp_path / "store")
    assert len(list((st.root / "tmp").iterdir())) == 1  # the half-made folder, outside entries/
    assert st.lookup("12" * 16) is None and list(st.entries()) == [] and st.near("n") == []
    st.gc(older_than_s=0, now=time.time() + 2 * 86400)
    assert list((st.root / "tmp").iterdir()) == []


def test_gc_keeps_what_a_plan_directory_refers_to(tmp_path):
    st = Store(tmp_path / "store")
    src = outputs(tmp_path / "node")
    used, _ = st.publish("aa" * 16, None, {"node": "finetune/a"}, src, ["logs/metrics.jsonl"])
    old, _ = st.publish("bb" * 16, None, {"node": "finetune/b"}, src, ["logs/metrics.jsonl"])
    plan_dir = tmp_path / "plan"
    plan_dir.mkdir()
    (plan_dir / KEYS_FILE).write_text(json.dumps({"keys": {"finetune/a": "aa" * 16}}))
    st.add_user(used, str(plan_dir), "finetune/a", "exp")
    gone = tmp_path / "gone"  # a plan directory that was deleted no longer holds an entry
    st.add_user(old, str(gone), "finetune/b", "exp2")
    result = st.gc(older_than_s=0, now=time.time() + 10)
    assert [r["key"] for r in result["removed"]] == ["bb" * 16]
    assert [k["key"] for k in result["kept_in_use"]] == ["aa" * 16]
    assert [e.key for e in st.entries()] == ["aa" * 16]
    # --max-size: the oldest first, still never one in use
    assert st.gc(max_size=0)["removed"] == []


def test_store_cli_ls_and_gc(tmp_path):
    st = Store(tmp_path / "store")
    entry, _ = st.publish("aa" * 16, None, {"node": "finetune/a", "experiment": "exp"}, outputs(tmp_path / "n"),
                          ["logs/metrics.jsonl"])
    st.add_user(entry, str(tmp_path / "p"), "finetune/a", "exp")
    runner = CliRunner()
    res = runner.invoke(cli, ["store", "ls", "--store", str(st.root), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["kind"] == "cruijff.store.ls" and data["entries"][0]["used_by"] == ["exp"]
    assert data["entries"][0]["size_bytes"] == len('{"loss": 1}\n')
    res = runner.invoke(cli, ["store", "gc", "--store", str(st.root), "--older-than", "0s", "--dry-run", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["removed"][0]["key"] == "aa" * 16
    assert st.lookup("aa" * 16) is not None  # dry run
    res = runner.invoke(cli, ["store", "gc", "--store", str(st.root), "--older-than", "soon"])
    assert res.exit_code != 0 and "not a duration" in str(res.exception)  # cli.main: one line, exit 2


# --- plan: reused nodes and misses explained -------------------------------------------------------

def planned(path: Path, store_dir: Path, *extra: str) -> dict:
    res = CliRunner().invoke(cli, ["plan", str(path), "--json", *extra], env={"CRUIJFF_STORE": str(store_dir)})
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def published_experiment(tmp_path: Path) -> tuple[Store, Path]:
    """Experiment a planned, its nodes given outputs, and published to a store."""
    from cruijff.plan import load_plan
    from cruijff.store.reuse import publish_done

    store_dir = tmp_path / "store"
    planned(manifest(tmp_path / "a"), store_dir)
    plan = load_plan(tmp_path / "a" / "out")
    for node in plan.nodes:
        outputs(tmp_path / "a" / "out" / node.id)
    st = Store(store_dir)
    results = publish_done(st, plan, [n.id for n in plan.nodes])
    assert set(results.values()) == {"published"} and len(results) == 5
    return st, store_dir


def test_plan_reuses_what_the_store_holds_and_explains_each_miss(tmp_path):
    st, store_dir = published_experiment(tmp_path)
    # b: the same base model and data elsewhere, rank 4 shared, rank 16 new, and lr changed for none
    out = planned(manifest(tmp_path / "b", experiment="b", ranks=(4, 16)), store_dir)["store"]
    assert sorted(out["reused"]) == ["base_eval/tiny/words/t", "eval/tiny_words_r4/epoch_0/t", "finetune/tiny_words_r4"]
    assert out["reused"]["finetune/tiny_words_r4"]["experiment"] == "a"
    assert out["reused"]["finetune/tiny_words_r4"]["plan_dir"] == str(tmp_path / "a" / "out")
    miss = out["misses"]["finetune/tiny_words_r16"]
    assert miss["text"].startswith("finetune/tiny_words_r16: not reused — ")
    assert {d["setting"] for d in miss["differences"]} == {"config.model.lora_rank", "config.model.lora_alpha"}
    assert "lora_rank 16 here" in miss["text"] and "in the stored run from experiment a" in miss["text"]
    assert "its fine-tune" in out["misses"]["eval/tiny_words_r16/epoch_0/t"]["text"]
    assert set(out["nodes"]) == {"finetune/tiny_words_r4", "finetune/tiny_words_r16", "eval/tiny_words_r4/epoch_0/t",
                                 "eval/tiny_words_r16/epoch_0/t", "base_eval/tiny/words/t"}
    # an unchanged re-plan looks the keys up from disk (store-settings.json read for the misses only)
    again = planned(tmp_path / "b" / "m.yaml", store_dir)["store"]
    assert again["misses"] == out["misses"] and sorted(again["reused"]) == sorted(out["reused"])
    # human output names the source and the miss; --no-store looks nothing up
    res = CliRunner().invoke(cli, ["plan", str(tmp_path / "b" / "m.yaml")], env={"CRUIJFF_STORE": str(store_dir)})
    assert "= finetune/tiny_words_r4: from experiment a" in res.output
    assert "≠ finetune/tiny_words_r16: not reused — model.lora_" in res.output
    assert planned(tmp_path / "b" / "m.yaml", store_dir, "--no-store")["store"] is None


@pytest.mark.parametrize("change, node, reason", [
    ("dataset", "finetune/tiny_words_r4", "the dataset's bytes changed since the stored run from experiment a"),
    ("task", "base_eval/tiny/words/t", "the task file changed since the stored run from experiment a"),
    ("recipe", "finetune/tiny_words_r4", "the recipe changed since the stored run from experiment a"),
    ("lr", "finetune/tiny_words_r4", "optimizer.lr 0.0003 here, 0.001 in the stored run from experiment a"),
])
def test_changing_one_input_of_a_stored_node_misses_with_the_reason(tmp_path, change, node, reason):
    from cruijff.compiler.pipeline import with_store_keys
    from cruijff.compiler.write import write_plan
    from cruijff.store.reuse import plan_lookup

    st, _ = published_experiment(tmp_path)
    kw, compile_kw = {}, {}
    if change == "dataset":
        rows = json.loads(DATA.read_text())
        rows["train"][0]["output"] += "x"
        kw["data_bytes"] = json.dumps(rows).encode()
    elif change == "task":
        kw["task_text"] = TASK + "\n# edited\n"
    elif change == "lr":
        kw["lr"] = 3.0e-4
    else:
        compile_kw["recipes"] = str(tmp_path / "recipes")
        shutil.copytree(recipes_dir(), tmp_path / "recipes")
        with (tmp_path / "recipes" / "lora_finetune_single_device.py").open("a") as f:
            f.write("\n# edited\n")
    compiled = compile_manifest(manifest(tmp_path / "b", experiment="b", **kw), env={}, **compile_kw)
    write_plan(compiled.plan, with_store_keys(compiled))
    found = plan_lookup(st, compiled.plan.output_dir)
    assert node not in found["reused"]
    assert found["misses"][node]["text"] == f"{node}: not reused — {reason}"


# --- apply: materialise instead of submitting; publish what is done -----------------------------------

def write_keys(plan, keys: dict[str, str]) -> None:
    (Path(plan.output_dir) / KEYS_FILE).write_text(json.dumps({"version": 1, "keys": keys, "near": {},
                                                              "settings": {}, "parents": {}}))


def shared_keys(run1: str) -> dict[str, str]:
    """r0 and the base evaluation are the same in every experiment; r1 is `run1`'s own."""
    return {"finetune/r0": "a0" * 16, "eval/r0/epoch_0/t0": "e0" * 16, "base_eval/tiny/t0": "b0" * 16,
            "finetune/r1": run1 * 16, "eval/r1/epoch_0/t0": run1[::-1] * 16}


def test_apply_materialises_what_the_store_holds_and_submits_only_the_rest(tmp_path):
    from cruijff.run.apply import apply
    from cruijff.run.executors.local import LocalExecutor
    from cruijff.run.status import collect
    from tests.helpers_plans import make_plan, starts

    st = Store(tmp_path / "store")
    ex = LocalExecutor(max_parallel=4)
    a = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=1, experiment="a", version="a", sleep=0)
    write_keys(a, shared_keys("1a"))
    assert sorted(apply(a.output_dir, ex).final.values()) == ["completed"] * 5
    for run in ("r0", "r1"):  # the fine-tune's exported model (the stand-in job makes the folder only)
        (Path(a.output_dir) / "finetune" / run / "epoch_0" / "model" / "w.bin").write_bytes(run.encode() * 100)
    published = apply(a.output_dir, ex, store=st).published  # a re-apply publishes what is done
    assert set(published.values()) == {"published"} and len(published) == 5

    b = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=1, experiment="b", version="b", sleep=0)
    write_keys(b, shared_keys("2b"))
    result = apply(b.output_dir, ex, store=st)
    assert sorted(n for n, _ in result.submitted) == ["eval/r1/epoch_0/t0", "finetune/r1"]
    assert sorted(n for n, _ in result.reused) == ["base_eval/tiny/t0", "eval/r0/epoch_0/t0", "finetune/r0"]
    assert {n: c for n, c in starts(b).items() if c} == {"eval/r1/epoch_0/t0": 1, "finetune/r1": 1}
    weights = Path(b.output_dir) / "finetune" / "r0" / "epoch_0" / "model" / "w.bin"
    assert weights.read_bytes() == b"r0" * 100
    assert weights.stat().st_ino == (Path(a.output_dir) / "finetune/r0/epoch_0/model/w.bin").stat().st_ino
    report = collect(b.output_dir, ex, store=st)
    assert {n.id: n.state for n in report.nodes} == dict.fromkeys(starts(b), "done")
    assert report.store["reused"] == 3
    score_a = {n.id: n.score for n in collect(a.output_dir, ex).nodes}
    assert {n.id: n.score for n in report.nodes if n.id != "eval/r1/epoch_0/t0"} == \
        {k: v for k, v in score_a.items() if k != "eval/r1/epoch_0/t0"}
    assert apply(b.output_dir, ex, store=st).submitted == []  # nothing left to do
    from cruijff.commands.draw.status import render_plain
    from cruijff.results.report_cost import _reused_section

    assert "reused from the results store: 3 node(s)" in render_plain(report)
    tables: dict = {}
    assert "3 node(s) were reused from the results store" in _reused_section(b, Path(b.output_dir), tmp_path, tables)
    assert (tmp_path / "reused.csv").read_text().count("\n") == 4

    # a forced re-run of a reused node never writes into the store: its files become its own first
    apply(b.output_dir, ex, store=st, only="finetune/r0", force=True)
    assert weights.stat().st_ino != st.lookup("a0" * 16).path.joinpath("files/epoch_0/model/w.bin").stat().st_ino
    assert st.verify(st.lookup("a0" * 16)) is None


def test_apply_refuses_an_entry_edited_after_publishing_and_runs_the_node(tmp_path):
    from cruijff.run.apply import apply
    from cruijff.run.executors.local import LocalExecutor
    from tests.helpers_plans import make_plan

    st = Store(tmp_path / "store")
    ex = LocalExecutor(max_parallel=4)
    a = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=1, experiment="a", version="a", sleep=0)
    write_keys(a, shared_keys("1a"))
    apply(a.output_dir, ex)
    (Path(a.output_dir) / "finetune/r0/epoch_0/model/w.bin").write_bytes(b"x" * 100)
    apply(a.output_dir, ex, store=st)
    stored = st.lookup("a0" * 16).path / "files" / "epoch_0" / "model" / "w.bin"
    os.unlink(stored)  # edited after publishing (a new file: the plan directory's copy stays as it was)
    stored.write_bytes(b"y" * 100)

    c = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=1, experiment="c", version="c", sleep=0)
    write_keys(c, shared_keys("3c"))
    result = apply(c.output_dir, ex, store=st)
    assert [(n, "changed after it was published" in why) for n, why in result.store_refused] == [("finetune/r0", True)]
    assert "finetune/r0" in {n for n, _ in result.submitted}
    assert not (Path(c.output_dir) / "finetune/r0/epoch_0/model/w.bin").exists()


def test_concurrent_publishes_of_one_key_leave_one_entry(tmp_path):
    """Two applies (here: processes) finishing the same node at once: one publishes, the other
    finds it there; one entry, intact."""
    src = outputs(tmp_path / "node")
    code = ("import sys; from cruijff.store.entries import Store; "
            "print(Store(sys.argv[1]).publish('77' * 16, 'n', {}, sys.argv[2], "
            "['epoch_0/model/model.safetensors', 'logs/metrics.jsonl'])[1])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "store"), str(src)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
             for _ in range(4)]
    answers = sorted(p.communicate()[0].strip() for p in procs)
    assert answers.count("published") == 1 and answers.count("present") == 3, answers
    st = Store(tmp_path / "store")
    assert [e.key for e in st.entries()] == ["77" * 16] and st.verify(st.lookup("77" * 16)) is None


def test_a_group_shared_store_keeps_each_members_entries_their_own(tmp_path):
    """A setgid store folder (docs/store.md): its shard folders are setgid and sticky, so only an
    entry's owner can rename or remove it."""
    root = tmp_path / "store"
    root.mkdir()
    os.chmod(root, 0o2775)
    st = Store(root)
    entry, _ = st.publish("99" * 16, None, {}, outputs(tmp_path / "n"), ["logs/metrics.jsonl"])
    mode = entry.path.parent.stat().st_mode
    assert mode & 0o1000 and mode & 0o2000  # sticky and setgid
