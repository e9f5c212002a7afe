"""A plan directory made before the package moved (issue 15) still plans and applies unchanged.

tests/fixtures/premove_plan holds the tiny experiment as planned by the code before the move
(tests/premove_plan.py). Planned again now, from the same place and with the same code
fingerprints (a code change re-runs the jobs that run that code, by design: cruijff.compiler.inputs),
every node keeps its hash and every rendered file its bytes; the module paths its job scripts and
configs name still import; and `apply` reads its plan.json.
"""

from __future__ import annotations

import importlib
import json
import re

from click.testing import CliRunner

from cruijff.cli import cli
from cruijff.compiler import inputs
from cruijff.plan import plan_from_dict
from tests.premove_plan import FIXTURE, compile_placed, placed

OLD_PLAN = json.loads((FIXTURE / "plan.json").read_text())
OLD_FILES = json.loads((FIXTURE / "files.json").read_text())


def old_code_digests() -> dict[str, str]:
    return {n["kind"]: n["inputs"]["cruijff code"] for n in OLD_PLAN["nodes"]}


def test_node_hashes_and_files_are_unchanged_by_the_move(monkeypatch):
    digests = old_code_digests()
    monkeypatch.setattr("cruijff.compiler.renderer.code_digest", lambda kind: digests[kind])
    plan, files = compile_placed()
    assert {n["id"]: n["hash"] for n in plan["nodes"]} == {n["id"]: n["hash"] for n in OLD_PLAN["nodes"]}
    assert files == OLD_FILES


def test_without_the_old_code_fingerprints_the_hashes_differ():
    """The test above can fail: the fingerprint of the code a job runs is part of its hash."""
    inputs.code_digest.cache_clear()
    plan, _ = compile_placed()
    assert {n["id"]: n["hash"] for n in plan["nodes"]} != {n["id"]: n["hash"] for n in OLD_PLAN["nodes"]}


def test_the_module_paths_in_old_job_files_still_import():
    named = set()
    for text in OLD_FILES.values():
        named.update(re.findall(r"\bcruijff(?:\.\w+)+", text))
    assert {"cruijff.scores", "cruijff.train.datasets.prompted_dataset", "cruijff.train.tokenizer.hf_tokenizer"} <= named
    for dotted in sorted(named):
        module, _, attr = dotted.rpartition(".")
        try:
            assert importlib.import_module(dotted)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), attr), dotted
    scores = importlib.import_module("cruijff.scores")
    assert callable(scores.main) and scores.main is importlib.import_module("cruijff.results.scores").main


def test_apply_reads_the_old_plan_directory():
    assert plan_from_dict(OLD_PLAN).experiment == "tiny-capitalization"
    with placed() as place:
        out = place / "tiny" / "out"
        for rel, text in {**OLD_FILES, "plan.json": json.dumps(OLD_PLAN)}.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(text)
        res = CliRunner().invoke(cli, ["apply", str(out), "--dry-run", "--executor", "local", "--json"])
        assert res.exit_code == 0, res.output
        assert sorted(json.loads(res.output)["to_submit"]) == sorted(n["id"] for n in OLD_PLAN["nodes"])
