"""`cruijff plan`'s estimate of GPU-hours and disk: numbers from the data, the model size and a
throughput (measured first, else the table), with the basis stated."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cruijff.cli import cli
from cruijff.compiler.estimate import (
    CHARS_PER_TOKEN,
    ROW_OVERHEAD,
    estimate_plan,
    model_params,
    table_throughput,
)
from cruijff.plan import FINETUNE, Node, Plan, Resources


def test_model_size_from_weights_then_family(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 4000)
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float32"}))
    assert model_params({"path": str(tmp_path), "family": "custom"}) == (1000, f"weights in {tmp_path}")
    assert model_params({"path": "/nope", "family": "Llama-3.2-1B-Instruct"})[0] == 1e9
    assert model_params({"path": "/nope", "family": "Qwen2.5-0.5B"})[0] == 0.5e9
    assert model_params({"path": "/nope", "family": "custom"}) == (None, "unknown")
    assert table_throughput(1e9) == 12000.0 and table_throughput(8e9) == 2500.0


def _plan(tmp_path, gpus=1):
    attrs = {"run": "r", "model": "m", "dataset": "d", "hyperparameters": {"epochs": 2}, "save_epochs": [0, 1]}
    return Plan("x", str(tmp_path), "m.yaml", "local", 1, {},
                (Node("finetune/r", FINETUNE, (), Resources(gpus=gpus), "h", attrs),))


def _manifest(tmp_path):
    data = tmp_path / "d.json"
    rows = [{"input": "a" * 36, "output": "b" * 4}] * 10  # 40 characters each: 10 tokens + 16 overhead
    data.write_text(json.dumps({"train": rows, "test": rows}))
    return {"datasets": {"d": {"path": str(data), "format": "instruct_json", "splits": {"train": "train"}}},
            "models": {"m": {"path": "/nope", "family": "Llama-3.2-1B-Instruct"}}, "prompt": {}}


def test_estimate_from_table(tmp_path):
    est = estimate_plan(_manifest(tmp_path), _plan(tmp_path, gpus=2))
    (run,) = est["runs"]
    tokens = 10 * (40 / CHARS_PER_TOKEN + ROW_OVERHEAD)
    assert run["tokens_per_epoch"] == round(tokens)
    # 2 epochs at 12,000 tokens/s per GPU on 2 GPUs: the GPU-hours do not depend on the GPU count
    assert run["gpu_hours"] == pytest.approx(2 * tokens / 12000 / 3600)
    assert run["disk_bytes"] == pytest.approx(2 * 2e9 * 1.02)  # 2 saved epochs of a 1B bf16 model
    assert "12,000 tokens/s/GPU for 1B parameters" in est["basis"][0]


def test_measured_throughput_wins(tmp_path):
    rec = tmp_path / "finetune/r/epoch_0/record.json"
    rec.parent.mkdir(parents=True)
    rec.write_text(json.dumps({"tokens_per_second": 50.0}))
    (run,) = estimate_plan(_manifest(tmp_path), _plan(tmp_path))["runs"]
    loss_tokens = 10 * (4 / CHARS_PER_TOKEN + 1)
    assert run["basis"].startswith("measured 50 loss tokens/s")
    assert run["gpu_hours"] == pytest.approx(2 * loss_tokens / 50 / 3600)


def test_missing_data_is_not_estimated(tmp_path):
    m = _manifest(tmp_path)
    m["datasets"]["d"]["path"] = str(tmp_path / "later.json")
    est = estimate_plan(m, _plan(tmp_path))
    assert est["runs"] == [] and est["not_estimated"] == ["r"]


def test_plan_prints_the_estimate_and_its_basis(tmp_path):
    from tests.conftest import REPO

    m = (REPO / "experiments" / "census_perturbations.yaml").read_text().replace("${SCRATCH}/cruijff/census",
                                                                                   str(tmp_path / "out"))
    (tmp_path / "data").symlink_to(REPO / "experiments" / "data")
    (tmp_path / "tasks").symlink_to(REPO / "experiments" / "tasks")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(m.replace("path: data/census/", f"path: {tmp_path}/gen/"))
    from cruijff.data.generate import generate

    generate("tabular", tmp_path / "gen" / "plain.json", table=str(REPO / "experiments/data/census.csv"),
             columns=str(REPO / "experiments/data/census_columns.json"), seed=0)
    res = CliRunner().invoke(cli, ["plan", str(manifest)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "estimate for 1 fine-tune run:" in res.output and "basis: 12,000 tokens/s/GPU" in res.output
    res = CliRunner().invoke(cli, ["plan", str(manifest), "--json"], catch_exceptions=False)
    est = json.loads(res.output)["estimate"]
    assert est["runs"][0]["rows"] == 400 and est["gpu_hours"] > 0
