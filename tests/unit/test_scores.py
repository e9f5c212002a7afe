"""cruijff.results.scores reads inspect logs with the standard library (real .eval logs: integration test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from cruijff.results import scores


def header(status="success", acc=0.5, *, headline=None, task="capitalization"):
    results = {
        "total_samples": 4,
        "completed_samples": 4,
        "scores": [
            {"name": "exact_match", "scorer": "exact_match",
             "metrics": {"accuracy": {"name": "accuracy", "value": acc},
                         "stderr": {"name": "stderr", "value": 0.1}}},
            {"name": "label_probability", "scorer": "label_probability",
             "metrics": {"brier": {"name": "cruijff/brier", "value": 0.2},
                         "auc": {"name": "cruijff/auc", "value": float("nan")}}},
        ],
    }
    if headline:
        results["headline"] = headline
    log = {
        "version": 2, "status": status,
        "eval": {"task": task, "model": "hf/local", "created": "2026-01-01T00:00:00+00:00",
                 "dataset": {"samples": 4}, "task_args": {"data": "/d.json"}},
        "plan": {}, "stats": {"started_at": "2026-01-01T00:00:01+00:00", "completed_at": "2026-01-01T00:01:00+00:00"},
    }
    if status == "success":
        log["results"] = results
    if status == "error":
        log["error"] = {"message": "ValueError('boom')", "traceback": "..."}
    return log


def write_eval(path: Path, members: dict[str, dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, json.dumps(data))
    return path


def test_eval_zip_header(tmp_path):
    write_eval(tmp_path / "2026-01-01T00-00-00_cap_x.eval", {"header.json": header(acc=0.75)})
    [s] = scores.read_scores(tmp_path)
    assert s.status == "success" and s.task == "capitalization" and s.model == "hf/local"
    assert s.metrics["exact_match/accuracy"] == 0.75
    assert s.metrics["label_probability/brier"] == 0.2
    assert s.samples == 4 and s.total_samples == 4
    assert s.started == "2026-01-01T00:00:01+00:00" and s.completed == "2026-01-01T00:01:00+00:00"
    assert s.headline == ("exact_match/accuracy", 0.75)  # no results.headline: first metric of first score
    assert scores.headline(tmp_path) == ("exact_match/accuracy", 0.75)


def test_inspect_resolved_headline_wins(tmp_path):
    h = header(headline={"scorer": "label_probability", "score": "label_probability", "metric": "brier"})
    write_eval(tmp_path / "a.eval", {"header.json": h})
    assert scores.headline(tmp_path) == ("label_probability/brier", 0.2)


def test_running_eval_is_started(tmp_path):
    start = {"version": 2, "eval": {"task": "zygosity", "model": "hf/local", "created": "2026-01-02T00:00:00+00:00"},
             "plan": {}}
    write_eval(tmp_path / "a.eval", {"_journal/start.json": start})
    [s] = scores.read_scores(tmp_path)
    assert s.status == "started" and s.task == "zygosity" and s.metrics == {}
    assert s.started == "2026-01-02T00:00:00+00:00"
    assert scores.headline(tmp_path) is None


def test_error_log_and_latest_successful_headline(tmp_path):
    write_eval(tmp_path / "2026-01-01T00-00-00_a.eval", {"header.json": header(acc=0.25)})
    write_eval(tmp_path / "2026-01-02T00-00-00_b.eval", {"header.json": header(status="error")})
    first, second = scores.read_scores(tmp_path)
    assert second.status == "error" and second.error == "ValueError('boom')"
    assert scores.latest(tmp_path).status == "error"
    assert scores.headline(tmp_path) == ("exact_match/accuracy", 0.25)


def test_json_log_format(tmp_path):
    log = header(acc=1.0) | {"samples": [{"id": 0}]}
    (tmp_path / "2026-01-01T00-00-00_a.json").write_text(json.dumps(log))
    (tmp_path / "logs.json").write_text("{}")  # inspect's listing file: not a log
    [s] = scores.read_scores(tmp_path)
    assert s.metrics["exact_match/accuracy"] == 1.0 and s.status == "success"


def test_nan_metric_values_survive(tmp_path):
    write_eval(tmp_path / "a.eval", {"header.json": header()})
    [s] = scores.read_scores(tmp_path)
    assert s.metrics["label_probability/auc"] != s.metrics["label_probability/auc"]  # NaN


def test_unreadable_and_missing(tmp_path):
    (tmp_path / "bad.eval").write_bytes(b"not a zip")
    [s] = scores.read_scores(tmp_path)
    assert s.status == "unreadable" and "bad.eval" in s.error
    assert scores.read_scores(tmp_path / "nope") == []
    assert scores.headline(tmp_path / "nope") is None
    assert scores.latest(tmp_path / "nope") is None


def test_check_command_exit_codes(tmp_path):
    ok, bad = tmp_path / "ok", tmp_path / "bad"
    write_eval(ok / "a.eval", {"header.json": header()})
    write_eval(bad / "a.eval", {"header.json": header(status="error")})
    assert scores.main([str(ok)]) == 0
    assert scores.main([str(bad)]) == 1
    assert scores.main([str(tmp_path / "empty")]) == 1


def test_does_not_import_heavy_libraries(tmp_path):
    write_eval(tmp_path / "a.eval", {"header.json": header()})
    code = (
        "import sys; from cruijff import scores; scores.read_scores(sys.argv[1]); "
        "bad = [m for m in ('inspect_ai', 'torch', 'transformers', 'numpy', 'pandas') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _fake_inspect(tmp_path, body: str) -> list[str]:
    """A stand-in for `inspect eval`: a Python script; real inspect runs in the integration tests."""
    script = tmp_path / "fake_inspect.py"
    script.write_text("import sys, json, zipfile, pathlib\n" + body)
    return [sys.executable, str(script)]


def test_run_passes_output_through_and_says_why_inspect_could_not_start(tmp_path, monkeypatch, capfd):
    """inspect's reason (here the last line of its output) becomes the job's error and its record."""
    from cruijff.run.records import read_attempts

    node = tmp_path / "node"
    (node / "logs").mkdir(parents=True)
    (node / "record.jsonl").write_text('{"event": "start", "time": 1, "job_id": "7"}\n')
    monkeypatch.setenv("CRUIJFF_NODE_DIR", str(node))
    monkeypatch.delenv("RANK", raising=False)
    # an old successful log must not pass for this run's result
    write_eval(node / "logs" / "old.eval", {"header.json": header()})
    os.utime(node / "logs" / "old.eval", (1, 1))
    cmd = _fake_inspect(tmp_path, "print('Loading 50%\\rLoading 100%'); print(); "
                                  "print(\"Task named 'stanse' not found.\"); print(); sys.exit(1)")
    assert scores.main([str(node / "logs"), "--", *cmd]) == 1
    out, err = capfd.readouterr()
    assert "Loading 50%\rLoading 100%" in out  # passed through byte for byte
    assert "error: evaluation failed: Task named 'stanse' not found. (inspect exit 1, no log written)" in err
    [attempt] = read_attempts(node / "record.jsonl")
    assert attempt.reason == "evaluation failed: Task named 'stanse' not found. (inspect exit 1, no log written)"


def test_run_reads_the_reason_from_a_fresh_errored_log(tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("CRUIJFF_NODE_DIR", raising=False)
    logs = tmp_path / "logs"
    body = (f"logs = pathlib.Path({str(logs)!r}); logs.mkdir(exist_ok=True)\n"
            "h = {'status': 'error', 'eval': {'task': 't', 'model': 'hf/local'}, "
            "'error': {'message': \"RuntimeError('solver exploded')\"}}\n"
            "with zipfile.ZipFile(logs / 'x.eval', 'w') as z: z.writestr('header.json', json.dumps(h))\n")
    assert scores.main([str(logs), "--", *_fake_inspect(tmp_path, body)]) == 1  # inspect exits 0 here
    assert "error: evaluation failed: eval status error: RuntimeError('solver exploded')" in capfd.readouterr().err
    (tmp_path / "good.json").write_text(json.dumps(header()))
    ok = _fake_inspect(tmp_path, f"pathlib.Path({str(logs / 'x.eval')!r}).unlink()\n"
                                 f"with zipfile.ZipFile({str(logs / 'y.eval')!r}, 'w') as z: "
                                 f"z.writestr('header.json', open({str(tmp_path / 'good.json')!r}).read())\n")
    assert scores.main([str(logs), "--", *ok]) == 0
    assert json.loads(capfd.readouterr().out)["status"] == "success"
    assert scores.main([str(logs), "--"]) == 2
