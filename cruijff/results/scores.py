"""Read inspect-ai eval logs' scores with the standard library alone.

`cruijff status` and `cruijff report` show scores without importing inspect_ai, so this module
parses the log files directly:

- `.eval` (inspect's default): a zip whose `header.json` holds {status, eval, plan, results, stats,
  error} once the eval ends; while it runs only `_journal/start.json` exists. Members are
  zstd-compressed (compression method 93), which Python < 3.14's zipfile cannot read, so they are
  decompressed here with the `zstandard` package (a dependency of inspect-ai).
- `.json` (`--log-format json`): the same header fields (plus samples) in one JSON object.

Metric names are "<score name>/<metric name>", e.g. "exact_match/accuracy", "label_probability/brier".
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cruijff.errors import CruijffError

ZIP_ZSTD = 93
STATUSES = ("started", "success", "cancelled", "error", "unreadable")


class ScoresError(CruijffError):
    """An eval log cannot be read."""


@dataclass(frozen=True)
class EvalScore:
    """The summary of one inspect eval log."""

    path: str
    status: str  # started | success | cancelled | error | unreadable
    task: str | None = None
    model: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # "scorer/metric" -> value
    headline: tuple[str, float] | None = None
    samples: int | None = None  # samples completed (total when the eval did not say)
    total_samples: int | None = None
    started: str | None = None  # ISO 8601, as inspect writes it
    completed: str | None = None
    error: str | None = None
    task_args: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["headline"] = list(self.headline) if self.headline else None
        return out


def log_files(log_dir: str | Path) -> list[Path]:
    """inspect log files in a directory (not recursive), oldest first by name (names start with a timestamp)."""
    d = Path(log_dir)
    if not d.is_dir():
        return []
    files = [p for p in d.iterdir() if p.is_file() and p.suffix in (".eval", ".json") and p.name != "logs.json"]
    return sorted(files, key=lambda p: (p.name, p.stat().st_mtime))


def read_scores(log_dir: str | Path) -> list[EvalScore]:
    """One EvalScore per log file in log_dir, oldest first; an unreadable file is status 'unreadable'."""
    out = []
    for path in log_files(log_dir):
        try:
            out.append(read_log(path))
        except ScoresError as e:
            out.append(EvalScore(path=str(path), status="unreadable", error=str(e)))
    return out


def latest(log_dir: str | Path) -> EvalScore | None:
    """The most recent log's summary (a retried eval leaves several logs; the last one counts)."""
    scores = read_scores(log_dir)
    return scores[-1] if scores else None


def headline(log_dir: str | Path) -> tuple[str, float] | None:
    """(metric name, value) of the latest successful log's headline metric, or None."""
    for score in reversed(read_scores(log_dir)):
        if score.status == "success" and score.headline is not None:
            return score.headline
    return None


def read_log(path: str | Path) -> EvalScore:
    path = Path(path)
    if path.suffix == ".eval":
        header = _eval_header(path)
    else:
        try:
            header = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ScoresError(f"{path}: not a readable inspect JSON log ({e})") from None
        if not isinstance(header, dict) or "eval" not in header:
            raise ScoresError(f"{path}: not an inspect log (no 'eval' field)")
    return _summarise(path, header)


