"""Evaluations keep their finished samples: a killed or requeued `inspect eval` continues from its log.

An evaluation job that ends before its eval does (a requeue's or preemption's SIGTERM, a time
limit, a node failure) leaves an inspect log with status `started` in the node's logs/ folder:
the samples inspect had flushed are in it, and the ones completed since are in inspect's sample
buffer (inspect recovers them). When the job runs again, `cruijff.results.scores` finds that log
and runs `inspect eval-retry <log>` instead of `inspect eval`: inspect reuses every completed
sample (its output and scores) and generates only the rest, into a new log in the same folder.
A log that ended `cancelled` or `error` is retried the same way (`apply --retry-failed`).

A log is retried only when it belongs to the same evaluation: the first run passes
`--metadata cruijff_resume_key=<key>`, a hash of the command line, the content of every file it
names (model_config.yaml, task_config.yaml, the task file) and the name, size and modification
time of each file of the model directory; eval-retry keeps the metadata, and a log whose key
differs (a re-planned node, a retrained model, an edited task) is never continued.

Standard library only, like cruijff.results.scores (status reads records without inspect).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime
from pathlib import Path

KEY = "cruijff_resume_key"
RESUMABLE_STATUSES = ("started", "cancelled", "error")


def is_inspect_eval(command: list[str]) -> bool:
    return len(command) >= 3 and Path(command[0]).name == "inspect" and command[1] == "eval"


def _option(command: list[str], name: str) -> str | None:
    for i, word in enumerate(command[:-1]):
        if word == name:
            return command[i + 1]
    return None


def _model_dir(command: list[str]) -> Path | None:
    """The model's directory: vllm/<dir>, or model_path in the hf provider's model config."""
    model = _option(command, "--model") or ""
    if model.startswith("vllm/"):
        return Path(model[len("vllm/"):])
    config = _option(command, "--model-config")
    try:
        text = Path(config).read_text() if config else ""
    except OSError:
        return None
    m = re.search(r"^model_path:\s*(.+?)\s*$", text, re.MULTILINE)
    return Path(m.group(1).strip("'\"")) if m else None


def resume_key(command: list[str]) -> str:
    """What makes two runs of an eval node the same evaluation (see the module doc)."""
    h = hashlib.sha256(json.dumps(command).encode())
    for word in command[2:]:
        path = Path(word.partition("@")[0])
        try:
            if path.is_file():
                h.update(word.encode() + b"\0" + path.read_bytes())
        except OSError:
            continue
    model = _model_dir(command)
    if model is not None and model.is_dir():
        for entry in sorted(os.scandir(model), key=lambda e: e.name):
            if entry.is_file():
                st = entry.stat()
                h.update(f"{entry.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def unfinished_log(log_dir: str | Path, key: str) -> Path | None:
    """The newest log of log_dir when it did not succeed and carries this key; else None."""
    from cruijff.results.scores import ScoresError, _eval_header, log_files

    files = log_files(log_dir)
    if not files:
        return None
    newest = files[-1]
    try:
        header = _eval_header(newest) if newest.suffix == ".eval" else json.loads(newest.read_text())
    except (ScoresError, OSError, ValueError):
        return None
    if not isinstance(header, dict) or header.get("status", "started") not in RESUMABLE_STATUSES:
        return None
    metadata = (header.get("eval") or {}).get("metadata") or {}
    return newest if metadata.get(KEY) == key else None


def first_run(command: list[str], key: str) -> list[str]:
    return [*command, "--metadata", f"{KEY}={key}"]


def retry_command(command: list[str], log: Path) -> list[str]:
    """`inspect eval-retry <log>`: task, model, arguments, seed and generate settings come from the
    log; the log folder and display are the original command's."""
    argv = [command[0], "eval-retry", str(log)]
    for name in ("--log-dir", "--display"):
        value = _option(command, name)
        if value is not None:
            argv += [name, value]
    return argv


def reused_samples(log: str | Path, since: float) -> tuple[int, int] | None:
    """(samples completed before `since` (epoch seconds): the ones eval-retry reused, samples in
    the log), from a finished .eval log's summaries; None when it cannot be read."""
    import zipfile

    from cruijff.results.scores import ScoresError, _member

    path = Path(log)
    try:
        with zipfile.ZipFile(path) as zf:
            summaries = json.loads(_member(zf, path, "summaries.json"))
    except (KeyError, zipfile.BadZipFile, OSError, ValueError, ScoresError):
        return None
    reused = 0
    for s in summaries:
        try:
            if datetime.fromisoformat(s["completed_at"]).timestamp() < since:
                reused += 1
        except (KeyError, TypeError, ValueError):
            continue
    return reused, len(summaries)
