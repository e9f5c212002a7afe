"""The small pieces of cruijff's recipes: settings checks, validation sharding, records, metrics."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def recipes():
    try:
        from cruijff.train import recipes
    except ImportError as e:  # pragma: no cover - depends on the environment
        require(False, f"torchtune is not installed: {e}")
    return recipes


@pytest.fixture(scope="module")
def hooks(recipes):
    from cruijff.train import hooks

    return hooks


def cfg(**kw):
    from omegaconf import OmegaConf

    return OmegaConf.create({"epochs": 3, **kw})


def test_settings(hooks):
    s = hooks.Settings.from_cfg(cfg(save_epochs=[0, 2], run_val_every_n_steps=5,
                                      export={"base_model_dir": "/m", "dir_template": "{output_dir}/e{epoch}"}))
    assert s.saves(0) and not s.saves(1) and s.saves(2) and s.val_every == 5
    every = hooks.Settings.from_cfg(cfg())
    assert all(every.saves(e) for e in range(3)) and every.val_every is None and every.export_template is None
    assert not any(hooks.Settings.from_cfg(cfg(save_epochs=[])).saves(e) for e in range(3))
    with pytest.raises(hooks.RecipeConfigError, match="outside 0..2"):
        hooks.Settings.from_cfg(cfg(save_epochs=[3]))
    with pytest.raises(hooks.RecipeConfigError, match="run_val_every_n_steps"):
        hooks.Settings.from_cfg(cfg(run_val_every_n_steps=0))
    with pytest.raises(hooks.RecipeConfigError, match="both"):
        hooks.Settings.from_cfg(cfg(export={"base_model_dir": "/m"}))


def test_collate_is_resolved_without_torchtune_private_helpers(hooks):
    """The validation collate comes from its dotted path through cruijff's own resolver."""
    from torchtune.data import padded_collate_sft

    assert hooks.component("torchtune.data.padded_collate_sft") is padded_collate_sft
    with pytest.raises(hooks.RecipeConfigError, match="cannot import 'torchtune.data.no_such_collate'"):
        hooks.component("torchtune.data.no_such_collate")
    private = []
    for path in (REPO / "cruijff" / "train").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torchtune"):
                names = [*node.module.split("."), *(a.name for a in node.names)]
                private += [f"{path.name}: {node.module}" for n in names if n.startswith("_")]
    assert not private, "cruijff imports torchtune's private helpers"


def test_val_shard_pads_with_loss_free_samples(hooks):
    import torch

    ds = [{"tokens": [1, 2, 3], "labels": [1, 2, 3]} for _ in range(5)]
    # 5 samples on 2 ranks: rank 0 gets 0, 2, 4; rank 1 gets 1, 3 and one padding sample
    shard = hooks._ValShard(ds, [1, 3], 1, -100)
    assert len(shard) == 3 and shard[2]["labels"] == [-100, -100, -100] and ds[0]["labels"] == [1, 2, 3]
    packed = [{"tokens": torch.tensor([1, 2]), "labels": torch.tensor([1, 2])}]
    assert hooks._ValShard(packed, [], 1, -100)[0]["labels"].tolist() == [-100, -100]


def test_export_dir_template():
    from cruijff.train.export import export_dir

    assert str(export_dir("{output_dir}/epoch_{epoch}/model", output_dir="/o", epoch=2)) == "/o/epoch_2/model"


def test_metrics_log_and_record(tmp_path):
    from cruijff.train.metrics import EpochRecord, MetricsLog, read_metrics

    log = MetricsLog(tmp_path / "logs" / "metrics.jsonl", append=False)
    log.write(type="train", step=1, epoch=0, train_loss=2.0)
    log.close()
    with open(tmp_path / "logs" / "metrics.jsonl", "a") as f:
        f.write('{"type": "val", "st')  # a job killed mid-line
    events = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    assert len(events) == 1 and events[0]["train_loss"] == 2.0 and "time" in events[0]

    rec = EpochRecord(epoch=0)
    rec.add_step(2.0, 10)
    rec.add_step(1.0, 30)
    rec.train_seconds = 2.0
    rec.finish()
    rec.write(tmp_path / "epoch_0" / "record.json")
    data = json.loads((tmp_path / "epoch_0" / "record.json").read_text())
    assert data["train_loss"] == pytest.approx(1.25) and data["tokens"] == 40 and data["tokens_per_second"] == 20
    assert "loss_sum" not in data


def test_metrics_log_writes_strict_json_for_nan_and_inf(tmp_path):
    """A NaN loss used to be written as a bare NaN, which strict JSON readers reject."""
    from cruijff.train.metrics import EpochRecord, MetricsLog, read_metrics

    path = tmp_path / "logs" / "metrics.jsonl"
    log = MetricsLog(path, append=False)
    log.write(type="train", step=1, epoch=0, train_loss=float("nan"), tokens=0)
    log.write(type="val", step=1, epoch=0, val_loss=float("inf"), tokens=3)
    log.close()
    strict = [json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl"))
              for line in path.read_text().splitlines()]
    assert [e.get("train_loss", e.get("val_loss")) for e in strict] == [None, None]
    assert read_metrics(path)[0]["train_loss"] is None and read_metrics(path)[0]["tokens"] == 0

    rec = EpochRecord(epoch=0, val_loss=float("nan"))
    rec.write(tmp_path / "record.json")
    json.loads((tmp_path / "record.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))


def test_trainable_rows_checked_after_truncation(recipes, caplog):
    import torch

    ok = {"tokens": [1, 2, 3, 4], "labels": [-100, -100, 3, 4]}
    cut = {"tokens": [1, 2, 3], "labels": [-100, -100, -100]}
    first_only = {"tokens": [1, 2], "labels": [1, -100]}  # the shifted loss never sees position 0
    assert recipes.trainable_tokens(ok, -100) == 2 and recipes.trainable_tokens(first_only, -100) == 0
    assert recipes.trainable_tokens({"labels": torch.tensor([-100, 5, 6])}, -100) == 2

    assert recipes.check_trainable([ok, cut, ok, first_only], ignore_index=-100, split="training",
                                   max_seq_len=64) == [1, 3]
    assert "2 of 4 rows of the training split keep no answer token" in caplog.text
    assert "rows 1, 3" in caplog.text and "max_seq_len 64" in caplog.text
    with pytest.raises(recipes.TrainingError, match="truncation to max_seq_len 64 cuts every answer") as e:
        recipes.check_trainable([cut, first_only], ignore_index=-100, split="training", max_seq_len=64)
    assert "raise max_seq_len" in str(e.value)


def test_step_without_tokens_or_with_nonfinite_loss_stops_the_run(recipes):
    recipes.check_step(step=3, epoch=0, loss=1.5, tokens=10, lr=3e-5)
    with pytest.raises(recipes.TrainingError, match="step 3 .*trained on 0 tokens") as e:
        recipes.check_step(step=3, epoch=0, loss=float("nan"), tokens=0, lr=3e-5)
    assert "raise max_seq_len" in str(e.value)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(recipes.TrainingError, match="diverged") as e:
            recipes.check_step(step=7, epoch=1, loss=bad, tokens=10, lr=3e-5)
        assert "lower the learning rate" in str(e.value) and "now 3e-05" in str(e.value)
