"""The resumable-checkpoint half of cruijff's recipe hooks (cruijff.train.resume has the file format).

`ResumableMixin` is mixed into `cruijff.train.hooks.CruijffRecipeMixin`: restoring a checkpoint at
setup, skipping the batches it had trained, deciding at each optimizer step whether to save
(interval or signal, the same decision on every rank) and saving. The single-device recipe saves
its parameters and optimizer as they are; the distributed recipe (FSDP2) overrides the four state
methods to gather its shards to rank 0 (which writes the file) and to load the full state into
every rank's shards. Every rank keeps its own RNG states.
"""

from __future__ import annotations

import signal
import time

import torch
from torchtune import utils

from cruijff.run.records import record_event
from cruijff.train import resume

log = utils.get_logger("INFO")


class ResumableMixin:
    # the model's and optimizer's state as saved and loaded; the distributed recipe gathers its
    # shards to rank 0 and loads the full state into every rank's shards (collectives: every rank)
    def _adapter_state(self) -> dict:
        return {k: v.detach().to("cpu", copy=True) for k, v in self._model.named_parameters() if v.requires_grad}

    def _optimizer_state(self) -> dict:
        return self._optimizer.state_dict()

    def _load_adapter(self, adapter: dict):
        return self._model.load_state_dict(adapter, strict=False)

    def _load_optimizer(self, optimizer: dict) -> None:
        self._optimizer.load_state_dict(optimizer)

    def _agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on any rank is true on all (a signal, a wall-time interval may reach one
        rank first; every rank must save, or stop, at the same step)."""
        if self.world_size == 1:
            return tuple(bool(f) for f in flags)
        t = torch.tensor([int(bool(f)) for f in flags], device=self._device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return tuple(bool(v) for v in t.tolist())

    def _rng_states(self) -> dict:
        """This rank's RNG states; with several ranks, every rank's (rank r resumes with its own)."""
        mine = resume.rng_state()
        if self.world_size == 1:
            return {"rng": mine}
        every = [None] * self.world_size
        torch.distributed.all_gather_object(every, mine)
        return {"rng": every[0], "rng_ranks": every}

    def _restore(self, state: dict) -> None:
        from cruijff.train.hooks import RecipeConfigError  # hooks imports this module

        ranks = state.get("rng_ranks")
        if int(state.get("world_size", 1)) != self.world_size:  # each rank's data position depends on it
            raise RecipeConfigError(f"the resume checkpoint {self._resume.path} was saved by "
                                    f"{state.get('world_size', 1)} processes, this run has {self.world_size}",
                                    hint="delete it to start over")
        missing, unexpected = self._load_adapter(state["adapter"])
        if unexpected or not state["adapter"]:
            raise RecipeConfigError(f"the resume checkpoint {self._resume.path} does not fit this model "
                                    f"(unexpected keys {unexpected[:3]})", hint="delete it to start over")
        self._load_optimizer(state["optimizer"])
        self._lr_scheduler.load_state_dict(state["lr_scheduler"])
        rng = ranks[self.rank] if ranks is not None else state["rng"]
        self.global_step, self.epochs_run = int(state["global_step"]), int(state["epochs_run"])
        self._tokens_total = int(state["tokens_total"])
        self._last_val = tuple(state["last_val"]) if state["last_val"] else None
        if state["epoch_steps"]:
            self._resume_epoch = int(state["epoch"])
            self._skip_batches = int(state["epoch_steps"]) * self._gradient_accumulation_steps
            self._resume_record = state["epoch_record"]
            self._resume_rng = rng
        else:  # an epoch boundary: the loop has not built this epoch's iterator yet
            resume.set_rng_state(rng)
        log.info(f"Resumed from {self._resume.path} at optimizer step {self.global_step} "
                 f"(epoch {state['epoch']}, {state['epoch_steps']} steps into it)")
        record_event("resume", step=self.global_step, epoch=int(state["epoch"]))

    def _resume_skip(self, epoch: int, idx: int) -> bool:
        """True for a batch the checkpoint had trained already (the loop `continue`s past it)."""
        if self._resume_epoch != epoch:
            return False
        if idx < self._skip_batches:
            return True
        resume.set_rng_state(self._resume_rng)  # as it was after the checkpoint's step
        self._resume_epoch = None
        return False

    def _checkpoint_due(self) -> tuple[bool, bool]:
        """(stop, due), the same on every rank."""
        r = self._resume
        due = bool((r.every_seconds and time.monotonic() - self._last_ckpt >= r.every_seconds)
                   or (r.every_steps and self.global_step % r.every_steps == 0))
        return self._agree(bool(self._stop), due)

    def _maybe_checkpoint(self, epoch: int, *, boundary: bool = False) -> None:
        if not self._resumable:
            return
        if not boundary:
            resume.test_oom(self.global_step, self._batch_size_cfg)
            resume.test_signal_after_step(self.global_step)
        stop, due = self._checkpoint_due()
        if not (stop or due or (boundary and self._ckpt_deferred)):
            return
        if not boundary and self._epoch.steps >= self._steps_per_epoch:
            self._ckpt_deferred = True  # the epoch's last step: checkpoint after its end instead
            return
        if boundary and self.epochs_run >= self.total_epochs:
            return  # training is over; nothing left to resume
        self._save_resumable(epoch, boundary=boundary)
        if stop:  # a rank the signal did not reach (yet) stops with the others
            raise resume.Interrupted(self._stop.signum or signal.SIGTERM, self.global_step)

    def _save_resumable(self, epoch: int, *, boundary: bool) -> None:
        from dataclasses import asdict

        rec = None
        if not boundary:
            rec = asdict(self._epoch)
            rec["elapsed"] = time.perf_counter() - self._epoch_start
        state = {
            "fingerprint": self._fingerprint,
            "global_step": self.global_step,
            "epochs_run": self.epochs_run,
            "epoch": epoch,
            "epoch_steps": 0 if boundary else self._epoch.steps,
            "world_size": self.world_size,
            "adapter": self._adapter_state(),
            "optimizer": self._optimizer_state(),
            "lr_scheduler": self._lr_scheduler.state_dict(),
            **self._rng_states(),
            "metrics_offset": self._metrics.position() if self._metrics else 0,
            "tokens_total": self._tokens_total,
            "last_val": list(self._last_val) if self._last_val else None,
            "epoch_record": rec,
        }
        seconds = resume.save_atomic(state, self._resume.path) if self._is_rank_zero else 0.0
        if self.world_size > 1:
            torch.distributed.barrier()  # rank 0's file is complete before any rank goes on (or exits)
        self._last_ckpt = time.monotonic()
        self._ckpt_deferred = False
        log.info(f"Resumable checkpoint at step {self.global_step} saved in {seconds:.2f} s")
        record_event("checkpoint", step=self.global_step, epoch=epoch, seconds=round(seconds, 3))

