"""Executors: the edge where plans meet a scheduler (SLURM) or local subprocesses."""
