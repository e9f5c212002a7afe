"""cruijff's multi-GPU (FSDP2) LoRA recipe for torchtune 0.6.1.

torchtune's own recipe plus validation loss (all-reduced), selective adapter-only saves, a clean
merged HF export per saved epoch (after training, on rank 0) and run records; see
cruijff/train/recipes.py. Run:
    tune run --nproc_per_node N lora_finetune_distributed.py --config finetune.yaml   (from this folder), or
    torchrun --standalone --nproc_per_node N /abs/path/recipes/lora_finetune_distributed.py --config finetune.yaml
"""

import sys

from cruijff.train.recipes import distributed_main, run

if __name__ == "__main__":
    sys.exit(run(distributed_main))
