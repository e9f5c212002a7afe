"""Job scripts sample GPU use with nvidia-smi while they run: a stand-in nvidia-smi on PATH proves
the samples land in gpu_usage.csv, the sampler stops with the job, and without nvidia-smi nothing
is written and the job still succeeds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from cruijff.plan import Resources
from cruijff.compiler.render.sbatch import GPU_USAGE_COLUMNS, GPU_USAGE_FILE, job_script
from cruijff.results.report_cost import gpu_usage

STAND_IN = """#!/bin/bash
# stand-in nvidia-smi: remembers its pid and arguments, prints a sample every 0.1 s until killed
echo $$ > "{pidfile}"
echo "$@" > "{argsfile}"
while true; do echo "2026/11/30 10:00:00.000, 0, 57, 1024, 81920"; sleep 0.1; done
"""


def _tools(tmp_path: Path, with_smi: bool) -> str:
    """A PATH holding only what the job script needs (and the stand-in, when asked)."""
    bin_dir = tmp_path / ("bin_smi" if with_smi else "bin")
    bin_dir.mkdir()
    for tool in ("bash", "date", "hostname", "sleep", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    if with_smi:
        smi = bin_dir / "nvidia-smi"
        smi.write_text(STAND_IN.format(pidfile=tmp_path / "smi.pid", argsfile=tmp_path / "smi.args"))
        smi.chmod(0o755)
    return str(bin_dir)


def _run(tmp_path: Path, path: str, command: list[str], gpus: int = 1, env_extra: dict | None = None):
    node = tmp_path / "node"
    node.mkdir(exist_ok=True)
    script = tmp_path / "job.sbatch"
    script.write_text(job_script(title="t", job_name="j", node_dir=str(node), resources=Resources(gpus=gpus),
                                 cluster={}, commands=[command]))
    env = {"PATH": path, "HOME": str(tmp_path), **(env_extra or {})}
    proc = subprocess.run([shutil.which("bash"), str(script)], env=env, capture_output=True, text=True, timeout=60)
    return proc, node


def test_samples_land_beside_the_job_and_the_sampler_stops(tmp_path):
    proc, node = _run(tmp_path, _tools(tmp_path, True), ["sleep", "0.6"], env_extra={"CUDA_VISIBLE_DEVICES": "2,3"})
    assert proc.returncode == 0, proc.stderr
    lines = (node / GPU_USAGE_FILE).read_text().splitlines()
    assert lines[0] == ",".join(GPU_USAGE_COLUMNS)
    assert len(lines) >= 3 and lines[1] == "2026/11/30 10:00:00.000, 0, 57, 1024, 81920"
    usage = gpu_usage(node / GPU_USAGE_FILE)
    assert usage["mean_gpu_util_pct"] == 57.0 and usage["max_gpu_memory_mib"] == 1024.0
    args = (tmp_path / "smi.args").read_text()
    assert "--query-gpu=timestamp,index,utilization.gpu,memory.used,memory.total" in args
    assert "--id=2,3" in args  # only the job's own GPUs
    pid = int((tmp_path / "smi.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists()  # stopped by the EXIT trap
    events = [json.loads(x) for x in (node / "record.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "end"] and events[1]["exit_code"] == 0


def test_a_failing_job_keeps_its_exit_code_and_stops_the_sampler(tmp_path):
    proc, node = _run(tmp_path, _tools(tmp_path, True), ["bash", "-c", "sleep 0.3; exit 3"])
    assert proc.returncode == 3
    events = [json.loads(x) for x in (node / "record.jsonl").read_text().splitlines()]
    assert events[-1]["exit_code"] == 3
    time.sleep(0.2)
    assert not Path(f"/proc/{int((tmp_path / 'smi.pid').read_text())}").exists()


def test_without_nvidia_smi_nothing_is_sampled(tmp_path):
    proc, node = _run(tmp_path, _tools(tmp_path, False), ["sleep", "0.1"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert not (node / GPU_USAGE_FILE).exists()


def test_cpu_jobs_do_not_sample():
    text = job_script(title="t", job_name="j", node_dir="/o", resources=Resources(gpus=0), cluster={},
                      commands=[["true"]])
    assert "nvidia-smi" not in text
