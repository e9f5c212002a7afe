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
