"""Every finetune.yaml cruijff writes (compiled by `compile_manifest`, single-device and distributed,
and what `cruijff plan` renders for the tiny experiment) passes `tune validate`: each `_component_`
resolves and accepts its keys. The distributed config is checked here even though it cannot run on
this machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require
from tests.helpers_finetune import tiny_finetune_config

pytestmark = pytest.mark.train


def tune_validate(path: Path) -> subprocess.CompletedProcess:
    tune = Path(sys.executable).with_name("tune")
    require(tune.is_file(), "torchtune's `tune` CLI is not installed next to this Python")
    return subprocess.run([str(tune), "validate", str(path)], capture_output=True, text=True, timeout=120)


def compiled(tmp_path: Path, gpus: int) -> Path:
    """The tiny model's finetune.yaml as the compiler renders it (tests/helpers_finetune.py)."""
    return tiny_finetune_config(tmp_path / "plan", tmp_path / "model", tmp_path / "data.json", gpus=gpus)


@pytest.mark.parametrize("gpus", [0, 2], ids=["single_device", "distributed"])
def test_compiled_configs_validate(gpus, tmp_path):
    config = compiled(tmp_path, gpus)
    text = config.read_text()
    recipe = "lora_finetune_distributed.py" if gpus else "lora_finetune_single_device.py"
    assert recipe in text and ("device: cuda" if gpus else "device: cpu") in text
    proc = tune_validate(config)
    assert proc.returncode == 0, proc.stderr
    assert "Config is well-formed!" in proc.stdout


def test_validate_catches_a_wrong_dataset_key(tmp_path):
    """So the test above means something: an unknown key of prompted_dataset is an error."""
    from omegaconf import OmegaConf

    path = compiled(tmp_path, 0)
    cfg = OmegaConf.load(path)
    cfg.dataset.train_on_inputs = cfg.dataset.pop("train_on_input")
    OmegaConf.save(cfg, path)
    proc = tune_validate(path)
    assert proc.returncode != 0 and "train_on_inputs" in proc.stderr


def test_planned_configs_validate(tmp_path):
    """The configs `cruijff plan` renders for the tiny experiment."""
    from tests.helpers_models import placed_tiny

    proc = subprocess.run([sys.executable, "-m", "cruijff", "plan", str(placed_tiny(tmp_path)),
                           "--out", str(tmp_path / "plan")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    configs = sorted((tmp_path / "plan").glob("finetune/*/finetune.yaml"))
    assert configs
    for config in configs:
        result = tune_validate(config)
        assert result.returncode == 0, f"{config}: {result.stderr}"


def test_multi_gpu_plan_renders_the_distributed_recipe_and_validates(tmp_path):
    """gpus > 1: `tune run --nproc_per_node N` with the distributed recipe, and a config that validates
    (it cannot run here: no GPUs)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    manifest = yaml.load((REPO / "experiments" / "tiny.yaml").read_text())
    manifest["finetune"]["resources"] = {"gpus": 2, "cpus": 8, "mem": "64G", "time": "01:00:00"}
    manifest["executor"] = {"kind": "slurm"}
    manifest["models"]["tiny"]["path"] = str(REPO / "experiments" / "tiny" / "model")
    manifest["datasets"]["words"]["path"] = str(tmp_path / "words.json")
    manifest["eval"]["tasks"][0]["file"] = str(REPO / "experiments" / "tasks" / "capitalization.py")
    path = tmp_path / "gpu.yaml"
    with path.open("w") as f:
        yaml.dump(manifest, f)
    proc = subprocess.run([sys.executable, "-m", "cruijff", "plan", str(path), "--out", str(tmp_path / "plan")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "plan" / "finetune" / "tiny_words_r4"
    script = (run / "job.sbatch").read_text()
    assert "#SBATCH --gres=gpu:2" in script
    assert "tune run --nproc_per_node 2 lora_finetune_distributed.py --config" in script
    config = (run / "finetune.yaml").read_text()
    assert "device: cuda" in config and "dtype: bf16" in config
    result = tune_validate(run / "finetune.yaml")
    assert result.returncode == 0, result.stderr
