"""Real `tune run` of cruijff's LoRA recipes on the tiny Llama, on CPU.

Checks the contract the rest of cruijff relies on: only `save_epochs` are saved and exported,
the export is a clean HF directory whose logits equal the trained torchtune model's, validation
loss is recorded (and equals the exported model's own loss on the split), metrics.jsonl and
record.json have their documented shape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require
from tests.helpers_finetune import tiny_finetune_config

pytestmark = pytest.mark.train

RECIPES = REPO / "recipes"
WORDS = (
    "apple banana cherry dog house river mountain cat paper stone water fire garden window table "
    "chair music twin pair trait height weight answer question letter word input output system "
    "user one zero yes no true false lower upper case bird cloud field glass honey island jacket "
    "kettle lemon mirror needle orange pencil queen rabbit sugar tiger violin wagon yellow zebra "
    "anchor bottle candle dragon"
).split()


def tune_bin() -> str:
    tune = Path(sys.executable).with_name("tune")
    require(tune.is_file(), "torchtune's `tune` CLI is not installed next to this Python")
    return str(tune)


def write_dataset(path: Path) -> Path:
    rows = [{"input": w, "output": w.capitalize()} for w in WORDS]
    path.write_text(json.dumps({"train": rows[:48], "validation": rows[48:56], "test": rows[56:]}))
    return path


def render_config(plan_dir: Path, model_dir: Path, data: Path, **overrides) -> Path:
    """The tiny run's finetune.yaml compiled by cruijff's compiler into `plan_dir` (its folder is
    the run's output_dir); overrides replace top-level keys of the rendered config."""
    from omegaconf import OmegaConf

    path = tiny_finetune_config(plan_dir, model_dir, data)
    if overrides:
        cfg = OmegaConf.load(path)
        for key, value in overrides.items():
            cfg[key] = value
        OmegaConf.save(cfg, path)
    return path


def run_recipe(config: Path, *, nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """How a job script launches the recipe: `tune run <file>.py` from the recipes folder.

    torchtune 0.6.1 turns a custom recipe path into a module name, so an absolute path fails and
    `recipes/<file>.py` would resolve to torchtune's own `recipes` package: run from the folder.
    """
    recipe = "lora_finetune_distributed.py" if nproc > 1 else "lora_finetune_single_device.py"
    argv = [tune_bin(), "run"] + (["--nproc_per_node", str(nproc)] if nproc > 1 else []) + [
        recipe, "--config", str(config)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(argv, cwd=RECIPES, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"recipe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "capitalize.json")


@pytest.fixture(scope="module")
def single_run(tiny_model_dir, data_file, tmp_path_factory) -> Path:
    config = render_config(tmp_path_factory.mktemp("single"), tiny_model_dir, data_file)
    run_recipe(config)
    return config.parent


def tune_model_with_adapter(config: Path, model_dir: Path, adapter_pt: Path, scratch: Path):
    """The torchtune LoRA model as trained: base weights from the HF checkpoint + saved adapter."""
    import torch
    from omegaconf import OmegaConf
    from torchtune import config as tt_config
    from torchtune.training import FullModelHFCheckpointer

    cfg = OmegaConf.load(config)
    model = tt_config.instantiate(cfg.model)
    base = FullModelHFCheckpointer(checkpoint_dir=str(model_dir), checkpoint_files=["model.safetensors"],
                                   model_type="LLAMA3", output_dir=str(scratch)).load_checkpoint()["model"]
    adapter = torch.load(adapter_pt, weights_only=True)
    missing, unexpected = model.load_state_dict({**base, **adapter}, strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    return model.eval()


def hf_split_loss(model, samples) -> tuple[float, int]:
    """Token-weighted mean next-token loss of an HF model over tokenized samples."""
    import torch

    total, count = 0.0, 0
    for s in samples:
        tokens = torch.tensor([s["tokens"]])
        labels = torch.tensor([[int(x) for x in s["labels"]]])[:, 1:]
        with torch.no_grad():
            logits = model(tokens).logits[:, :-1].float()
        keep = labels != -100
        total += torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
        count += int(keep.sum())
    return total / count, count


def validation_samples(model_dir: Path, data: Path):
    from omegaconf import OmegaConf
    from torchtune import config as tt_config

    from cruijff.llm.tiny import torchtune_tokenizer
    from cruijff.train.datasets import prompted_dataset

    tok = tt_config.instantiate(OmegaConf.create(torchtune_tokenizer(model_dir)))
    ds = prompted_dataset(tok, path=str(data), format="instruct_json", split="validation",
                          template="Capitalize: {input}")
    return [ds[i] for i in range(len(ds))]


def test_only_save_epochs_are_saved_and_exported(single_run):
    assert not (single_run / "checkpoints" / "epoch_0").exists()
    assert not (single_run / "epoch_0" / "model").exists()
    assert (single_run / "checkpoints" / "epoch_1" / "adapter_model.safetensors").is_file()
    model = single_run / "epoch_1" / "model"
    assert (model / "model.safetensors").is_file() and (model / "config.json").is_file()
    assert (model / "tokenizer.json").is_file()
    assert not (model / "adapter_config.json").exists(), "a merged export must not hold an adapter"
    assert not list(single_run.glob("epoch_1/.model.tmp-*")), "temporary export left behind"


def test_records_and_metrics(single_run):
    r0 = json.loads((single_run / "epoch_0" / "record.json").read_text())
    r1 = json.loads((single_run / "epoch_1" / "record.json").read_text())
    assert (r0["epoch"], r0["saved"], r0["exported"], r0["export_dir"]) == (0, False, False, None)
    assert (r1["epoch"], r1["saved"], r1["exported"]) == (1, True, True)
    assert r1["export_dir"] == str(single_run / "epoch_1" / "model")
    for r in (r0, r1):
        assert r["steps"] == 12 and r["tokens"] > 0 and r["world_size"] == 1
        assert r["train_loss"] > 0 and r["val_loss"] > 0 and r["tokens_per_second"] > 0
        assert r["peak_memory_bytes"] > 0 and r["wall_seconds"] >= r["train_seconds"] > 0
    assert r1["global_step"] == 24

    events = [json.loads(line) for line in (single_run / "logs" / "metrics.jsonl").read_text().splitlines()]
    train = [e for e in events if e["type"] == "train"]
    val = [e for e in events if e["type"] == "val"]
    assert [e["step"] for e in train] == list(range(1, 25))
    assert {e["epoch"] for e in train[:12]} == {0} and {e["epoch"] for e in train[12:]} == {1}
    assert all({"train_loss", "lr", "tokens", "tokens_total", "time"} <= e.keys() for e in train)
    assert train[-1]["tokens_total"] == r0["tokens"] + r1["tokens"]
    # every 8 steps, and at each epoch end (step 24 is both: validated once)
    assert [e["step"] for e in val] == [8, 12, 16, 24]
    assert val[-1]["val_loss"] == pytest.approx(r1["val_loss"])
    assert val[1]["val_loss"] == pytest.approx(r0["val_loss"])
    assert train[-1]["train_loss"] < train[0]["train_loss"]
    # torchtune's own metric logger got the validation loss too
    disk_log = next((single_run / "logs").glob("log_*.txt")).read_text()
    assert "val_loss:" in disk_log


def test_export_matches_trained_torchtune_model(single_run, tiny_model_dir, data_file, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = single_run / "epoch_1" / "model"
    hf = AutoModelForCausalLM.from_pretrained(str(export)).eval()
    tok = AutoTokenizer.from_pretrained(str(export))
    base_tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    text = "<|im_start|>user\nCapitalize: garden<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text)["input_ids"]
    assert ids == base_tok(text)["input_ids"]

    tune = tune_model_with_adapter(single_run / "finetune.yaml", tiny_model_dir,
                                   single_run / "checkpoints" / "epoch_1" / "adapter_model.pt", tmp_path)
    tokens = torch.tensor([ids])
    with torch.no_grad():
        tune_logits = tune(tokens)
        if isinstance(tune_logits, list):
            tune_logits = torch.cat(tune_logits, dim=1)
        hf_logits = hf(tokens).logits
        base_logits = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))(tokens).logits
    torch.testing.assert_close(hf_logits, tune_logits, atol=1e-5, rtol=0)
    assert (hf_logits - base_logits).abs().max() > 1e-3, "the adapter changed nothing: test is vacuous"

    # The recorded validation loss is the exported model's own loss on the validation split.
    loss, count = hf_split_loss(hf, validation_samples(tiny_model_dir, data_file))
    record = json.loads((single_run / "epoch_1" / "record.json").read_text())
    assert record["val_loss"] == pytest.approx(loss, abs=1e-4)
    last_val = [json.loads(x) for x in (single_run / "logs" / "metrics.jsonl").read_text().splitlines()][-1]
    assert last_val["type"] == "val" and last_val["tokens"] == count


def test_distributed_recipe_two_processes_on_cpu(tiny_model_dir, data_file, tmp_path):
    """FSDP2 over gloo, 2 ranks: validation is all-reduced and the export is rank 0's, after training."""
    config = render_config(tmp_path / "dist", tiny_model_dir, data_file, run_val_every_n_steps=None)
    out = config.parent
    run_recipe(config, nproc=2)
    assert not (out / "epoch_0" / "model").exists()
    record = json.loads((out / "epoch_1" / "record.json").read_text())
    assert record["world_size"] == 2 and record["steps"] == 6 and record["exported"]

    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(out / "epoch_1" / "model")).eval()
    loss, count = hf_split_loss(hf, validation_samples(tiny_model_dir, data_file))
    assert record["val_loss"] == pytest.approx(loss, abs=1e-4)
    val = [json.loads(x) for x in (out / "logs" / "metrics.jsonl").read_text().splitlines()
           if '"val"' in x]
    assert [e["step"] for e in val] == [6, 12] and val[-1]["tokens"] == count


def test_absolute_recipe_path_is_refused_by_tune_0_6_1(tmp_path):
    """Documents why job scripts must `cd` to the recipes folder (or call python/torchrun)."""
    proc = subprocess.run([tune_bin(), "run", str(RECIPES / "lora_finetune_single_device.py"),
                           "--config", str(tmp_path / "x.yaml")], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode == 0:  # a later torchtune fixed it: then absolute paths are fine
        return
    assert "Relative module names not supported" in proc.stderr


def test_recipe_refuses_bad_save_epochs(tiny_model_dir, data_file, tmp_path):
    config = render_config(tmp_path / "bad", tiny_model_dir, data_file, save_epochs=[2])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(RECIPES / "lora_finetune_single_device.py"),
                           "--config", str(config)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "save_epochs [2] outside 0..1" in proc.stderr


# ---- runs that would train on nothing, or diverge, fail loudly (issue 12.1) ----------------------

def run_recipe_failing(config: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([tune_bin(), "run", "lora_finetune_single_device.py", "--config", str(config)],
                          cwd=RECIPES, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, f"the recipe should have failed:\n{proc.stderr[-3000:]}"
    return proc


def small_config(plan_dir: Path, model_dir: Path, data: Path, *, max_seq_len: int, **overrides) -> Path:
    """One short epoch in file order, with the tokenizer truncating to max_seq_len; the run's
    output_dir is the config's folder."""
    from omegaconf import OmegaConf

    path = render_config(plan_dir, model_dir, data, shuffle=False, epochs=1, save_epochs=[0],
                         run_val_every_n_steps=None, **overrides)
    cfg = OmegaConf.load(path)
    cfg.tokenizer.max_seq_len = max_seq_len
    OmegaConf.save(cfg, path)
    return path


@pytest.fixture(scope="module")
def long_short_data(tmp_path_factory) -> Path:
    """Four rows whose long prompt leaves no room for the answer at 24 tokens, then four short ones."""
    long = " ".join(["apple banana cherry"] * 12)
    rows = ([{"input": f"{long} {i}", "output": "Yes"} for i in range(4)]
            + [{"input": w, "output": w.upper()} for w in ("dog", "cat", "sun", "sea")])
    path = tmp_path_factory.mktemp("trunc") / "long_short.json"
    path.write_text(json.dumps({"train": rows, "validation": rows[4:], "test": rows[4:]}))
    return path


def strict_events(path: Path) -> list[dict]:
    def refuse(constant):
        raise AssertionError(f"bare {constant} in {path}: not strict JSON")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


@pytest.mark.slow  # the default tier has it through apply and status: test_failures_say_why_in_status_local
def test_every_answer_truncated_fails_before_training(tiny_model_dir, long_short_data, tmp_path):
    config = small_config(tmp_path / "plan", tiny_model_dir, long_short_data, max_seq_len=8)
    proc = run_recipe_failing(config)
    run = config.parent
    assert "error: no row of the training split keeps an answer token for the loss: " \
           "truncation to max_seq_len 8 cuts every answer (all 8 rows)" in proc.stderr
    assert "raise max_seq_len" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run / "logs" / "metrics.jsonl").exists()
    assert not (run / "checkpoints" / "epoch_0").exists()


def test_a_step_with_no_trained_token_stops_the_run(tiny_model_dir, long_short_data, tmp_path):
    """Rows 0-3 lose their answer, so the first batch of 4 (file order) trains on 0 tokens."""
    config = small_config(tmp_path / "plan", tiny_model_dir, long_short_data, max_seq_len=24)
    proc = run_recipe_failing(config)
    run = config.parent
    assert "4 of 8 rows of the training split keep no answer token after truncation to max_seq_len 24 " \
           "(rows 0, 1, 2, 3)" in proc.stderr
    assert "error: optimizer step 1 (epoch 0) trained on 0 tokens" in proc.stderr
    events = strict_events(run / "logs" / "metrics.jsonl")
    assert [(e["step"], e["tokens"], e["train_loss"]) for e in events] == [(1, 0, None)]
    assert not (run / "epoch_0").exists(), "a failed run must not leave an epoch record"


def test_a_diverged_run_fails(tiny_model_dir, data_file, tmp_path):
    config = small_config(tmp_path / "plan", tiny_model_dir, data_file, max_seq_len=512,
                          optimizer={"_component_": "torch.optim.AdamW", "fused": False, "lr": 1e12})
    proc = run_recipe_failing(config)
    run = config.parent
    assert "the run diverged" in proc.stderr and "lower the learning rate" in proc.stderr
    events = strict_events(run / "logs" / "metrics.jsonl")
    assert any(e.get("train_loss", e.get("val_loss", 0.0)) is None for e in events)
    assert not (run / "checkpoints" / "epoch_0").exists()
    assert not (run / "epoch_0" / "model").exists()
