"""Evaluations continue a killed attempt's log (cruijff.results.eval_resume, run by cruijff.results.scores).

The choice of log, the key and the command are checked here, the wiring with a stand-in `inspect`
that records how it was called; real `inspect eval` killed and continued:
tests/integration/test_eval_resume.py.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

from cruijff.results import eval_resume, scores
from cruijff.run.records import attempt_note, read_attempts


def write_log(path: Path, status: str, key: str | None, summaries: list[dict] | None = None) -> Path:
    spec = {"task": "t", "model": "hf/local", "metadata": {eval_resume.KEY: key} if key else {}}
    with zipfile.ZipFile(path, "w") as zf:
        if status == "started":
            zf.writestr("_journal/start.json", json.dumps({"version": 2, "eval": spec, "plan": {}}))
        else:
            zf.writestr("header.json", json.dumps({"version": 2, "status": status, "eval": spec, "plan": {}}))
        if summaries is not None:
            zf.writestr("summaries.json", json.dumps(summaries))
    return path


def node(tmp_path: Path) -> tuple[Path, list[str]]:
    """An eval node folder with its two config files and a model directory; the rendered command."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    n = tmp_path / "node"
    (n / "logs").mkdir(parents=True)
    (n / "model_config.yaml").write_text(f"model_path: {model}\ndevice: cpu\n")
    (n / "task_config.yaml").write_text("data: /d.json\n")
    (tmp_path / "task.py").write_text("# task\n")
    command = ["inspect", "eval", f"{tmp_path / 'task.py'}@t", "--model", "hf/local",
               "--model-config", str(n / "model_config.yaml"), "--task-config", str(n / "task_config.yaml"),
               "--log-dir", "logs", "--seed", "1", "--display", "log", "--log-format", "eval"]
    return n, command


def test_the_key_changes_with_the_command_its_files_and_the_model(tmp_path):
    n, command = node(tmp_path)
    key = eval_resume.resume_key(command)
    assert eval_resume.resume_key(list(command)) == key
    assert eval_resume.resume_key([*command[:-4], "--seed", "2", *command[-2:]]) != key
    (n / "task_config.yaml").write_text("data: /other.json\n")
    assert eval_resume.resume_key(command) != key
    (n / "task_config.yaml").write_text("data: /d.json\n")
    assert eval_resume.resume_key(command) == key
    (tmp_path / "task.py").write_text("# an edited scorer\n")
    assert eval_resume.resume_key(command) != key
    (tmp_path / "task.py").write_text("# task\n")
    weights = tmp_path / "model" / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # retrained
    assert eval_resume.resume_key(command) != key


