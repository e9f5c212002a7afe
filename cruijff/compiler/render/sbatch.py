"""Job scripts: #SBATCH headers from resources and cluster, environment activation, commands.

Every manifest value that reaches the script is either checked to be a plain word (#SBATCH lines,
which bash sees as comments) or passed through shlex.quote, so it can never run as code. The
script records its own start, end and exit code in record.jsonl (status without sacct), and runs
unchanged under `bash` for the local executor.
"""

from __future__ import annotations

import re
import shlex
from functools import lru_cache
from typing import Any, Sequence

from cruijff.plan import Resources

_DIRECTIVE_VALUE = re.compile(r"^[A-Za-z0-9_.,:+@=&|!\[\]()*/%-]+$")


class UnsafeValue(ValueError):
    """A value that cannot go into a job script; `where` is its manifest path, for file:line:col."""

    def __init__(self, message: str, where: tuple[Any, ...] = ("cluster",)):
        super().__init__(message)
        self.where = where


def directive(flag: str, value: Any, where: tuple[Any, ...] = ("cluster",)) -> str:
    text = str(value)
    if not _DIRECTIVE_VALUE.match(text):
        raise UnsafeValue(f"{flag} value {text!r} contains characters not allowed in an #SBATCH line", where)
    return f"#SBATCH {flag}={text}"


_SBATCH_SPECIAL = re.compile(r"""[\s"'#\\]""")


def sbatch_path(path: str) -> str:
    """A path as sbatch must read it from an #SBATCH line (bash sees only a comment).

    sbatch splits the line at white space, strips double quotes, drops a backslash before any
    character and ends the value at an unescaped '#'; it also expands %-patterns in file names.
    """
    if "\n" in path or "\r" in path:
        raise UnsafeValue(f"path {path!r} contains a line break", ("output_dir",))
    text = path.replace("%", "%%")
    if _SBATCH_SPECIAL.search(text):
        text = '"' + re.sub(r"""(["'#\\])""", r"\\\1", text) + '"'
    return text


def sbatch_directives(*, job_name: str, node_dir: str, resources: Resources, cluster: dict[str, Any]) -> list[str]:
    # requeueable (a preempted or failed node's job runs again under its id, so dependents stay
    # valid); its log is appended to, not truncated, by the next attempt
    lines = [directive("--job-name", job_name, ("experiment",)),
             f"#SBATCH --output={sbatch_path(node_dir + '/')}slurm-%j.out",
             "#SBATCH --open-mode=append", "#SBATCH --requeue",
             directive("--nodes", 1), directive("--ntasks", 1),
             directive("--cpus-per-task", resources.cpus)]
    if resources.mem:
        lines.append(directive("--mem", resources.mem))
    if resources.time:
        lines.append(directive("--time", resources.time))
    if resources.gpus:
        lines.append(directive("--gres", f"gpu:{resources.gpus}"))
    for key in ("account", "partition", "constraint", "qos"):
        if cluster.get(key):
            lines.append(directive(f"--{key}", cluster[key]))
    if cluster.get("mail"):
        lines.append(directive("--mail-user", cluster["mail"]))
        lines.append(directive("--mail-type", cluster.get("mail_type", "END,FAIL")))
    return lines


