"""cruijff's single-device LoRA recipe for torchtune 0.6.1.

torchtune's own recipe plus validation loss, selective adapter-only saves, a clean merged HF
export per saved epoch and run records; see cruijff/train/recipes.py. Run:
    tune run lora_finetune_single_device.py --config finetune.yaml   (from this folder), or
    python /abs/path/recipes/lora_finetune_single_device.py --config finetune.yaml
"""

import sys

from cruijff.train.recipes import single_device_main, run

if __name__ == "__main__":
    sys.exit(run(single_device_main))
