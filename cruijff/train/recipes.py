"""cruijff's LoRA recipes: torchtune 0.6.1's own recipes, subclassed, and their entry points.

Everything torchtune does (model, checkpoint loading, optimizer, scheduler, FSDP, profiler,
metric logger) is inherited. Added, from finetune.yaml (the hooks live in cruijff.train.hooks):

- `dataset_val` + `run_val_every_n_steps`: validation loss every n optimizer steps and at each
  epoch end, a token-weighted mean over the whole split (all-reduced across ranks).
- `save_epochs`: only these 0-based epochs are saved (absent: every epoch), always adapter-only
  (torchtune 0.6.1's merged saves are wrong after the first epoch on CPU, and the export merges).
- `export`: after each saved epoch, a clean merged HF model at `dir_template`.
- `<output_dir>/logs/metrics.jsonl` and `<output_dir>/epoch_<n>/record.json` (cruijff.train.metrics).
- Loud failures instead of a silently empty run: at setup, a split whose every row lost all its
  answer tokens to truncation is an error (some such rows: a warning with their count); during
  training, a step with no trained token or a non-finite loss stops the run (TrainingError).

Only `train()` is rewritten: torchtune's loop has no hook per step; the copy keeps its maths, and
tests/unit/test_recipe_drift.py compares it with the installed torchtune's. `single_device_main`,
`distributed_main` and `run` are the entry points recipes/*.py (what `tune run` starts) import.
"""

from __future__ import annotations

import signal
import sys
import time

import torch
from omegaconf import DictConfig
from torchtune import config, training, utils
from tqdm import tqdm

from cruijff.errors import CruijffError
from cruijff.run.records import record_error, record_event
from cruijff.train import resume
from cruijff.train.resume import EXIT_RESUMABLE, Interrupted
from cruijff.train.hooks import CruijffRecipeMixin, RecipeConfigError
from cruijff.train.stock import stock_recipe
from cruijff.train.trainable import (DIVERGED_FIX, TRUNCATION_FIX, TrainingError, check_step,  # noqa: F401
                                     check_trainable, trainable_tokens)

log = utils.get_logger("INFO")

_single = stock_recipe("lora_finetune_single_device")
_distributed = stock_recipe("lora_finetune_distributed")


