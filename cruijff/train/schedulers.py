"""Learning-rate schedules torchtune 0.6.1 lacks (it ships only cosine), with its call signature."""

from __future__ import annotations


def get_linear_schedule_with_warmup(optimizer, num_warmup_steps: int, num_training_steps: int,
                                    last_epoch: int = -1):
    from torch.optim.lr_scheduler import LambdaLR

    def factor(step: int) -> float:
        if step < num_warmup_steps:
            return step / max(1, num_warmup_steps)
        remaining = num_training_steps - step
        return max(0.0, remaining / max(1, num_training_steps - num_warmup_steps))

    return LambdaLR(optimizer, factor, last_epoch)


def get_constant_schedule_with_warmup(optimizer, num_warmup_steps: int, num_training_steps: int = 0,
                                      last_epoch: int = -1):
    from torch.optim.lr_scheduler import LambdaLR

    def factor(step: int) -> float:
        return min(1.0, step / max(1, num_warmup_steps)) if num_warmup_steps else 1.0

    return LambdaLR(optimizer, factor, last_epoch)
