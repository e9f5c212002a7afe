"""Running a plan: apply, cancel, observe, records, state (SQLite), status, selectors, reconcile,
array scripts and the executors (local, SLURM). Reads the plan (cruijff.plan); may use the compiler.
"""
