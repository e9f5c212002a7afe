"""What cruijff adds to torchtune's LoRA recipes, as hooks their copied `train()` loops call.

cruijff/train/recipes.py keeps only the two recipe classes (torchtune's own, subclassed, with the
copied loops tests/unit/test_recipe_drift.py pins) and their entry points; everything the loops
call lives here, in `CruijffRecipeMixin`:

- `Settings`: cruijff's own keys of finetune.yaml (save_epochs, run_val_every_n_steps, export);
- validation: `dataset_val`'s loss every n optimizer steps and at each epoch end, a
  token-weighted mean over the whole split, all-reduced across ranks (`_ValShard`);
- per step and per epoch: logs/metrics.jsonl, epoch_<n>/record.json (cruijff.train.metrics),
  adapter-only saves of the chosen epochs and the merged HF export (cruijff.train.export);
- resumable checkpoints (save, restore, skip trained batches): `ResumableMixin`, in
  cruijff.train.resumable.

The trainable-token checks (check_trainable, check_step) and TrainingError are imported from
cruijff.train.recipes inside the methods that use them: recipes.py imports this module at its top.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from torchtune import config, utils
from torchtune.data import padded_collate_packed

from cruijff.errors import CruijffError
from cruijff.train.export import export_adapter, export_dir, export_merged
from cruijff.train import resume
from cruijff.train.resumable import ResumableMixin
from cruijff.train.metrics import EpochRecord, MetricsLog, peak_memory, reset_peak_memory
from cruijff.train.trainable import DIVERGED_FIX, TrainingError, check_step, check_trainable

log = utils.get_logger("INFO")


class RecipeConfigError(CruijffError):
    """finetune.yaml holds a cruijff key with a value the recipe cannot use."""


def component(dotpath: str):
    """The object a config's dotted path names (`torchtune.data.padded_collate_sft`), imported the
    way torchtune resolves a `_component_`, without its private `_get_component_from_path`."""
    module, _, name = dotpath.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise RecipeConfigError(f"cannot import {dotpath!r}",
                                hint="give a dotted path such as torchtune.data.padded_collate_sft") from None


@dataclass(frozen=True)
class Settings:
    """cruijff's own keys of finetune.yaml."""

    save_epochs: frozenset[int] | None  # None: every epoch
    val_every: int | None
    export_base: str | None
    export_template: str | None  # the merged model's folder (export.dir_template); None: no merge
    adapter_template: str | None = None  # the clean adapter's folder (export.adapter_template)

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> "Settings":
        epochs = int(cfg.epochs)
        save = cfg.get("save_epochs", None)
        if save is not None:
            save = frozenset(int(e) for e in save)
            bad = sorted(e for e in save if not 0 <= e < epochs)
            if bad:
                raise RecipeConfigError(f"save_epochs {bad} outside 0..{epochs - 1} (epochs are 0-based)")
        every = cfg.get("run_val_every_n_steps", None)
        if every is not None and int(every) < 1:
            raise RecipeConfigError(f"run_val_every_n_steps must be >= 1 or null, got {every}")
        exp = cfg.get("export", None) or {}
        base, template, adapter = exp.get("base_model_dir"), exp.get("dir_template"), exp.get("adapter_template")
        if bool(base) != bool(template or adapter):
            raise RecipeConfigError("export needs base_model_dir and dir_template, adapter_template or both")
        return cls(save, int(every) if every else None, base, template, adapter)

    def saves(self, epoch: int) -> bool:
        return self.save_epochs is None or epoch in self.save_epochs


class _ValShard(Dataset):
    """This rank's share of the validation split, padded with loss-free copies to equal length.

    Every rank must run the same number of forward passes (FSDP gathers weights collectively);
    the padding samples have every label ignored, so they add nothing to the loss sums.
    """

    def __init__(self, ds, indices: list[int], pad: int, ignore_index: int):
        self._ds, self._indices, self._pad, self._ignore = ds, indices, pad, ignore_index

    def __len__(self) -> int:
        return len(self._indices) + self._pad

    def __getitem__(self, i: int) -> dict:
        if i < len(self._indices):
            return self._ds[self._indices[i]]
        sample = dict(self._ds[0])
        labels = sample["labels"]
        sample["labels"] = (torch.full_like(labels, self._ignore) if isinstance(labels, torch.Tensor)
                            else [self._ignore] * len(labels))
        return sample


