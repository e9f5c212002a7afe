"""cruijff: declarative experiment manifests for LLM fine-tuning and evaluation on SLURM."""

__version__ = "0.1.0"
