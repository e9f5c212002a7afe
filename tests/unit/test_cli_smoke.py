"""The CLI starts light and plans the shipped experiments."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "cruijff", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from cruijff.cli import cli; "
            "import cruijff.commands.compile, cruijff.compiler.pipeline, cruijff.compiler.write; "
            "print([m for m in ('torch','torchtune','transformers','inspect_ai') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plan_tiny_writes_plan(tmp_path):
    res = run_cli("plan", "experiments/tiny.yaml", "--out", str(tmp_path / "plan"), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["kinds"]["finetune"]["jobs"] == 2
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert plan["schema_version"] == 1
    assert {n["kind"] for n in plan["nodes"]} == {"prepare", "finetune", "eval", "base_eval"}


def test_every_json_answer_is_the_same_versioned_envelope(tmp_path):
    """validate, plan (ok and failing), status, apply --dry-run, cancel and data inspect: one object
    that starts with schema_version and kind (cruijff/commands/jsonout.py)."""
    out = str(tmp_path / "plan")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\n")
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"train": [{"input": "a", "output": "A"}]}))
    calls = {
        "cruijff.validate": ["validate", "experiments/tiny.yaml", "--json"],
        "cruijff.plan": ["plan", "experiments/tiny.yaml", "--out", out, "--json"],
        "cruijff.status": ["status", out, "--executor", "local", "--json"],
        "cruijff.apply": ["apply", out, "--dry-run", "--executor", "local", "--json"],
        "cruijff.cancel": ["cancel", out, "--executor", "local", "--json"],
        "cruijff.data.inspect": ["data", "inspect", str(data), "--json"],
    }
    for kind, args in calls.items():
        res = run_cli(*args)
        assert res.returncode == 0, (args, res.stderr)
        answer = json.loads(res.stdout)
        assert list(answer)[:2] == ["schema_version", "kind"] and answer["kind"] == kind, (args, answer)
        assert isinstance(answer["schema_version"], int)
    res = run_cli("plan", str(bad), "--json")
    assert res.returncode == 2
    answer = json.loads(res.stdout)
    assert answer["kind"] == "cruijff.plan" and answer["ok"] is False and answer["errors"]