def environment_lines(env: dict[str, Any], variables: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for module in env.get("modules", []):
        lines.append(f"module load {shlex.quote(module)}")
    if env.get("conda"):
        lines.append('source "$(conda info --base)/etc/profile.d/conda.sh"')
        lines.append(f"conda activate {shlex.quote(env['conda'])}")
    if env.get("venv"):
        lines.append(f"source {shlex.quote(env['venv'] + '/bin/activate')}")
    for name, value in {**env.get("variables", {}), **variables}.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise UnsafeValue(f"environment variable name {name!r} is not valid", ("cluster", "env", "variables"))
        text = str(value).lower() if isinstance(value, bool) else str(value)
        lines.append(f"export {name}={shlex.quote(text)}")
    # Verbatim by design: the manifest's one place for shell code (documented in docs/manifest.md).
    lines.extend(env.get("setup", []))
    return lines


RECORD_PRELUDE = r"""set -eo pipefail
_cruijff_signal=""
# the time of an event, in $_cruijff_t; null when `date` is killed (a requeue signals every process
# of the job), so the line stays JSON (the fallback is taken here, outside the killed subshell)
_cruijff_stamp() { _cruijff_t=$(date +%s.%N 2>/dev/null) || true; _cruijff_t=${_cruijff_t:-null}; }
cd "$CRUIJFF_NODE_DIR"
_cruijff_job="${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"
_cruijff_job="${_cruijff_job:-${SLURM_JOB_ID:-${CRUIJFF_JOB_ID:-manual}}}"
_cruijff_stamp
printf '{"event": "start", "time": %s, "job_id": "%s", "host": "%s"}\n' \
  "$_cruijff_t" "$_cruijff_job" "$(hostname)" >> "$CRUIJFF_NODE_DIR/record.jsonl"
_cruijff_end() {
  local rc=$?
  if declare -F _cruijff_gpu_stop >/dev/null; then _cruijff_gpu_stop; fi
  _cruijff_stamp
  printf '{"event": "end", "time": %s, "job_id": "%s", "exit_code": %d, "signal": "%s"}\n' \
    "$_cruijff_t" "$_cruijff_job" "$rc" "$_cruijff_signal" >> "$CRUIJFF_NODE_DIR/record.jsonl"
}
trap _cruijff_end EXIT
trap '_cruijff_signal=TERM; exit 143' TERM"""

EXIT_RESUMABLE = 85  # cruijff.train.resume.EXIT_RESUMABLE: stopped after a resumable checkpoint
DEFAULT_GRACE_SECONDS = 120


def time_limit_seconds(text: str | None) -> int | None:
    """SLURM's --time (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in seconds; None: no limit or unreadable."""
    if not text:
        return None
    days, _, rest = str(text).rpartition("-")
    try:
        parts = [int(p) for p in rest.split(":")]
        d = int(days) if days else 0
    except ValueError:
        return None
    if days:
        parts += [0] * (3 - len(parts))
        h, m, sec = parts
    elif len(parts) == 1:
        h, m, sec = 0, parts[0], 0
    elif len(parts) == 2:
        h, (m, sec) = 0, parts
    else:
        h, m, sec = parts[:3]
    return ((d * 24 + h) * 60 + m) * 60 + sec


def grace_seconds(resume: dict[str, Any], time: str | None) -> int:
    """When SLURM warns a fine-tune before its time limit: the manifest's, else 120 s, at most a
    quarter of the limit (a one-minute limit is warned 15 s before; SLURM may send it up to 60 s
    early). Saving takes well under a second for a LoRA adapter (bench/checkpoint.py); the rest of
    the grace is the wait for the current step to end."""
    if resume.get("grace_seconds"):
        return int(resume["grace_seconds"])
    limit = time_limit_seconds(time)
    return max(5, min(DEFAULT_GRACE_SECONDS, limit // 4)) if limit else DEFAULT_GRACE_SECONDS


def resumable_lines(max_attempts: int, grace: int) -> list[str]:
    """Run a fine-tune so that it can save and continue (cruijff.train.resume, docs/running.md).

    SLURM sends the time-limit warning (--signal=B:USR1) to this shell only, and bash runs a trap
    only between commands: the recipe runs in the background, the shell waits for it and forwards
    USR1 (held until grace seconds before the job's end time) and TERM. The recipe saves at its
    next step and exits EXIT_RESUMABLE; after the warning the
    job requeues itself (same job id, so afterok/aftercorr dependents stay valid) while it has
    attempts left. A requeue or preemption by the scheduler sends TERM to every process: the
    recipe saves the same way and the scheduler runs the job again, which resumes.
    The bound counts attempts in a row that saved no new checkpoint (cruijff.run.records.
    stalled_attempts), not restarts: a job that progresses in every attempt is never stopped.
    """
    n = int(max_attempts)
    return [
        f"_cruijff_max_attempts={n}  # finetune.resume.max_attempts: attempts in a row without a new checkpoint",
        f"_cruijff_grace={int(grace)}  # seconds before the time limit: the --signal line's",
        '_cruijff_stalled() { python -m cruijff.run.records stalled "$CRUIJFF_NODE_DIR/record.jsonl" '
        '"$_cruijff_job" "$@" 2>/dev/null || echo 0; }',
        '_cruijff_child=""',
        '_cruijff_forward() { _cruijff_signal="${_cruijff_signal:-$1}"; if [ -n "$_cruijff_child" ] && [ "$1" = TERM ]; then '
        'kill -s TERM "$_cruijff_child" 2>/dev/null || true; fi; }',
        "trap '_cruijff_forward USR1' USR1",
        "trap '_cruijff_forward TERM' TERM",
        "_cruijff_resumable() {",
    '  local stalled; stalled=$(_cruijff_stalled)',
    '  if [ "$stalled" -ge "$_cruijff_max_attempts" ]; then',
    '    _cruijff_msg="$stalled attempts in a row saved no new checkpoint (finetune.resume.max_attempts '
    '$_cruijff_max_attempts): it is not making progress"',
    '    echo "error: $_cruijff_msg" >&2',
    "    _cruijff_stamp; printf '{\"event\": \"error\", \"time\": %s, \"message\": \"%s\"}\\n' "
    '"$_cruijff_t" "$_cruijff_msg" >> "$CRUIJFF_NODE_DIR/record.jsonl"',
    "    return 3",
    "  fi",
        "  # USR1 starts ignored in the recipe until it installs its handler. The warning goes to the",
        "  # recipe from a helper: it waits until grace seconds before the job's end (SLURM may warn up",
        "  # to a minute early), then sends it every 2 s until the recipe has exited, so one sent",
        "  # during the recipe's start is not lost",
        "  ( trap '' USR1; exec \"$@\" ) &",
        "  _cruijff_child=$!",
        '  local resender=""',
        '  while kill -0 "$_cruijff_child" 2>/dev/null; do',
        '    if [ "$_cruijff_signal" = USR1 ] && [ -z "$resender" ]; then',
        '      ( wait_s=0; end=$(squeue -h -j "$_cruijff_job" -o %e 2>/dev/null || true)',
        '        if [ -n "$end" ] && end=$(date -d "$end" +%s 2>/dev/null); then '
        'wait_s=$(( end - $(date +%s) - _cruijff_grace )); fi',
        '        if [ "$wait_s" -gt 0 ]; then sleep "$wait_s"; fi',
        '        while kill -0 "$_cruijff_child" 2>/dev/null; do kill -s USR1 "$_cruijff_child" 2>/dev/null || true; sleep 2; done ) &',
        "      resender=$!",
        "    fi",
        '    wait "$_cruijff_child" || true',
        "  done",
        '  if [ -n "$resender" ]; then kill "$resender" 2>/dev/null || true; fi',
        '  local rc=0',
        '  wait "$_cruijff_child" || rc=$?',
        '  _cruijff_child=""',
        f'  if [ "$rc" -eq {EXIT_RESUMABLE} ] && [ "$_cruijff_signal" = USR1 ] && [ -n "${{SLURM_JOB_ID:-}}" ] \\',
        '     && [ "$(_cruijff_stalled --current)" -lt "$_cruijff_max_attempts" ]; then',
        "    _cruijff_stamp; printf '{\"event\": \"requeue\", \"time\": %s, \"job_id\": \"%s\", \"reason\": \"time limit\"}\\n' "
        '"$_cruijff_t" "$_cruijff_job" >> "$CRUIJFF_NODE_DIR/record.jsonl"',
        '    scontrol requeue "$_cruijff_job" || echo "cruijff: scontrol requeue $_cruijff_job failed" >&2',
        "  fi",
        '  return "$rc"',
        "}",
    ]


GPU_USAGE_FILE = "gpu_usage.csv"
GPU_USAGE_COLUMNS = ("timestamp", "index", "utilization_gpu_pct", "memory_used_mib", "memory_total_mib")
GPU_SAMPLE_SECONDS = 10


def gpu_sampling_lines(seconds: int = GPU_SAMPLE_SECONDS) -> list[str]:
    """Sample the job's GPUs with nvidia-smi in the background into <node dir>/gpu_usage.csv.

    Skipped quietly where nvidia-smi is absent; limited to CUDA_VISIBLE_DEVICES when SLURM sets
    it; the sampler is stopped by the EXIT trap before the end event is recorded.
    """
    query = "timestamp,index,utilization.gpu,memory.used,memory.total"
    return [
        "# GPU use while the job runs (cruijff report sums it up); skipped without nvidia-smi",
        "if command -v nvidia-smi >/dev/null 2>&1; then",
        f"  [ -s \"$CRUIJFF_NODE_DIR/{GPU_USAGE_FILE}\" ] || echo {','.join(GPU_USAGE_COLUMNS)} "
        f"> \"$CRUIJFF_NODE_DIR/{GPU_USAGE_FILE}\"",
        f"  nvidia-smi --query-gpu={query} --format=csv,noheader,nounits -l {int(seconds)} "
        '${CUDA_VISIBLE_DEVICES:+--id=$CUDA_VISIBLE_DEVICES} '
        f">> \"$CRUIJFF_NODE_DIR/{GPU_USAGE_FILE}\" 2>/dev/null &",
        "  _cruijff_gpu_pid=$!",
        '  _cruijff_gpu_stop() { kill "$_cruijff_gpu_pid" 2>/dev/null || true; wait "$_cruijff_gpu_pid" 2>/dev/null || true; }',
        "fi",
    ]


def job_script(*, title: str, job_name: str, node_dir: str, resources: Resources, cluster: dict[str, Any],
               commands: Sequence[Sequence[str]], variables: dict[str, Any] | None = None,
               resume: dict[str, Any] | None = None) -> str:
    """The whole script. commands are argv lists, each joined with shlex (never pasted).

    With `resume` (a fine-tune's finetune.resume), the last command runs resumably (resumable_lines)."""
    env = cluster.get("env", {})
    lines = ["#!/bin/bash", f"# {_one_line(title)}", "# Generated by `cruijff plan`; edit the manifest, not this file."]
    lines += sbatch_directives(job_name=job_name, node_dir=node_dir, resources=resources, cluster=cluster)
    grace = grace_seconds(resume, resources.time) if resume is not None else None
    if resume is not None:
        lines.append(directive("--signal", f"B:USR1@{grace}", ("finetune", "resume", "grace_seconds")))
    lines += ["", f"export CRUIJFF_NODE_DIR={shlex.quote(node_dir)}", RECORD_PRELUDE, ""]
    if resume is not None:
        lines += resumable_lines(resume.get("max_attempts", 5), grace) + [""]
    if resources.gpus:
        lines += gpu_sampling_lines() + [""]
    lines += environment_lines(env, variables or {})
    lines += [""] + [_join(argv) for argv in commands[:-1]]
    if commands:
        last = _join(commands[-1])
        lines.append(f"_cruijff_resumable {last}" if resume is not None else last)
    return "\n".join(lines) + "\n"


# shlex.join, with each word quoted once per process: a grid's scripts repeat the same words thousands of times.
_quote = lru_cache(maxsize=1 << 16)(shlex.quote)


def _join(argv: Sequence[Any]) -> str:
    return " ".join(_quote(str(a)) for a in argv)


def _one_line(text: str) -> str:
    return " ".join(text.split())
