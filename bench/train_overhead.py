"""Throughput of cruijff's single-device LoRA recipe against torchtune's own, on the tiny model.

Both recipes get the same config (the tiny model's compiled finetune.yaml, tests/helpers_finetune.py, validation off, export off, every epoch saved
adapter-only in both) and run in this process, alternately, `--rounds` times; the figure is loss
tokens per second of `train()` (the training loop and its epoch-end saves). The merged export,
which the stock recipe has no equivalent of, is timed on its own. Goal: ratio >= 0.97.

    python bench/train_overhead.py [--rounds 5] [--rows 256] [--epochs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # cruijff and tests/helpers_finetune.py from this checkout


def make_config(tmp: Path, model_dir: Path, rows: int, epochs: int, batch_size: int):
    from omegaconf import OmegaConf

    cons, vow = "bcdfghjklmnprstv", "aeiou"
    words = [f"{a}{b}{c}{d}" for a in cons for b in vow for c in cons for d in vow][:rows]
    data = tmp / "words.json"
    data.write_text(json.dumps({"train": [{"input": w, "output": w.capitalize()} for w in words]}))
    from tests.helpers_finetune import tiny_finetune_config  # the config cruijff's compiler renders

    cfg = OmegaConf.load(tiny_finetune_config(tmp / "plan", model_dir, data))
    for key in ("dataset_val", "export", "run_val_every_n_steps", "save_epochs"):
        cfg.pop(key, None)  # validation and export off; save_epochs absent: every epoch, like stock
    cfg.epochs, cfg.batch_size = epochs, batch_size
    return cfg


def timed_train(cls, cfg, out: Path) -> tuple[float, int]:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(OmegaConf.to_yaml(cfg).replace(str(cfg.output_dir), str(out)))
    recipe = cls(cfg=cfg)
    recipe.setup(cfg=cfg)
    ignore = recipe._loss_fn.ignore_index
    ds = recipe._dataloader.dataset
    tokens = sum(sum(1 for x in ds[i]["labels"] if int(x) != ignore) for i in range(len(ds))) * cfg.epochs
    start = time.perf_counter()
    recipe.train()
    seconds = time.perf_counter() - start
    recipe.cleanup()
    return seconds, tokens


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: least noise on a shared CPU)")
    args = ap.parse_args(argv)

    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.disable(logging.INFO)
    from cruijff.llm.tiny import build_tiny_llama
    from cruijff.train import recipes as cj
    from cruijff.train.export import export_merged
    from cruijff.train.stock import stock_recipe

    stock = stock_recipe("lora_finetune_single_device").LoRAFinetuneRecipeSingleDevice
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = build_tiny_llama(tmp / "model")
        cfg = make_config(tmp, model_dir, args.rows, args.epochs, args.batch_size)
        timed_train(cj.LoRAFinetuneRecipeSingleDevice, cfg, tmp / "warmup")  # imports, caches
        rates: dict[str, list[float]] = {"stock": [], "cruijff": []}
        for r in range(args.rounds):
            order = [("stock", stock), ("cruijff", cj.LoRAFinetuneRecipeSingleDevice)]
            for name, cls in order if r % 2 == 0 else order[::-1]:
                seconds, tokens = timed_train(cls, cfg, tmp / f"{name}_{r}")
                rates[name].append(tokens / seconds)
                print(f"round {r} {name:8s} {tokens} tokens in {seconds:.3f} s = {tokens / seconds:,.0f} tokens/s",
                      file=sys.stderr)
        ckpt = tmp / f"cruijff_{args.rounds - 1}" / "checkpoints" / f"epoch_{args.epochs - 1}"
        start = time.perf_counter()
        export_merged(model_dir, ckpt, tmp / "export")
        export_seconds = time.perf_counter() - start

    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["cruijff"] / med["stock"]
    print(f"stock torchtune lora_finetune_single_device: {med['stock']:,.0f} tokens/s (median of {args.rounds})")
    print(f"cruijff lora_finetune_single_device:         {med['cruijff']:,.0f} tokens/s (median of {args.rounds})")
    print(f"ratio cruijff/stock: {ratio:.3f} (goal >= 0.97); per-round ratios: "
          + ", ".join(f"{c / s:.3f}" for c, s in zip(rates["cruijff"], rates["stock"])))
    print(f"merged export of one epoch (not in the ratio): {export_seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
