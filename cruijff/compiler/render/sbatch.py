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
    lines = [directive("--job-name", job_name, ("experiment",)),
             f"#SBATCH --output={sbatch_path(node_dir + '/')}slurm-%j.out",
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
cd "$CRUIJFF_NODE_DIR"
_cruijff_job="${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"
_cruijff_job="${_cruijff_job:-${SLURM_JOB_ID:-${CRUIJFF_JOB_ID:-manual}}}"
printf '{"event": "start", "time": %s, "job_id": "%s", "host": "%s"}\n' \
  "$(date +%s.%N)" "$_cruijff_job" "$(hostname)" >> "$CRUIJFF_NODE_DIR/record.jsonl"
_cruijff_end() {
  local rc=$?
  if declare -F _cruijff_gpu_stop >/dev/null; then _cruijff_gpu_stop; fi
  printf '{"event": "end", "time": %s, "job_id": "%s", "exit_code": %d}\n' \
    "$(date +%s.%N)" "$_cruijff_job" "$rc" >> "$CRUIJFF_NODE_DIR/record.jsonl"
}
trap _cruijff_end EXIT"""


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
               commands: Sequence[Sequence[str]], variables: dict[str, Any] | None = None) -> str:
    """The whole script. commands are argv lists, each joined with shlex (never pasted)."""
    env = cluster.get("env", {})
    lines = ["#!/bin/bash", f"# {_one_line(title)}", "# Generated by `cruijff plan`; edit the manifest, not this file."]
    lines += sbatch_directives(job_name=job_name, node_dir=node_dir, resources=resources, cluster=cluster)
    lines += ["", f"export CRUIJFF_NODE_DIR={shlex.quote(node_dir)}", RECORD_PRELUDE, ""]
    if resources.gpus:
        lines += gpu_sampling_lines() + [""]
    lines += environment_lines(env, variables or {})
    lines += [""] + [" ".join(_quote(str(a)) for a in argv) for argv in commands]
    return "\n".join(lines) + "\n"


# shlex.join, with each word quoted once per process: a grid's scripts repeat the same words thousands of times.
_quote = lru_cache(maxsize=1 << 16)(shlex.quote)


def _one_line(text: str) -> str:
    return " ".join(text.split())
