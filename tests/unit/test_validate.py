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
from cruijff.compiler import pipeline, validate
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


def _loaded_in_a_child(monkeypatch, path: Path, sets=()) -> tuple:
    """validate.ahead with a core to spare, and a record of what the parent itself loads afterwards."""
    monkeypatch.setattr(cores, "workers", lambda: 2)
    loading = validate.ahead(str(path), sets)
    here: list[str] = []
    real = pipeline.load_checked

    def load_checked(path, overrides=()):
        here.append(str(path))
        return real(path, overrides)

    monkeypatch.setattr(pipeline, "load_checked", load_checked)  # the child forked with the real one
    return loading, here


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_a_manifest_loaded_and_validated_in_a_child_reports_what_one_process_does(path, monkeypatch):
    """`plan` loads and validates on another core while it imports the compiler: every fixture's
    problems, at their places, as one process finds them; the parent loads the manifest itself
    only when it did not load in the child (its own load then says why)."""
    monkeypatch.delenv(UNSET, raising=False)
    alone = _problems(path)
    loading, here = _loaded_in_a_child(monkeypatch, path)
    assert _problems(path, loading=loading) == alone
    loads = path.stem not in ("empty", "not_a_mapping", "yaml_syntax")
    assert here == ([] if loads else [str(path)])
    with pytest.raises(ChildProcessError):  # the child was waited for
        os.waitpid(loading.pid, os.WNOHANG)


SHIPPED = sorted((REPO / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", [*VALID, *SHIPPED], ids=[f"{p.parent.name}/{p.stem}" for p in [*VALID, *SHIPPED]])
def test_a_manifest_parsed_in_a_child_compiles_to_the_same_plan(path, tmp_path, monkeypatch):
    """The child's parsed manifest comes back pickled (ruamel's round-trip data, with every value's
    line and column): the plan compiled from it is the plan compiled from a manifest parsed here."""
    monkeypatch.chdir(path.parent)
    monkeypatch.setenv("SCRATCH", str(tmp_path))
    checks = path not in SHIPPED  # the shipped ones' models are made by the demo
    alone = compile_manifest(path, out=str(tmp_path / "alone"), check_paths=checks)
    loading, here = _loaded_in_a_child(monkeypatch, path)
    ahead = compile_manifest(path, out=str(tmp_path / "alone"), check_paths=checks, loading=loading)
    assert here == []
    assert ahead.files == alone.files and ahead.plan == alone.plan and ahead.store == alone.store
    assert [str(w) for w in ahead.checked.warnings] == [str(w) for w in alone.checked.warnings]


def test_a_plan_with_sets_loaded_in_a_child_records_them_as_one_process_does(tmp_path, monkeypatch):
    path, sets = FIXTURES / "valid" / "full.yaml", ["eval.limit=3", "eval.max_tokens=7"]
    alone = compile_manifest(path, out=str(tmp_path / "p"), overrides=sets)
    loading, here = _loaded_in_a_child(monkeypatch, path, sets)
    ahead = compile_manifest(path, out=str(tmp_path / "p"), overrides=sets, loading=loading)
    assert here == [] and ahead.files == alone.files and ahead.checked.overrides == alone.checked.overrides
    header = ahead.files["manifest.yaml"]
    assert "#   eval.limit = 3   (manifest: 5)" in header and "#   eval.max_tokens = 7   (manifest: not set)" in header


def test_a_manifest_parsed_in_a_child_keeps_its_places_through_anchors_and_merges(tmp_path, monkeypatch):
    path = tmp_path / "m.yaml"
    path.write_text("experiment: e\noutput_dir: out\nmodels:\n  a: &m {path: /m, family: custom}\n"
                    "  b: {<<: *m, path: /n}\ngrid: {model: [a, b, 7]}\nbad: &x [1, 2]\nworse: *x\n")
    alone = _problems(path)
    loading, here = _loaded_in_a_child(monkeypatch, path)
    assert _problems(path, loading=loading) == alone and len(alone) >= 2 and here == []


def test_a_manifest_loaded_in_a_child_applies_the_sets_and_places_their_errors_at_them(monkeypatch):
    path = FIXTURES / "valid" / "full.yaml"
    sets = ["finetune.hyperparameters.epochs=0", "eval.limit=-3"]
    alone = _problems(path, overrides=sets)
    assert [where for where, *_ in alone] == [f"--set {s}" for s in sets]
    loading, here = _loaded_in_a_child(monkeypatch, path, sets)
    assert _problems(path, overrides=sets, loading=loading) == alone and here == []


def test_on_one_core_the_manifest_is_loaded_and_validated_here(monkeypatch):
    monkeypatch.setattr(cores, "workers", lambda: 1)
    assert validate.ahead(str(FIXTURES / "valid" / "full.yaml")) is None  # no child
    monkeypatch.setattr(cores, "workers", lambda: 2)
    assert validate.ahead(str(FIXTURES / "valid" / "full.yaml")).result()[2] == []


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
