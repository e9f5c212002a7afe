"""Every default lives in the schema: the resolver fills exactly those, and they are cruijff_kit's."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
from typing import Any

from cruijff.compiler.pipeline import check, compile_manifest
from cruijff.compiler.render.yaml import dump_yaml
from cruijff.compiler.resolve import HYPERPARAMETER_DEFAULTS, _deref
from cruijff.compiler.schema import load_schema

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "fixtures" / "manifests" / "data"

MINIMAL = {
    "experiment": "d",
    "output_dir": "out",
    "models": {"llama": {"path": "/models/Llama-3.2-1B-Instruct", "family": "Llama-3.2-1B-Instruct"}},
    "datasets": {"words": {"path": str(DATA / "words.json"), "format": "instruct_json"}},
    "finetune": {},
    "eval": {"tasks": [{"name": "t", "file": "t.py", "task": "t"}]},
}


@pytest.fixture(autouse=True)
def task_file(tmp_path):
    """The manifests' task file: plan reads its @task signature."""
    (tmp_path / "t.py").write_text("from inspect_ai import task\n\n\n@task\ndef t(**kwargs):\n    ...\n")


def defaults_by_path(node: dict[str, Any], root: dict[str, Any], prefix: tuple = ()) -> dict[tuple, Any]:
    """Every `default:` in the schema under node, keyed by its key path (objects with default {} descended)."""
    out: dict[tuple, Any] = {}
    node = _deref(node, root)
    for key, sub in node.get("properties", {}).items():
        sub = _deref(sub, root)
        if "default" in sub:
            out[prefix + (key,)] = sub["default"]
            if sub["default"] == {}:
                out.update(defaults_by_path(sub, root, prefix + (key,)))
    return out


def at(m: dict, path: tuple) -> Any:
    for key in path:
        m = m[key]
    return m


def resolved(tmp_path, manifest) -> dict:
    (tmp_path / "m.yaml").write_text(dump_yaml(manifest))
    return check(tmp_path / "m.yaml", env={}).manifest


def test_resolver_fills_exactly_the_schema_defaults(tmp_path):
    root = load_schema()
    m = resolved(tmp_path, MINIMAL)
    expected = defaults_by_path(root, root)
    # the top level's objects, and the ones inside declared maps and lists, too
    expected.update({("datasets", "words") + p: v for p, v in
                     defaults_by_path(root["$defs"]["dataset"], root).items()})
    expected.update({("eval", "tasks", 0) + p: v for p, v in defaults_by_path(root["$defs"]["task"], root).items()})
    expected.update({("eval",) + p: v for p, v in defaults_by_path(root["$defs"]["eval"], root).items()})
    expected.update({("finetune",) + p: v for p, v in defaults_by_path(root["$defs"]["finetune"], root).items()})
    assert len(expected) > 40
    for path, value in expected.items():
        if value == {}:
            assert isinstance(at(m, path), dict), path
        elif path[-1] not in ("path", "file", "output_dir"):
            assert at(m, path) == value, path
    assert m["finetune"]["hyperparameters"] == HYPERPARAMETER_DEFAULTS
    assert HYPERPARAMETER_DEFAULTS == {k: v["default"] for k, v in
                                       root["$defs"]["hyperparameters"]["properties"].items()}


def test_a_value_in_the_manifest_beats_the_default(tmp_path):
    m = copy.deepcopy(MINIMAL)
    m["finetune"] = {"hyperparameters": {"lr": 0.5, "seed": 3}, "save_epochs": "last"}
    m["eval"]["seed"] = 7
    r = resolved(tmp_path, m)
    assert r["finetune"]["hyperparameters"]["lr"] == 0.5 and r["finetune"]["hyperparameters"]["seed"] == 3
    assert r["finetune"]["hyperparameters"]["lora_rank"] == 64
    assert r["finetune"]["save_epochs"] == "last" and r["eval"]["seed"] == 7


def test_resolve_py_holds_no_default_values():
    """No literal default in the resolver: its only constants are the schema walk's own."""
    tree = ast.parse((REPO / "cruijff" / "compiler" / "resolve.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "setdefault"]
    assert calls == []
    keys = [[k.value for k in n.keys if isinstance(k, ast.Constant)] for n in ast.walk(tree) if isinstance(n, ast.Dict)]
    dicts = [k for k in keys if k and k != ["$ref"]]
    assert dicts == [], "a dict literal in resolve.py (a second home for defaults?)"


def test_cruijff_kit_defaults_reach_the_rendered_files(tmp_path):
    """The table of issue 14: rank/alpha 64/128, lr 1e-4, warm-up 100, seed 14 (eval too), every
    epoch saved and evaluated, 20 new tokens."""
    import yaml

    m = copy.deepcopy(MINIMAL)
    m["finetune"] = {"hyperparameters": {"epochs": 2}}
    (tmp_path / "m.yaml").write_text(dump_yaml(m))
    compiled = compile_manifest(tmp_path / "m.yaml")
    ft = yaml.safe_load(compiled.files["finetune/llama_words/finetune.yaml"])
    assert (ft["model"]["lora_rank"], ft["model"]["lora_alpha"]) == (64, 128)
    assert ft["optimizer"]["lr"] == 1e-4 and ft["lr_scheduler"]["num_warmup_steps"] == 100
    assert ft["seed"] == 14 and ft["save_epochs"] == [0, 1]
    evals = sorted(k for k in compiled.files if k.startswith("eval/") and k.endswith("job.sbatch"))
    assert evals == ["eval/llama_words/epoch_0/t/job.sbatch", "eval/llama_words/epoch_1/t/job.sbatch"]
    script = compiled.files[evals[0]]
    assert "--seed 14" in script and "--max-tokens 20" in script


def test_a_task_entry_max_tokens_beats_eval_max_tokens(tmp_path):
    m = copy.deepcopy(MINIMAL)
    m["eval"]["tasks"].append({"name": "long", "file": "t.py", "task": "t", "max_tokens": 512})
    m["eval"]["max_tokens"] = 5
    (tmp_path / "m.yaml").write_text(dump_yaml(m))
    files = compile_manifest(tmp_path / "m.yaml").files
    assert "--max-tokens 5" in files["eval/llama_words/epoch_0/t/job.sbatch"]
    assert "--max-tokens 512" in files["eval/llama_words/epoch_0/long/job.sbatch"]
