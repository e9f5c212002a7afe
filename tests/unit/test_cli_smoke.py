"""The CLI starts light and plans the shipped experiments."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers_models import placed_tiny

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
    res = run_cli("plan", str(placed_tiny(tmp_path)), "--out", str(tmp_path / "plan"), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["kinds"]["finetune"]["jobs"] == 2
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert plan["schema_version"] == 1
    assert {n["kind"] for n in plan["nodes"]} == {"prepare", "finetune", "eval", "base_eval"}


@pytest.fixture(scope="module")
def json_calls(tmp_path_factory):
    """Every command that takes --json, on cheap inputs: (kind, exit code, args), answers and failures."""
    tmp = tmp_path_factory.mktemp("json")
    out, missing = str(tmp / "plan"), str(tmp / "missing")
    bad = tmp / "bad.yaml"
    bad.write_text("experiment: x\n")
    data = tmp / "d.json"
    data.write_text(json.dumps({"train": [{"input": "a", "output": "A"}]}))
    broken = tmp / "broken.json"
    broken.write_text(json.dumps({"train": "not rows"}))
    empty = tmp / "empty"
    empty.mkdir()
    kit = "experiments/imported/twins.summary.yaml"
    tiny = str(placed_tiny(tmp))
    return [
        ("cruijff.validate", 0, ["validate", tiny]),
        ("cruijff.plan", 0, ["plan", tiny, "--out", out]),
        ("cruijff.status", 0, ["status", out, "--executor", "local"]),
        ("cruijff.apply", 0, ["apply", out, "--dry-run", "--executor", "local"]),
        ("cruijff.cancel", 0, ["cancel", out, "--executor", "local"]),
        ("cruijff.report", 0, ["report", out]),
        ("cruijff.data.inspect", 0, ["data", "inspect", str(data)]),
        ("cruijff.data.convert", 0, ["data", "convert", str(data), str(tmp / "chat"), "--to", "chat_json"]),
        ("cruijff.data.generate", 0, ["data", "generate", "capitalization", str(tmp / "c.json"), "--count", "10"]),
        ("cruijff.import", 0, ["import", kit]),
        ("cruijff.store.ls", 0, ["store", "ls", "--store", str(tmp / "store")]),
        ("cruijff.store.gc", 0, ["store", "gc", "--store", str(tmp / "store"), "--older-than", "30d"]),
        # failures: a rejected manifest answers as its command; any other error is cruijff.error
        ("cruijff.validate", 2, ["validate", str(bad)]),
        ("cruijff.plan", 2, ["plan", str(bad)]),
        ("cruijff.import", 2, ["import", missing]),
        ("cruijff.error", 2, ["apply", str(bad), "--executor", "local"]),
        ("cruijff.error", 1, ["status", missing]),
        ("cruijff.error", 1, ["cancel", missing]),
        ("cruijff.error", 1, ["report", missing]),
        ("cruijff.error", 2, ["data", "inspect", str(broken)]),
        ("cruijff.error", 2, ["embed", str(data), "--model", str(empty), "--out", str(tmp / "e.h5"), "--split", "x"]),
        ("cruijff.error", 2, ["logits", str(data), "--model", str(empty), "--out", str(tmp / "l.h5"), "--split", "x"]),
        ("cruijff.error", 2, ["data", "convert", str(data), str(tmp / "chat"), "--to", "chat_json"]),  # exists
        ("cruijff.error", 2, ["data", "stats", str(data), "--model", str(empty)]),
        ("cruijff.error", 2, ["check-finetuned", str(empty)]),
        ("cruijff.eval", 2, ["eval", str(empty), "--task", f"{tmp}/nope.py@t", "--data", str(data), "--out", str(tmp / "ev")]),
        ("cruijff.error", 2, ["eval", str(empty), "--task", "t.py@t"]),  # no --data outside a plan
        ("cruijff.error", 2, ["store", "gc", "--store", str(tmp / "store")]),  # neither --older-than nor --max-size
    ]


def test_every_json_answer_is_the_same_versioned_envelope(json_calls):
    """Every --json answer, success or failure, is one object on stdout that starts with
    schema_version and kind (cruijff/commands/jsonout.py), with the command's exit code."""
    from click.testing import CliRunner

    from cruijff.cli import cli

    for kind, code, args in json_calls:
        res = CliRunner().invoke(cli, [*args, "--json"])
        assert res.exit_code == code, (args, res.output, res.exception)
        answer = json.loads(res.stdout)
        assert list(answer)[:2] == ["schema_version", "kind"] and answer["kind"] == kind, (args, answer)
        assert isinstance(answer["schema_version"], int)
        if code:
            assert answer["ok"] is False and (answer.get("errors") or answer["error"]["message"]), (args, answer)


def test_every_command_with_json_is_checked(json_calls):
    """The list above covers every command (and data subcommand) that has a --json option."""
    import click

    from cruijff.cli import COMMANDS, cli

    def with_json(prefix, command):
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                yield from with_json(f"{prefix} {name}", command.get_command(ctx, name))
        elif any("--json" in p.opts for p in command.params):
            yield prefix

    ctx = click.Context(cli)
    found = {p for name in COMMANDS for p in with_json(name, cli.get_command(ctx, name))}
    checked = {" ".join(args[:3 if args[:2] == ["data", "generate"] else 2 if args[0] in ("data", "store") else 1])
               for _, _, args in json_calls}
    generators = {p for p in found if p.startswith("data generate ")}
    assert found - generators <= checked and generators & checked, sorted(found - checked)


def test_status_and_cancel_take_the_manifest_apply_takes(tmp_path):
    """One option, one meaning: the manifest names the plan for status and cancel too (issue 23, item 11)."""
    tiny = placed_tiny(tmp_path)
    assert run_cli("plan", str(tiny), "--json").returncode == 0
    out = tmp_path / "tiny" / "out"
    by_dir = run_cli("status", str(out), "--executor", "local", "--json")
    by_manifest = run_cli("status", str(tiny), "--executor", "local", "--json")
    assert by_manifest.returncode == 0, by_manifest.stderr
    assert json.loads(by_manifest.stdout)["output_dir"] == json.loads(by_dir.stdout)["output_dir"] == str(out)
    cancelled = run_cli("cancel", str(tiny), "--executor", "local", "--json")
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["kind"] == "cruijff.cancel", cancelled.stderr


@pytest.mark.parametrize("valid", [True, False])
def test_a_command_process_ends_with_its_output_its_exit_code_and_its_exit_handlers(valid, tmp_path):
    """The process of a light command ends without freeing its objects one by one (cli.ENDS_AT_ONCE):
    what it printed into a pipe arrives whole, its exit code is kept, atexit handlers still run."""
    manifest = str(placed_tiny(tmp_path)) if valid else "/no/such/manifest.yaml"
    script = ("import atexit, sys; atexit.register(lambda: print('exit handler ran', file=sys.stderr)); "
              "D = type('D', (), {'__del__': lambda self: print('freed', file=sys.stderr)}); kept = D(); "
              f"sys.argv = ['cruijff', 'validate', {manifest!r}, '--json']; print('x' * 100000); "
              "from cruijff.cli import main; main()")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == (0 if valid else 2)
    assert res.stdout.startswith("x" * 100000 + "\n")
    assert json.loads(res.stdout[100001:])["ok"] is valid  # validate's answer after the x's, whole
    assert "exit handler ran" in res.stderr
    assert ("freed" in res.stderr) is not valid  # a success ends at once; an error, as usual
    assert "exit handler ran" in res.stderr
    assert ("freed" in res.stderr) is not valid  # a success ends at once; an error, as usual