def test_only_the_newest_unfinished_log_of_the_same_evaluation_is_continued(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    assert eval_resume.unfinished_log(logs, "k") is None
    write_log(logs / "2026-01-01T00-00-00_t_a.eval", "success", "k")
    assert eval_resume.unfinished_log(logs, "k") is None  # finished: nothing to continue
    for status in ("started", "cancelled", "error"):
        path = write_log(logs / "2026-01-02T00-00-00_t_b.eval", status, "k")
        assert eval_resume.unfinished_log(logs, "k") == path
        assert eval_resume.unfinished_log(logs, "other") is None  # a re-planned node: start over
    write_log(logs / "2026-01-02T00-00-00_t_b.eval", "started", None)  # made before keys: start over
    assert eval_resume.unfinished_log(logs, "k") is None
    write_log(logs / "2026-01-03T00-00-00_t_c.eval", "success", "k")
    assert eval_resume.unfinished_log(logs, "k") is None  # an older unfinished log was continued already


def test_the_retry_command_keeps_the_log_folder_and_display():
    command = ["/venv/bin/inspect", "eval", "t.py@t", "--model", "hf/local", "--log-dir", "logs",
               "--seed", "1", "--display", "log", "--log-format", "eval"]
    assert eval_resume.retry_command(command, Path("logs/x.eval")) == \
        ["/venv/bin/inspect", "eval-retry", "logs/x.eval", "--log-dir", "logs", "--display", "log"]
    assert eval_resume.first_run(command, "k")[-2:] == ["--metadata", f"{eval_resume.KEY}=k"]
    assert eval_resume.is_inspect_eval(command) and not eval_resume.is_inspect_eval(["python", "x.py", "eval"])


def test_reused_samples_are_those_completed_before_the_retry_started(tmp_path):
    done = [{"id": i, "completed_at": f"2026-01-01T00:00:0{i}+00:00"} for i in range(4)]
    log = write_log(tmp_path / "x.eval", "success", "k", summaries=done)
    from datetime import datetime

    since = datetime.fromisoformat("2026-01-01T00:00:02.5+00:00").timestamp()
    assert eval_resume.reused_samples(log, since) == (3, 4)
    assert eval_resume.reused_samples(tmp_path / "missing.eval", since) is None


STAND_IN = """#!{python}
# `inspect`: records its argv; `eval` leaves an unfinished log (a killed run), `eval-retry` a finished one
import json, sys, zipfile, pathlib
argv = sys.argv[1:]
with open({calls!r}, "a") as f:
    f.write(json.dumps(argv) + "\\n")
logs = pathlib.Path(argv[argv.index("--log-dir") + 1])
if argv[0] == "eval":
    key = argv[argv.index("--metadata") + 1].partition("=")[2]
    with zipfile.ZipFile(logs / "2026-01-01T00-00-00_t_a.eval", "w") as z:
        z.writestr("_journal/start.json", json.dumps({{"eval": {{"task": "t", "metadata": {{"cruijff_resume_key": key}}}}}}))
    sys.exit(143)
eval_ = {{"task": "t", "model": "hf/local", "metadata": json.loads(zipfile.ZipFile(argv[1]).read("_journal/start.json"))["eval"]["metadata"]}}
with zipfile.ZipFile(logs / "2026-01-01T00-00-09_t_a.eval", "w") as z:
    z.writestr("header.json", json.dumps({{"status": "success", "eval": eval_, "results": {{"scores": []}}}}))
    z.writestr("summaries.json", json.dumps([{{"id": 1, "completed_at": "2000-01-01T00:00:00+00:00"}},
                                            {{"id": 2, "completed_at": "2100-01-01T00:00:00+00:00"}}]))
"""


def test_a_killed_evaluation_is_continued_by_the_next_run_and_recorded(tmp_path, monkeypatch, capfd):
    n, command = node(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "inspect"
    calls = tmp_path / "calls.jsonl"
    fake.write_text(STAND_IN.format(python=sys.executable, calls=str(calls)))
    fake.chmod(0o755)
    command[0] = str(fake)
    monkeypatch.chdir(n)
    monkeypatch.setenv("CRUIJFF_NODE_DIR", str(n))
    monkeypatch.delenv("RANK", raising=False)
    (n / "record.jsonl").write_text('{"event": "start", "time": 1, "job_id": "7"}\n')
    assert scores.main(["logs", "--", *command]) == 1  # the killed first attempt
    (n / "record.jsonl").write_text(
        (n / "record.jsonl").read_text() + '{"event": "end", "time": 2, "job_id": "7", "exit_code": 143, '
        '"signal": "TERM"}\n{"event": "start", "time": 3, "job_id": "7"}\n')
    assert scores.main(["logs", "--", *command]) == 0
    first, second = [json.loads(line) for line in calls.read_text().splitlines()]
    assert first[0] == "eval" and first[-2] == "--metadata"
    assert second == ["eval-retry", "logs/2026-01-01T00-00-00_t_a.eval", "--log-dir", "logs", "--display", "log"]
    resume = [json.loads(line) for line in (n / "record.jsonl").read_text().splitlines()][-1]
    assert (resume["event"], resume["reused_samples"], resume["samples"]) == ("resume", 1, 2)
    assert attempt_note(read_attempts(n / "record.jsonl"), "7") == \
        (2, "attempt 2, continued its log, 1 of 2 samples kept after SIGTERM (requeue or preemption)")
