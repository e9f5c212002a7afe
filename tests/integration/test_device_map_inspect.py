"""inspect's hf provider loads a model with the config cruijff renders for a multi-GPU evaluation
(`device: auto`, handed to from_pretrained as device_map) and evaluates with it. Here on CPU,
where accelerate places every layer on the one device there is; the spreading itself needs GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cruijff.results import scores
from cruijff.compiler.render.inspect import model_config
from cruijff.compiler.render.yaml import dump_yaml
from tests.conftest import REPO

pytestmark = pytest.mark.inspect


def test_device_auto_model_config_evaluates(tiny_model_dir, tmp_path):
    config = model_config(model_dir=str(tiny_model_dir), gpus=4, provider="hf")
    assert config["device"] == "auto"
    (tmp_path / "model_config.yaml").write_text(dump_yaml(config))
    data = tmp_path / "caps.json"
    data.write_text(json.dumps({"test": [{"input": w, "output": w.capitalize()} for w in ("apple", "river")]}))
    (tmp_path / "task_config.yaml").write_text(dump_yaml({"data": str(data), "format": "instruct_json",
                                                          "split": "test", "template": None, "system": None}))
    cmd = [str(Path(sys.executable).with_name("inspect")), "eval",
           str(REPO / "experiments" / "tasks" / "capitalization.py@capitalization"), "--model", "hf/local",
           "--model-config", "model_config.yaml", "--task-config", "task_config.yaml", "--log-dir", "logs",
           "--max-tokens", "4", "--display", "none"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = scores.latest(tmp_path / "logs")
    assert log is not None and log.status == "success", log
    assert log.samples == 2 and "exact_match/accuracy" in log.metrics
