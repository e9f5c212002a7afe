"""An adapter cruijff trained names its base model (issue 23, item 8)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cruijff.cli import cli
from cruijff.llm._load import adapter_base, resolve
from cruijff.train.export import record_base


def _adapter(folder, base=None):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "r": 4}))
    return folder


def test_an_adapter_without_a_base_finds_it_in_its_runs_finetune_yaml(tmp_path):
    run = tmp_path / "finetune" / "r0"
    adapter = _adapter(run / "checkpoints" / "epoch_0")
    (run / "finetune.yaml").write_text("export:\n  base_model_dir: /models/base\n  dir_template: x\n")
    assert adapter_base(adapter) == "/models/base"
    assert resolve(str(adapter)) == ("/models/base", str(adapter))


def test_the_export_records_the_base_where_torchtune_left_none(tmp_path):
    adapter = _adapter(tmp_path / "a")
    record_base(adapter, tmp_path / "base")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tmp_path / "base") and config["r"] == 4
    record_base(adapter, tmp_path / "other")  # one already named is kept
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tmp_path / "base")


def test_logits_takes_base_as_check_finetuned_does(tmp_path):
    assert "--base" in CliRunner().invoke(cli, ["logits", "--help"]).output
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"test": [{"input": "a", "output": "A"}]}))
    adapter = _adapter(tmp_path / "a")
    res = CliRunner().invoke(cli, ["logits", str(data), "--model", str(adapter), "--base", str(tmp_path),
                                   "--adapter", str(adapter), "--out", str(tmp_path / "l.h5")])
    assert "not both" in str(res.exception)