class CruijffRecipeMixin(ResumableMixin):
    """Validation, selective adapter-only saves, export and run records, for either recipe."""

    _is_rank_zero = True  # the distributed recipe sets its own
    world_size = 1
    rank = 0
    _defer_exports = False  # distributed: export after training, outside collectives
    _resumable = True  # resumable checkpoints (cruijff.train.resume)

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg=cfg)
        self._cj = Settings.from_cfg(cfg)
        self._resume = resume.ResumeSettings.from_cfg(cfg)
        self._fingerprint = resume.fingerprint(cfg)
        self._batch_size_cfg = int(cfg.batch_size)
        self._stop = resume.StopFlag()
        if self._resumable:  # before the model loads: a warning during setup is kept for the first step
            self._stop.install()
        self._cfg_output_dir = str(cfg.output_dir)
        self._ckpt_output_dir = str(cfg.checkpointer.output_dir)
        self._save_adapter_weights_only = True

    # ---- setup -------------------------------------------------------------------------------
    def setup(self, cfg: DictConfig) -> None:

        super().setup(cfg=cfg)
        self._max_seq_len = cfg.get("tokenizer", {}).get("max_seq_len") or getattr(self._tokenizer, "max_seq_len", None)
        check_trainable(self._dataloader.dataset, ignore_index=self._loss_fn.ignore_index, split="training",
                        max_seq_len=self._max_seq_len)
        self._val_loader = None
        if cfg.get("dataset_val", None) is not None:
            self._val_loader = self._setup_val_data(cfg.dataset_val, cfg.batch_size,
                                                    cfg.get("collate_fn", "torchtune.data.padded_collate_sft"))
        self._tokens_total = 0
        self._last_val: tuple[int, float] | None = None
        self._pending_exports: list[tuple[int, EpochRecord]] = []
        self._resume_epoch: int | None = None  # the epoch a mid-epoch checkpoint resumes in
        self._ckpt_deferred = False
        state = resume.load(self._resume.path, self._fingerprint) if self._resumable else None
        self._metrics = None
        if self._is_rank_zero:
            path = Path(self._cfg_output_dir) / "logs" / "metrics.jsonl"
            if state is not None and path.is_file():  # drop what was logged after the checkpoint
                with open(path, "r+b") as f:
                    f.truncate(state["metrics_offset"])
            self._metrics = MetricsLog(path, append=bool(self._resume_from_checkpoint) or state is not None)
        if state is not None:
            self._restore(state)
        self._last_ckpt = time.monotonic()

    def _setup_val_data(self, cfg_val: DictConfig, batch_size: int, collate_name: str) -> DataLoader:

        ds = config.instantiate(cfg_val, self._tokenizer)
        ignore = self._loss_fn.ignore_index
        check_trainable(ds, ignore_index=ignore, split="validation", max_seq_len=self._max_seq_len)
        n = len(ds)
        indices = list(range(self.rank, n, self.world_size))
        pad = math.ceil(n / self.world_size) - len(indices)
        if cfg_val.get("packed", False):
            collate = padded_collate_packed
        else:
            collate = partial(component(collate_name), padding_idx=self._tokenizer.pad_id, ignore_idx=ignore)
        return DataLoader(_ValShard(ds, indices, pad, ignore), batch_size=batch_size,
                          shuffle=False, collate_fn=collate, drop_last=False)

    # ---- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def _validation_loss(self) -> tuple[float, int]:
        """Token-weighted mean loss over the whole validation split (all ranks), and its tokens."""
        ignore = self._loss_fn.ignore_index
        loss_sum = torch.zeros((), dtype=torch.float64, device=self._device)
        tokens = torch.zeros((), dtype=torch.int64, device=self._device)
        self._model.eval()
        try:
            for batch in self._val_loader:
                utils.batch_to_device(batch, self._device)
                labels = batch.pop("labels")
                logits = self._model(**batch)
                pad = torch.full((labels.shape[0], 1), ignore, dtype=labels.dtype, device=labels.device)
                labels = torch.hstack((labels[..., 1:], pad))
                if not isinstance(logits, list):
                    labels = labels.reshape(-1)
                    logits = logits.reshape(-1, logits.size(-1))
                n = (labels != ignore).sum()
                loss = self._loss_fn(logits, labels).double()
                # a batch with no label (padding, all cut) has loss 0/0: it adds nothing; a NaN
                # from the model itself stays NaN, so a diverged run is not read as loss 0
                loss_sum += torch.where(n > 0, loss * n, torch.zeros_like(loss))
                tokens += n
                del logits
        finally:
            self._model.train()
        if self.world_size > 1:
            torch.distributed.all_reduce(loss_sum)
            torch.distributed.all_reduce(tokens)
        n = int(tokens.item())
        return (float(loss_sum.item()) / n if n else float("nan")), n

    def _validate(self, epoch: int) -> float:

        if self._last_val and self._last_val[0] == self.global_step:
            return self._last_val[1]
        start = time.perf_counter()
        value, n = self._validation_loss()
        self._last_val = (self.global_step, value)
        self._epoch.val_seconds += time.perf_counter() - start
        if self._is_rank_zero:
            self._metric_logger.log_dict({"val_loss": value}, step=self.global_step)
            self._metrics.write(type="val", step=self.global_step, epoch=epoch, val_loss=value, tokens=n)
        if not math.isfinite(value):
            raise TrainingError(f"validation loss is {value} at optimizer step {self.global_step} "
                                f"(epoch {epoch}): the run diverged", hint=DIVERGED_FIX)
        return value

    # ---- hooks called by the training loops --------------------------------------------------
    def _start_epoch(self, epoch: int) -> None:
        reset_peak_memory(self._device)
        self._epoch = EpochRecord(epoch=epoch, world_size=self.world_size)
        self._epoch_start = time.perf_counter()
        if self._resume_epoch == epoch:  # the record as it stood at the checkpoint
            saved = dict(self._resume_record)
            self._epoch_start -= saved.pop("elapsed")
            for key, value in saved.items():
                setattr(self._epoch, key, value)

    def _after_step(self, epoch: int, loss: float, tokens: int, seconds: float) -> bool:
        """Record one optimizer step (then stop if it trained on nothing or diverged); validate when due."""

        self._epoch.add_step(loss, tokens)
        self._tokens_total += tokens
        lr = self._optimizer.param_groups[0]["lr"]
        if self._is_rank_zero:
            self._metrics.write(type="train", step=self.global_step, epoch=epoch, train_loss=loss,
                                lr=lr, tokens=tokens, tokens_total=self._tokens_total,
                                tokens_per_second=tokens / seconds if seconds > 0 else None)
        check_step(step=self.global_step, epoch=epoch, loss=loss, tokens=tokens, lr=lr)
        every = self._cj.val_every
        validated = False
        if self._val_loader is not None and every and self.global_step % every == 0:
            self._validate(epoch)
            validated = True
        self._maybe_checkpoint(epoch)
        return validated

    def _end_epoch(self, epoch: int) -> None:
        rec = self._epoch
        rec.train_seconds = time.perf_counter() - self._epoch_start - rec.val_seconds
        rec.global_step = self.global_step
        if self._val_loader is not None:
            rec.val_loss = self._validate(epoch)
        rec.peak_memory_bytes, rec.peak_memory_kind = self._peak_memory()
        if self._cj.saves(epoch):
            start = time.perf_counter()
            self.save_checkpoint(epoch=epoch)
            rec.save_seconds = time.perf_counter() - start
            rec.saved = True
            rec.checkpoint_dir = str(Path(self._ckpt_output_dir) / f"epoch_{epoch}")
            if self._cj.export_template or self._cj.adapter_template:
                if self._cj.export_template:
                    rec.export_dir = str(export_dir(self._cj.export_template,
                                                    output_dir=self._cfg_output_dir, epoch=epoch))
                if self._defer_exports:
                    self._pending_exports.append((epoch, rec))
                elif self._is_rank_zero:
                    self._export(rec)
        rec.finish()
        rec.wall_seconds = time.perf_counter() - self._epoch_start
        self._write_record(rec)
        self._maybe_checkpoint(epoch, boundary=True)

    def _peak_memory(self) -> tuple[int, str]:
        value, kind = peak_memory(self._device)
        if self.world_size > 1:
            t = torch.tensor(value, dtype=torch.int64, device=self._device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            value = int(t.item())
        return value, kind

    def _export(self, rec: EpochRecord) -> None:
        start = time.perf_counter()
        if self._cj.adapter_template:  # the adapter first: small, and evaluation-ready at once
            folder = export_dir(self._cj.adapter_template, output_dir=self._cfg_output_dir, epoch=rec.epoch)
            log.info(f"Exporting epoch {rec.epoch}'s adapter to {folder} ...")
            export_adapter(self._cj.export_base, rec.checkpoint_dir, folder)
            rec.adapter_dir = str(folder)
        if rec.export_dir:
            log.info(f"Exporting epoch {rec.epoch} to {rec.export_dir} ...")
            export_merged(self._cj.export_base, rec.checkpoint_dir, rec.export_dir)
        rec.export_seconds = time.perf_counter() - start
        rec.exported = True
        log.info(f"Exported epoch {rec.epoch} in {rec.export_seconds:.1f} s")

    def _write_record(self, rec: EpochRecord) -> None:
        if self._is_rank_zero:
            rec.write(Path(self._cfg_output_dir) / f"epoch_{rec.epoch}" / "record.json")

    def _finish(self) -> None:
        """After training: deferred exports (rank 0), then close cruijff's metrics file."""
        if self._is_rank_zero:
            for _, rec in self._pending_exports:
                self._export(rec)
                self._write_record(rec)
            self._metrics.close()
            if self._resumable:  # finished: nothing to resume
                self._stop.quiet()
                self._resume.path.unlink(missing_ok=True)