class LoRAFinetuneRecipeSingleDevice(CruijffRecipeMixin, _single.LoRAFinetuneRecipeSingleDevice):
    def train(self) -> None:
        """torchtune 0.6.1's single-device loop, with cruijff's per-step and per-epoch hooks."""
        if self._compile:
            log.info(
                "NOTE: torch.compile is enabled and model is compiled in first forward. Expect a relatively slow first iteration."
            )
        t0 = time.perf_counter()
        running_loss = 0
        num_tokens = 0
        with self._profiler as prof:
            for curr_epoch in range(self.epochs_run, self.total_epochs):
                self._start_epoch(curr_epoch)
                pbar = tqdm(total=self._steps_per_epoch)
                self._dataloader.sampler.set_epoch(curr_epoch)
                for idx, batch in enumerate(self._dataloader):
                    if self._resume_skip(curr_epoch, idx):
                        continue  # trained before the resumable checkpoint
                    # Start tracking CUDA memory for active steps for just the first epoch
                    if (
                        curr_epoch == 0
                        and self.profiler_profile_memory
                        and idx == self.profiler_wait_steps + self.profiler_warmup_steps
                        and self._device.type == "cuda"
                    ):
                        torch.cuda.memory._record_memory_history()

                    utils.batch_to_device(batch, self._device)
                    current_num_tokens = (batch["labels"] != self._loss_fn.ignore_index).sum()
                    num_tokens += current_num_tokens
                    current_loss = self._loss_step(batch) * current_num_tokens
                    running_loss += current_loss
                    current_loss.backward()

                    if (idx + 1) % self._gradient_accumulation_steps == 0:
                        training.scale_grads(self._model, 1 / num_tokens)
                        if self._clip_grad_norm is not None:
                            grad_norm = torch.nn.utils.clip_grad_norm_(
                                self._model.parameters(), max_norm=float(self._clip_grad_norm))
                        self._optimizer.step()
                        self._optimizer.zero_grad(set_to_none=True)
                        self._lr_scheduler.step()
                        self.global_step += 1

                        loss_to_log = running_loss.item() / num_tokens
                        pbar.update(1)
                        pbar.set_description(f"{curr_epoch + 1}|{self.global_step}|Loss: {loss_to_log}")
                        time_per_step = time.perf_counter() - t0
                        if self.global_step % self._log_every_n_steps == 0:
                            log_dict = {
                                "loss": loss_to_log,
                                "lr": self._optimizer.param_groups[0]["lr"],
                                "tokens_per_second_per_gpu": num_tokens / time_per_step,
                            }
                            if self._device.type != "cpu" and self._log_peak_memory_stats:
                                log_dict.update(training.get_memory_stats(device=self._device))
                            if self._clip_grad_norm is not None:
                                log_dict.update({"grad_norm": grad_norm})
                            self._metric_logger.log_dict(log_dict, step=self.global_step)
                        self._after_step(curr_epoch, float(loss_to_log), int(num_tokens), time_per_step)

                        running_loss = 0
                        num_tokens = 0
                        t0 = time.perf_counter()

                    # Stop tracking CUDA memory now that active steps are complete
                    if (
                        curr_epoch == 0
                        and self.profiler_profile_memory
                        and idx
                        == self.profiler_wait_steps
                        + self.profiler_warmup_steps
                        + self.profiler_active_steps
                        and self._device.type == "cuda"
                    ):
                        torch.cuda.memory._record_memory_history(enabled=None)

                    prof.step()
                    if ((idx + 1) // self._gradient_accumulation_steps) == self.max_steps_per_epoch:
                        break

                pbar.close()
                self.epochs_run += 1
                self._end_epoch(curr_epoch)
                t0 = time.perf_counter()

    def cleanup(self) -> None:
        super().cleanup()
        self._finish()


class LoRAFinetuneRecipeDistributed(CruijffRecipeMixin, _distributed.LoRAFinetuneRecipeDistributed):
    _defer_exports = True

    # ---- resumable checkpoints of sharded (FSDP2) state: gathered to rank 0, loaded on every rank
    def _adapter_state(self) -> dict:
        return training.gather_cpu_state_dict(self._model, self._is_rank_zero, device=self._device,
                                              adapter_weights_only=True)

    def _optimizer_state(self) -> dict:
        return training.get_full_optimizer_state_dict(self._model, self._optimizer, self._is_rank_zero,
                                                      device=self._device)

    def _load_adapter(self, adapter: dict):
        """Into the parameters in place: torchtune's load_from_full_model_state_dict assigns new
        Parameter objects, which the optimizer (made before a resume) would not update."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        params = dict(self._model.named_parameters())
        with torch.no_grad():
            for name in sorted(adapter):  # the same order on every rank: distribute_tensor scatters
                p = params.get(name)
                if p is None:
                    continue
                full = adapter[name].to(device=self._device, dtype=p.dtype)
                p.copy_(distribute_tensor(full, p.device_mesh, p.placements) if isinstance(p, DTensor) else full)
        return [], [k for k in adapter if k not in params]

    def _load_optimizer(self, optimizer: dict) -> None:
        training.load_from_full_optimizer_state_dict(self._model, self._optimizer, optimizer, self._device)

    def _setup_model(self, *args, **kwargs):
        """torchtune's, but on CPU (gloo: the distributed tests) without its CUDA-only memory report.

        Kept as a patch because torchtune 0.6.1 has no public way around it: its `_setup_model`
        ends with `training.get_memory_stats(device)` on rank 0, unconditionally (no config flag:
        `log_peak_memory_stats` gates only the per-step log), and that function raises ValueError
        for a CPU device. The patch is scoped to this call on CPU; on GPUs torchtune's runs as is.
        """
        if self._device.type != "cpu":
            return super()._setup_model(*args, **kwargs)
        saved = training.get_memory_stats, training.log_memory_stats
        training.get_memory_stats, training.log_memory_stats = (lambda device: {}), (lambda stats: None)
        try:
            return super()._setup_model(*args, **kwargs)
        finally:
            training.get_memory_stats, training.log_memory_stats = saved

    def train(self) -> None:
        """torchtune 0.6.1's distributed loop, with cruijff's per-step and per-epoch hooks."""
        if self._device.type != "cpu":  # it empties the device cache; torch.cpu has none
            training.cleanup_before_training()
        self._optimizer.zero_grad()
        t0 = time.perf_counter()
        running_loss = 0
        num_tokens = 0
        self._profiler.start()
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            self._start_epoch(curr_epoch)
            pbar = tqdm(total=self._steps_per_epoch, disable=not self.rank == 0)
            self._dataloader.sampler.set_epoch(curr_epoch)
            for idx, batch in enumerate(self._dataloader):
                if self._resume_skip(curr_epoch, idx):
                    continue  # trained before the resumable checkpoint
                # Start tracking CUDA memory for active steps for just the first epoch
                if (
                    self._is_rank_zero
                    and curr_epoch == 0
                    and self.profiler_profile_memory
                    and idx == self.profiler_wait_steps + self.profiler_warmup_steps
                    and self._device.type == "cuda"
                ):
                    torch.cuda.memory._record_memory_history()

                utils.batch_to_device(batch, self._device)
                current_num_tokens = (batch["labels"] != self._loss_fn.ignore_index).sum()
                num_tokens += current_num_tokens
                labels = batch.pop("labels")
                with self.activations_handling_ctx:
                    logits = self._model(**batch)
                labels = torch.hstack((labels[..., 1:], self.ignore_labels_cache[: labels.shape[0]]))
                if not isinstance(logits, list):
                    labels = labels.reshape(-1)
                    logits = logits.reshape(-1, logits.size(-1))
                current_loss = self._loss_fn(logits, labels) * current_num_tokens
                del logits
                running_loss += current_loss
                current_loss.backward()

                if (idx + 1) % self._gradient_accumulation_steps == 0:
                    torch.distributed.all_reduce(num_tokens)
                    torch.distributed.all_reduce(running_loss)
                    # world_size undoes FSDP2's gradient averaging, as in torchtune
                    training.scale_grads(self._model, self.world_size / num_tokens)
                    if self._clip_grad_norm is not None:
                        grad_norm = torch.nn.utils.clip_grad_norm_(
                            self._model.parameters(), max_norm=float(self._clip_grad_norm)).full_tensor()
                    self._optimizer.step()
                    self._optimizer.zero_grad(set_to_none=True)
                    self._lr_scheduler.step()
                    self.global_step += 1

                    loss_to_log = running_loss.item() / num_tokens
                    pbar.update(1)
                    pbar.set_description(f"{curr_epoch + 1}|{self.global_step}|Loss: {loss_to_log}")
                    time_per_step = time.perf_counter() - t0
                    if self.global_step % self._log_every_n_steps == 0 and self._is_rank_zero:
                        log_dict = {
                            "loss": loss_to_log,
                            "lr": self._optimizer.param_groups[0]["lr"],
                            "tokens_per_second_per_gpu": num_tokens / (time_per_step * self.world_size),
                        }
                        if self._log_peak_memory_stats:
                            log_dict.update(training.get_memory_stats(device=self._device))
                        if self._clip_grad_norm is not None:
                            log_dict.update({"grad_norm": grad_norm})
                        self._metric_logger.log_dict(log_dict, step=self.global_step)
                    self._after_step(curr_epoch, float(loss_to_log), int(num_tokens), time_per_step)

                    running_loss = 0
                    num_tokens = 0
                    t0 = time.perf_counter()

                    # Stop tracking CUDA memory now that active steps are complete
                    if (
                        self._is_rank_zero
                        and curr_epoch == 0
                        and self.profiler_profile_memory
                        and idx
                        == self.profiler_wait_steps
                        + self.profiler_warmup_steps
                        + self.profiler_active_steps
                        and self._device.type == "cuda"
                    ):
                        torch.cuda.memory._record_memory_history(enabled=None)

                    self._profiler.step()

                if ((idx + 1) // self._gradient_accumulation_steps) == self.max_steps_per_epoch:
                    break

            pbar.close()
            self.epochs_run += 1
            self._end_epoch(curr_epoch)
            t0 = time.perf_counter()
        self._profiler.stop()

    def cleanup(self) -> None:
        super().cleanup()  # closes the metric logger and the process group
        self._finish()


def run(main) -> int:
    """Run a recipe entry point; a cruijff error is printed as one message, not a traceback."""
    try:
        return main()
    except Interrupted as e:
        print(f"\ncruijff: {e}; run again to resume", file=sys.stderr)
        record_event("interrupted", signal=signal.Signals(e.signum).name, step=e.step)
        return EXIT_RESUMABLE
    except CruijffError as e:
        print(f"\nerror: {e}", file=sys.stderr)  # on a line of its own, after tqdm's bar
        record_error(f"fine-tune failed: {e}")  # for `cruijff status`
        return int(e.exit_code)


@config.parse
def single_device_main(cfg: DictConfig) -> None:
    """Out of memory (torch's OutOfMemoryError, CUDA or host) is retried in this process at half
    the batch size and double the accumulation, down to batch size 1, from the last resumable
    checkpoint; the choice is kept in <output_dir>/overrides.json for later attempts and written
    to record.jsonl (an `oom_retry` event)."""
    import gc

    resume.apply_overrides(cfg)
    config.log_config(recipe_name="cruijff LoRAFinetuneRecipeSingleDevice", cfg=cfg)
    while True:
        recipe = LoRAFinetuneRecipeSingleDevice(cfg=cfg)
        try:
            recipe.setup(cfg=cfg)
            recipe.train()
        except torch.OutOfMemoryError as e:
            old = (int(cfg.batch_size), int(cfg.gradient_accumulation_steps))
            if not resume.halve_batch(cfg):
                raise TrainingError(f"out of memory at batch_size 1: {str(e).splitlines()[0]}",
                                    hint="use a smaller max_seq_len, a smaller model or more memory") from None
            log.info(f"Out of memory at batch_size {old[0]}: retrying at batch_size {cfg.batch_size}, "
                     f"gradient_accumulation_steps {cfg.gradient_accumulation_steps}")
            record_event("oom_retry", step=recipe.global_step, batch_size=int(cfg.batch_size),
                         gradient_accumulation_steps=int(cfg.gradient_accumulation_steps),
                         previous_batch_size=old[0], message=str(e).splitlines()[0])
            if recipe._metrics is not None:
                recipe._metrics.close()
            del recipe
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        recipe.cleanup()
        return


@config.parse
def distributed_main(cfg: DictConfig) -> None:
    if not training.is_distributed():
        raise RecipeConfigError("the distributed recipe must be started by a distributed launcher",
                                hint="tune run --nproc_per_node N ... (or torchrun)")
    backend = "cuda:nccl,cpu:gloo" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    if cfg.get("fsdp_cpu_offload", False):
        training.set_torch_num_threads()
    config.log_config(recipe_name="cruijff LoRAFinetuneRecipeDistributed", cfg=cfg)
    recipe = LoRAFinetuneRecipeDistributed(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()
