"""The SLURM executor: drives sbatch, squeue, sacct and scancel (pyslurm does not build for 22.05).

Every call goes through one injectable runner, so unit tests replay recorded cluster output.
Shapes of the JSON and text this package parses are written down in docs/dev/slurm.md.

cli (process calls, journal, retries) → parse (pure parsers) → limits (what the cluster allows)
→ executor (SlurmExecutor). Everything is re-exported here, so `cruijff.run.executors.slurm.X` works.
"""

import os  # noqa: F401  (tests patch os.getuid through this module)

from cruijff.run.executors.slurm.cli import (  # noqa: F401
    Runner,
    COMMAND_TIMEOUT_S,
    JOURNAL_DIR,
    TRANSIENT_MARKERS,
    UNKNOWN_OUTCOME_MARKERS,
    default_runner,
    slurm_available,
    journal_path,
    journal_runner,
    _journal_locked,
    outcome_unknown,
    _run,
    is_transient,
    _clean_stderr,
    _sbatch_hint,
)
from cruijff.run.executors.slurm.parse import (  # noqa: F401
    STATE_MAP,
    FINISHED,
    SACCT_STATES,
    SACCT_FIELDS,
    SACCT_DELIMITER,
    SACCT_WINDOW_DAYS,
    ACCOUNTING_DISABLED,
    parse_sbatch_output,
    _number,
    _state_name,
    normalise_state,
    decode_wait_status,
    _squeue_exit_code,
    _reason,
    _times,
    _squeue_job_key,
    squeue_errors,
    _load_squeue,
    _task_count,
    queue_counts,
    compact_job_ids,
    parse_squeue_json,
    _expand_array_key,
    _sacct_exit_code,
    _sacct_time,
    parse_sacct_text,
)
from cruijff.run.executors.slurm.limits import (  # noqa: F401
    DEFAULT_MAX_ARRAY_SIZE,
    DEFAULT_MESSAGE_TIMEOUT_S,
    _seconds,
    cluster_limits,
    sinfo_nodes,
    submit_limit,
    parse_scontrol_config,
)
from cruijff.run.executors.slurm.executor import (  # noqa: F401
    DEFAULT_SUBMIT_RATE,
    SETTLE_FACTOR,
    SETTLE_POLL_S,
    SlurmExecutor,
)

