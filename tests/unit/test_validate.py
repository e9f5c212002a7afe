"""Every invalid fixture reports exactly its expected problems, each at file:line:col; valid ones plan.

tests/fixtures/manifests/invalid/NAME.yaml sits next to NAME.expected, one line per error:
`LINE:COL: substring`, the substring found in "message — hint". The list is complete: a file's
errors all come out at once, and no others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from cruijff import cores
from cruijff.cli import cli
from cruijff.compiler import validate
from cruijff.compiler.pipeline import check, compile_manifest
from cruijff.errors import ManifestError
from cruijff.compiler.validate import did_you_mean

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "manifests"
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))
UNSET = "CRUIJFF_FIXTURE_UNSET_VARIABLE"


def expected(path: Path) -> list[tuple[int, int, str]]:
    out = []
    for line in path.with_suffix(".expected").read_text().splitlines():
        if line.strip():
            where, text = line.split(": ", 1)
            ln, col = where.split(":")
            out.append((int(ln), int(col), text))
    return out


def test_every_invalid_fixture_has_expectations():
    assert len(INVALID) >= 20
    assert all(p.with_suffix(".expected").exists() for p in INVALID)


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_manifest_reports_every_error_at_its_place(path, monkeypatch):
    monkeypatch.delenv(UNSET, raising=False)
    with pytest.raises(ManifestError) as info:
        check(path)
    problems = info.value.problems
    got = [(p.location.line, p.location.col, f"{p.message} — {p.hint}" if p.hint else p.message) for p in problems]
    want = expected(path)
    assert len(got) == len(want), "\n".join(str(p) for p in problems)
    for line, col, text in want:
        assert any(g[0] == line and g[1] == col and text in g[2] for g in got), \
            f"{line}:{col}: {text!r} not among:\n" + "\n".join(str(p) for p in problems)
    for p in problems:  # every problem names the file
        assert p.location.file == str(path)


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_manifest_plans(path, tmp_path):
    compiled = compile_manifest(path, out=str(tmp_path / "plan"))
    assert compiled.plan.nodes
    assert all(p.severity == "warning" for p in compiled.checked.warnings)


def _problems(path: Path, **kw) -> list[tuple]:
    try:
        check(path, **kw)
    except ManifestError as e:
        return [(str(p.location), p.message, p.hint) for p in e.problems]
    return []


def _validated_in_a_child(monkeypatch) -> None:
    """Validation ahead with a core to spare; what the parent itself could validate fails the test."""
    monkeypatch.setattr(cores, "workers", lambda: 2)

    def not_here(source):
        raise AssertionError("validated in the parent")
    return not_here


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_validation_in_a_child_reports_what_validation_here_does(path, monkeypatch):
    """`plan` validates on another core while it imports the compiler: every fixture's problems,
    at their places, as one process finds them."""
    monkeypatch.delenv(UNSET, raising=False)
    here = _problems(path)
    not_here = _validated_in_a_child(monkeypatch)
    validation = validate.ahead(str(path))
    monkeypatch.setattr(validate, "schema_problems", not_here)  # the child forked with the real one
    monkeypatch.setattr("cruijff.compiler.pipeline.schema_problems", not_here)
    assert _problems(path, validation=validation) == here
    assert validation.child is None  # taken and reaped, also when the file did not load


def test_validation_in_a_child_applies_the_sets_and_places_their_errors_at_them(monkeypatch):
    path = FIXTURES / "valid" / "full.yaml"
    sets = ["finetune.hyperparameters.epochs=0", "eval.limit=-3"]
    here = _problems(path, overrides=sets)
    assert [where for where, *_ in here] == [f"--set {s}" for s in sets]
    not_here = _validated_in_a_child(monkeypatch)
    validation = validate.ahead(str(path), sets)
    monkeypatch.setattr("cruijff.compiler.pipeline.schema_problems", not_here)
    assert _problems(path, overrides=sets, validation=validation) == here


@pytest.mark.parametrize("edit", ["breaks", "mends"])
def test_a_manifest_edited_while_the_child_validated_it_is_validated_again_here(edit, tmp_path, monkeypatch):
    monkeypatch.setattr(cores, "workers", lambda: 2)
    good = (FIXTURES / "valid" / "full.yaml").read_text()
    bad = good.replace("output_dir:", "output_dirr:", 1)
    path = tmp_path / "m.yaml"
    path.write_text(good if edit == "breaks" else bad)
    validation = validate.ahead(str(path))
    path.write_text(bad if edit == "breaks" else good)
    got = _problems(path, validation=validation)
    assert got == _problems(path)
    assert bool(got) == (edit == "breaks")
    assert any("output_dirr" in message for _, message, _ in got) == (edit == "breaks")


def test_on_one_core_validation_runs_here():
    assert cores.workers() > 1 or validate.ahead(str(FIXTURES / "valid" / "full.yaml")) is None


@pytest.mark.parametrize("manifest, sets, errors", [
    ("invalid/many_schema_errors.yaml", [], 3),
    ("valid/full.yaml", ["--set", "finetune.nope=1"], 1),  # the child's --set fails as the parent's does
    ("invalid/yaml_syntax.yaml", [], 1),  # nothing to validate: the child's load fails as the parent's does
])
def test_plan_of_an_invalid_manifest_says_the_same_with_and_without_a_child(manifest, sets, errors, tmp_path,
                                                                            monkeypatch):
    runner = CliRunner()
    said = {}
    for n in (1, 2):
        monkeypatch.setattr(cores, "workers", lambda: n)
        res = runner.invoke(cli, ["plan", str(FIXTURES / manifest), *sets, "--out", str(tmp_path / f"p{n}"), "--json"])
        assert res.exit_code == 2 and not (tmp_path / f"p{n}").exists()
        said[n] = json.loads(res.stdout)["errors"]
    assert said[1] == said[2] and len(said[1]) >= errors


def test_errors_come_in_file_order():
    with pytest.raises(ManifestError) as info:
        check(FIXTURES / "invalid" / "many_semantic_errors.yaml", env={})
    lines = [(p.location.line, p.location.col) for p in info.value.problems]
    assert lines == sorted(lines)


def test_did_you_mean():
    assert did_you_mean("hyperparamters", ["hyperparameters", "resources"]) == "did you mean 'hyperparameters'?"
    assert did_you_mean("zzz", ["hyperparameters"]) is None


# ---------------------------------------------------------------------------------------------
# the command line

def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cruijff", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})})


def test_validate_ok_exit_0():
    res = _run("validate", FIXTURES / "valid" / "minimal.yaml")
    assert res.returncode == 0, res.stderr
    assert "ok (1 fine-tune run)" in res.stdout


def test_validate_errors_exit_2_on_stderr_without_traceback():
    path = FIXTURES / "invalid" / "many_schema_errors.yaml"
    res = _run("validate", path)
    assert res.returncode == 2
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == f"{len(expected(path))} errors."  # validate never writes, so it does not say so
    first = lines[0]
    assert first.startswith(f"{path}:") and " — " in first  # file:line:col: message — hint
    line, col = first[len(str(path)) + 1:].split(":")[:2]
    assert line.isdigit() and col.isdigit()


def test_validate_missing_file_and_syntax_error_exit_2():
    for target in ("no/such/manifest.yaml", FIXTURES / "invalid" / "yaml_syntax.yaml",
                   FIXTURES / "invalid" / "empty.yaml"):
        res = _run("validate", target)
        assert res.returncode == 2, res
        assert "Traceback" not in res.stderr and res.stderr.strip()


def test_validate_json():
    runner = CliRunner()
    res = runner.invoke(cli, ["validate", "--json", str(FIXTURES / "invalid" / "bad_enum.yaml")])
    assert res.exit_code == 2
    data = json.loads(res.stdout)
    assert data["ok"] is False
    assert [(e["line"], e["col"]) for e in data["errors"]] == [(13, 33), (15, 35)]


def test_plan_json(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["plan", str(FIXTURES / "valid" / "full.yaml"), "--out", str(tmp_path / "p"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["kinds"]["finetune"]["jobs"] == 7
    assert summary["diff"]["added"] and not summary["diff"]["changed"]
    assert (tmp_path / "p" / "plan.json").exists()
    again = json.loads(runner.invoke(cli, ["plan", str(FIXTURES / "valid" / "full.yaml"), "--out",
                                           str(tmp_path / "p"), "--json"]).stdout)
    assert again["changes"]["unchanged"] == summary["jobs"] and again["changes"]["added"] == 0


def test_plan_invalid_writes_nothing(tmp_path):
    res = _run("plan", FIXTURES / "invalid" / "duplicate_tasks.yaml", "--out", tmp_path / "p")
    assert res.returncode == 2 and "nothing written" in res.stderr
    assert not (tmp_path / "p").exists()


def test_schema_prints_a_valid_json_schema():
    res = CliRunner().invoke(cli, ["schema"])
    assert res.exit_code == 0
    schema = json.loads(res.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["output_dir"]
