"""What one resumable checkpoint costs (cruijff.train.resume), for the tiny model and SmolLM2-135M on CPU.

For each model the compiled finetune.yaml (tests/helpers_finetune.py for the tiny Llama,
experiments/smollm2.yaml for SmolLM2) is set up in this process with cruijff's single-device
recipe; a few optimizer steps are trained (so the optimizer has its state), then the checkpoint
the recipe writes on a signal or at its interval (`_save_resumable`: adapter + optimizer +
scheduler + RNG + positions, written atomically with fsync) is saved `--saves` times. Printed:
the file size, the median and the worst save time, a training step's time, and the overhead at
the default interval (median save / 1800 s).

    python bench/checkpoint.py [--models tiny smollm2] [--saves 5] [--steps 3]

SmolLM2 is read from $CRUIJFF_SMOLLM2_DIR (default .cache/SmolLM2-135M-Instruct), as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def words_file(path: Path, rows: int = 64) -> Path:
    cons, vow = "bcdfghjklmnprstv", "aeiou"
    words = [f"{a}{b}{c}{d}" for a in cons for b in vow for c in cons for d in vow][:rows]
    path.write_text(json.dumps({"train": [{"input": w, "output": w.capitalize()} for w in words]}))
    return path


def tiny_config(tmp: Path):
    from omegaconf import OmegaConf

    from cruijff.llm.tiny import build_tiny_llama
    from tests.helpers_finetune import tiny_finetune_config

    model = build_tiny_llama(tmp / "tiny", seed=0)
    return OmegaConf.load(tiny_finetune_config(tmp / "plan", model, words_file(tmp / "words.json")))


def smollm2_config(tmp: Path):
    from omegaconf import OmegaConf
    from ruamel.yaml import YAML

    from cruijff.compiler.pipeline import compile_manifest

    model = Path(os.environ.get("CRUIJFF_SMOLLM2_DIR", REPO / ".cache" / "SmolLM2-135M-Instruct"))
    if not (model / "model.safetensors").is_file():
        raise SystemExit(f"no SmolLM2 at {model}: set CRUIJFF_SMOLLM2_DIR (tests/conftest.py builds it)")
    yaml = YAML()
    m = yaml.load((REPO / "experiments" / "smollm2.yaml").read_text())
    m["output_dir"] = str(tmp / "plan")
    m["models"]["smollm2"]["path"] = str(model)
    m["datasets"]["words"] = {"path": str(words_file(tmp / "words.json")), "format": "instruct_json"}
    m.pop("eval", None)
    manifest = tmp / "smollm2.yaml"
    with manifest.open("w") as f:
        yaml.dump(m, f)
    compiled = compile_manifest(manifest, out=str(tmp / "plan"), check_paths=False)
    rel = next(k for k in compiled.files if k.endswith("finetune.yaml"))
    (tmp / "plan" / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp / "plan" / rel).write_text(compiled.files[rel])
    return OmegaConf.load(tmp / "plan" / rel)


def measure(name: str, cfg, saves: int, steps: int) -> dict:
    import torch

    from cruijff.train.recipes import LoRAFinetuneRecipeSingleDevice

    cfg.pop("dataset_val", None)
    cfg.run_val_every_n_steps = None
    cfg.max_steps_per_epoch, cfg.epochs, cfg.batch_size = steps, 1, 4
    cfg.export = None
    cfg.save_epochs = []
    recipe = LoRAFinetuneRecipeSingleDevice(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe._resume = type(recipe._resume)(recipe._resume.path, None, None)  # no saves inside train()
    recipe._cj = type(recipe._cj)(frozenset(), None, None, None)  # no epoch save either
    start = time.perf_counter()
    recipe.train()
    step = (time.perf_counter() - start) / steps
    recipe._start_epoch(0)
    seconds = []
    for _ in range(saves):
        t = time.perf_counter()
        recipe._save_resumable(0, boundary=False)
        seconds.append(time.perf_counter() - t)
    size = recipe._resume.path.stat().st_size
    trainable = sum(p.numel() for p in recipe._model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in recipe._model.parameters())
    recipe.cleanup()
    median = statistics.median(seconds)
    return {"model": name, "params": total, "trainable": trainable, "file_mb": round(size / 2**20, 2),
            "save_s_median": round(median, 4), "save_s_max": round(max(seconds), 4),
            "step_s": round(step, 3), "overhead_at_30min_pct": round(100 * median / 1800, 5),
            "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=["tiny", "smollm2"])
    ap.add_argument("--saves", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.pop("CRUIJFF_NODE_DIR", None)  # no record.jsonl events
    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = (tiny_config if name == "tiny" else smollm2_config)(Path(tmp))
            print(json.dumps(measure(name, cfg, args.saves, args.steps)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
