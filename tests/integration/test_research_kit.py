"""The research kit inside a real planned experiment on the tiny model (plan + apply, local executor):
prepare jobs run the tabular and organisms generators, torchtune fine-tunes on one rendering of the
census table, inspect evaluates it on another rendering and on a model organism's out-of-distribution
split, and `cruijff report` builds the per-group, best-possible and cost tables from what ran.

The report's per-group "(all)" rows must equal inspect's own metrics for the same logs, so the join
of samples to records and the statistics are checked against an independent implementation.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO
from tests.integration.test_end_to_end import cli, wait_until_settled

pytestmark = [pytest.mark.train, pytest.mark.inspect]


def research_manifest(tmp_path: Path, model_dir: Path) -> Path:
    yaml = YAML()
    m = yaml.load((REPO / "experiments" / "tiny.yaml").read_text())
    m["experiment"] = f"research-kit-{os.getpid()}"
    m["output_dir"] = str(tmp_path / "out")
    m["executor"] = {"kind": "local", "max_parallel": 2}
    m["models"]["tiny"]["path"] = str(model_dir)
    data = tmp_path / "data"
    m["datasets"] = {
        "census": {"path": str(data / "census.json"), "format": "instruct_json",
                   "generate": {"kind": "tabular", "rows": 100, "seed": 2}},
        "census_syn": {"path": str(data / "census_syn.json"), "format": "instruct_json",
                       "generate": {"kind": "tabular", "rows": 100, "seed": 2, "synonyms_seed": 5,
                                    "template": "narrative"}},
        "parity": {"path": str(data / "parity.json"), "format": "instruct_json",
                   "generate": {"kind": "organisms", "rule": "parity", "length": 4, "count": 20,
                                "ood_count": 8, "seed": 1}},
    }
    m["prompt"] = {"system": "Answer 1 or 0.", "template": "{input}\nAnswer:"}
    m["finetune"]["hyperparameters"].update({"epochs": 1, "max_seq_len": 160})
    m["finetune"]["save_epochs"] = "all"
    m["grid"] = {"dataset": ["census"], "lora_rank": [4]}
    task = str(REPO / "experiments" / "tasks" / "binary.py")
    m["eval"]["tasks"] = [
        {"name": "plain", "file": task, "task": "binary"},
        {"name": "synonyms", "file": task, "task": "binary", "dataset": "census_syn"},
        {"name": "parity_ood", "file": task, "task": "binary", "dataset": "parity", "args": {"split": "test_ood"}},
    ]
    m["eval"]["base_models"] = False
    m["eval"]["limit"] = 8
    path = tmp_path / "manifest.yaml"
    with path.open("w") as f:
        yaml.dump(m, f)
    return path


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


# Slow tier (three evaluations, a fine-tune and three prepare jobs). The default tier has each part:
# prepare jobs inside a real apply (test_end_to_end.py::test_tiny_experiment_end_to_end_slurm), the
# generators (tests/unit/test_research_generators.py), groups, best-possible and cost tables on fixed
# logs (tests/unit/test_report_research.py), a real log's items against inspect's own metrics
# (test_inspect_eval.py::test_report_reads_real_logs).
@pytest.mark.slow
def test_research_kit_in_a_planned_experiment(tmp_path, tiny_model_dir):
    manifest = research_manifest(tmp_path, tiny_model_dir)
    cli("apply", str(manifest))
    out = tmp_path / "out"
    status = wait_until_settled(out)
    states = {n["id"]: n["state"] for n in status["nodes"]}
    assert set(states.values()) == {"done"}, states

    # the prepare jobs ran the generators: metadata with the configuration hash and Bayes accuracy
    meta = json.loads((tmp_path / "data" / "census_syn.meta.json").read_text())
    assert meta["perturbations"] == {"synonyms": 5} and len(meta["config_hash"]) == 64
    parity_meta = json.loads((tmp_path / "data" / "parity.meta.json").read_text())
    assert parity_meta["bayes_optimal_accuracy_by_split"]["test_ood"] == 1.0

    cli("report", str(out))
    report = out / "report"
    groups = _csv(report / "groups.csv")
    scores = _csv(report / "scores.csv")
    evals = sorted({r["node"] for r in scores})
    assert len(evals) == 3
    for node in evals:
        overall = next(g for g in groups if g["node"] == node and g["field"] == "(all)")
        assert int(overall["n"]) == 8  # eval.limit
        inspect_metrics = {r["metric"]: float(r["value"]) for r in scores if r["node"] == node}
        # the same samples, scored by inspect's metrics and by the report: the same numbers
        assert float(overall["accuracy"]) == pytest.approx(inspect_metrics["label_probability/label_accuracy"])
        assert float(overall["brier"]) == pytest.approx(inspect_metrics["label_probability/brier"])
        assert float(overall["ece"]) == pytest.approx(inspect_metrics["label_probability/ece"])
    # census evaluations are split by the table's features; group sizes add up to the whole
    plain = [g for g in groups if g["node"].endswith("/plain") and g["field"] == "sex"]
    assert {g["group"] for g in plain} <= {"F", "M"} and sum(int(g["n"]) for g in plain) == 8
    assert any(g["field"] == "education" for g in groups)
    assert (report / "plots" / "groups_plain_sex.png").stat().st_size > 5000

    best = {r["task"]: r for r in _csv(report / "best_possible.csv")}
    assert float(best["parity_ood"]["bayes_optimal_accuracy"]) == 1.0 and best["parity_ood"]["split"] == "test_ood"
    census_bayes = json.loads((tmp_path / "data" / "census.meta.json").read_text())["bayes_optimal_accuracy"]
    assert float(best["plain"]["bayes_optimal_accuracy"]) == pytest.approx(census_bayes)

    cost = {r["node"]: r for r in _csv(report / "cost.csv")}
    assert set(cost) == set(states)  # every job that ran
    ft = cost["finetune/tiny_census_r4"]
    assert float(ft["tokens_per_second"]) > 0 and float(ft["gpu_hours"]) == 0.0  # a CPU job
    assert "What it cost" in (report / "report.html").read_text()