def _eval_header(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "header.json" in names:
                return json.loads(_member(zf, path, "header.json"))
            if "_journal/start.json" in names:
                start = json.loads(_member(zf, path, "_journal/start.json"))
                return {"status": "started", **start}
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScoresError(f"{path}: not a readable .eval log ({e})") from None
    raise ScoresError(f"{path}: .eval log has neither header.json nor _journal/start.json")


def _member(zf: zipfile.ZipFile, path: Path, name: str) -> bytes:
    info = zf.getinfo(name)
    if info.compress_type != ZIP_ZSTD:
        return zf.read(name)
    try:
        import zstandard
    except ImportError:
        raise ScoresError(f"{path}: zstd-compressed .eval log needs the 'zstandard' package",
                          hint="pip install zstandard (it comes with inspect-ai)") from None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ScoresError(f"{path}: corrupt zip member {name}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        raw = f.read(info.compress_size)
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True)
    return reader.read()


def _summarise(path: Path, log: dict[str, Any]) -> EvalScore:
    spec = log.get("eval") or {}
    results = log.get("results") or {}
    stats = log.get("stats") or {}
    metrics: dict[str, float] = {}
    for score in results.get("scores") or []:
        for key, m in (score.get("metrics") or {}).items():
            value = m.get("value") if isinstance(m, dict) else m
            if isinstance(value, (int, float)):
                metrics[f"{score.get('name')}/{key}"] = float(value)
    error = log.get("error")
    return EvalScore(
        path=str(path),
        status=str(log.get("status") or "started"),
        task=spec.get("task"),
        model=spec.get("model"),
        metrics=metrics,
        headline=_headline(results, metrics),
        samples=results.get("completed_samples", results.get("total_samples")),
        total_samples=results.get("total_samples", (spec.get("dataset") or {}).get("samples")),
        started=stats.get("started_at") or spec.get("created"),
        completed=stats.get("completed_at") or None,
        error=error.get("message") if isinstance(error, dict) else (str(error) if error else None),
        task_args=spec.get("task_args") or {},
    )


def _headline(results: dict[str, Any], metrics: dict[str, float]) -> tuple[str, float] | None:
    """inspect's resolved headline (results.headline) else the first metric of the first score."""
    h = results.get("headline")
    if isinstance(h, dict):
        name = f"{h.get('score')}/{h.get('metric')}"
        if name in metrics:
            return name, metrics[name]
    if metrics:
        name = next(iter(metrics))
        return name, metrics[name]
    return None


TAIL_BYTES = 64 * 1024  # what a failed command leaves for its reason: the end of its output


def run_and_check(log_dir: str, command: list[str]) -> int:
    """Run `inspect eval` with its output passed through unchanged, then check its log.

    A command that fails before writing a log (a task name that does not exist, a task file that
    raises) says why only in its own output; its last line is that reason (inspect prints the
    message of a PrerequisiteError, Python a traceback's last line), unless the log says better.
    """
    import signal
    import subprocess
    import time

    from cruijff.results import eval_resume

    started = time.time()
    retried = None
    if eval_resume.is_inspect_eval(command):  # a killed attempt's log continues (cruijff.results.eval_resume)
        key = eval_resume.resume_key(command)
        retried = eval_resume.unfinished_log(log_dir, key)
        if retried is not None:
            print(f"cruijff: continuing the unfinished evaluation {retried} (inspect eval-retry)", flush=True)
            command = eval_resume.retry_command(command, retried)
        else:
            command = eval_resume.first_run(command, key)
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        return _failed(f"cannot run {command[0]}: {e.strerror}")
    stopped: list[int] = []

    def forward(signum, frame):  # a requeue's or preemption's TERM: inspect stops, its log stays unfinished
        stopped.append(signum)
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    tail = bytearray()
    out = sys.stdout.buffer
    try:
        while chunk := proc.stdout.read1(8192):  # bytes as they come: progress bars keep their \r
            out.write(chunk)
            out.flush()
            tail = (tail + chunk)[-TAIL_BYTES:]
        rc = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stopped:
        print("cruijff: evaluation stopped by SIGTERM; the next run continues its log", file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM
    score = latest(log_dir)
    fresh = score is not None and _mtime(score.path) >= started - 1
    if retried is not None and fresh:
        _record_resume(retried, score, started)
    if rc == 0 and fresh:
        return _report(score)
    if fresh and score.status != "success" and score.error:
        return _failed(f"{score.error} (inspect exit {rc}; log {score.path})")
    last = last_line(tail.decode("utf-8", errors="replace"))
    return _failed(f"{last or 'no output'} (inspect exit {rc}" + (", no log written)" if not fresh else ")"))


def _record_resume(retried: Path, score: EvalScore, started: float) -> None:
    """A `resume` event in the job's record.jsonl: which log was continued, how many samples it kept."""
    from cruijff.results.eval_resume import reused_samples
    from cruijff.run.records import record_event

    counts = reused_samples(score.path, started)
    record_event("resume", log=Path(retried).name, new_log=Path(score.path).name,
                 reused_samples=counts[0] if counts else None, samples=counts[1] if counts else None)


def last_line(text: str) -> str | None:
    """The last line with text in a command's output (progress bars split at \r)."""
    for line in reversed(text.replace("\r", "\n").splitlines()):
        if line.strip():
            return line.strip()
    return None


def _mtime(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


def _report(score: EvalScore) -> int:
    print(json.dumps(score.as_dict(), indent=2), flush=True)
    if score.status != "success":
        return _failed(f"eval status {score.status}" + (f": {score.error}" if score.error else "")
                       + f" (log {score.path})")
    return 0


def _failed(reason: str) -> int:
    """Say why on stderr, and in the job's record.jsonl, where `cruijff status` reads it."""
    from cruijff.run.records import record_error

    print(f"error: evaluation failed: {reason}", file=sys.stderr, flush=True)
    record_error(f"evaluation failed: {reason}")
    return 1


def main(argv: list[str] | None = None) -> int:
    """`python -m cruijff.scores LOG_DIR [-- COMMAND...]`: check the latest log; exit 1 unless it succeeded.

    With a command (the job's `inspect eval ...`), run it first: inspect exits 0 even when the
    eval itself errored, and non-zero with its reason only in its output when it could not start.
    """
    args = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if "--" in args:
        i = args.index("--")
        args, command = args[:i], args[i + 1:]
    if len(args) != 1 or ("--" in (sys.argv[1:] if argv is None else argv) and not command):
        print("usage: python -m cruijff.scores LOG_DIR [-- COMMAND...]", file=sys.stderr)
        return 2
    if command:
        return run_and_check(args[0], command)
    score = latest(args[0])
    if score is None:
        return _failed(f"{args[0]}: no inspect log found")
    return _report(score)


if __name__ == "__main__":
    sys.exit(main())
