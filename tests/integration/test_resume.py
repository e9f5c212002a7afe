"""Resumable fine-tunes through real `tune run` of the single-device recipe on the tiny Llama (CPU).

A run stopped by a real signal (sent to itself by a test hook at an exact step, so the test is
deterministic) saves a checkpoint and exits EXIT_RESUMABLE; the same command run again resumes
from it. Compared with one uninterrupted run of the same config (fixed seed, CPU): every step is
in metrics.jsonl exactly once, with the same train and validation losses, the epoch records agree
and the saved adapter is the same tensor for tensor. A SIGKILL in the middle of a save resumes
from the checkpoint before it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from cruijff.train.resume import EXIT_RESUMABLE, FILE_NAME
from tests.integration.test_train import RECIPES, render_config, tune_bin, write_dataset

pytestmark = pytest.mark.train


def tune(config: Path, nproc: int = 1, **env) -> subprocess.CompletedProcess:
    argv = [tune_bin(), "run", *(["--nproc_per_node", str(nproc), "lora_finetune_distributed.py"] if nproc > 1
                                 else ["lora_finetune_single_device.py"]), "--config", str(config)]
    full = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(RECIPES.parent),
                CRUIJFF_NODE_DIR=str(config.parent), **env)
    return subprocess.run(argv, cwd=RECIPES, env=full, capture_output=True, text=True, timeout=300)


def ok(proc: subprocess.CompletedProcess, code: int = 0) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]


def record(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "record.jsonl").read_text().splitlines()]


def adapter(run: Path) -> dict:
    import torch

    return torch.load(run / "checkpoints" / "epoch_1" / "adapter_model.pt", weights_only=True)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "capitalize.json")


@pytest.fixture(scope="module")
def reference(tiny_model_dir, data_file, tmp_path_factory) -> Path:
    """The uninterrupted run (no export: the comparison is of the training itself)."""
    config = render_config(tmp_path_factory.mktemp("reference"), tiny_model_dir, data_file, export=None)
    ok(tune(config))
    return config.parent


def assert_same_training(run: Path, reference: Path, steps: int = 24) -> None:
    import torch

    got, want = metrics(run), metrics(reference)
    train = [e for e in got if e["type"] == "train"]
    assert [e["step"] for e in train] == list(range(1, steps + 1)), "a step is missing or trained twice"
    for kind, key in (("train", "train_loss"), ("val", "val_loss")):
        a = [(e["step"], e[key]) for e in got if e["type"] == kind]
        b = [(e["step"], e[key]) for e in want if e["type"] == kind]
        assert [s for s, _ in a] == [s for s, _ in b]
        assert [v for _, v in a] == pytest.approx([v for _, v in b], rel=1e-5, abs=1e-6)
    assert [e["lr"] for e in train] == pytest.approx([e["lr"] for e in want if e["type"] == "train"])
    assert train[-1]["tokens_total"] == [e for e in want if e["type"] == "train"][-1]["tokens_total"]
    for epoch in (0, 1):
        r = json.loads((run / f"epoch_{epoch}" / "record.json").read_text())
        w = json.loads((reference / f"epoch_{epoch}" / "record.json").read_text())
        assert (r["steps"], r["global_step"], r["tokens"]) == (w["steps"], w["global_step"], w["tokens"])
        assert r["train_loss"] == pytest.approx(w["train_loss"], rel=1e-5)
        assert r["val_loss"] == pytest.approx(w["val_loss"], rel=1e-5)
    a, b = adapter(run), adapter(reference)
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    assert not (run / "checkpoints" / FILE_NAME).exists(), "a finished run keeps no resume checkpoint"


@pytest.mark.parametrize("stop", ["5:TERM", pytest.param("12:USR1", marks=pytest.mark.slow),
                                  pytest.param("17:TERM", marks=pytest.mark.slow)],
                         ids=["mid-epoch-0", "epoch-0-last-step", "mid-epoch-1"])
def test_a_signalled_run_resumes_where_it_stopped(stop, reference, tiny_model_dir, data_file, tmp_path):
    """Stopped by SIGTERM/SIGUSR1 after step k, the next run trains k+1.. only and ends the same."""
    config = render_config(tmp_path, tiny_model_dir, data_file, export=None)
    run = config.parent
    step = int(stop.split(":")[0])
    ok(tune(config, CRUIJFF_TEST_SIGNAL_AT_STEP=stop), EXIT_RESUMABLE)
    assert (run / "checkpoints" / FILE_NAME).is_file()
    first = [e["step"] for e in metrics(run) if e["type"] == "train"]
    assert first[-1] == step  # stopped at the next step boundary after the signal

    ok(tune(config))
    events = record(run)
    kinds = [e["event"] for e in events]
    assert "interrupted" in kinds and events[kinds.index("interrupted")]["step"] == step
    assert [e["step"] for e in events if e["event"] == "resume"] == [step]
    assert_same_training(run, reference)


@pytest.mark.slow
def test_a_kill_during_a_save_resumes_from_the_previous_checkpoint(reference, tiny_model_dir, data_file,
                                                                 tmp_path):
    """Checkpoints every 4 steps; SIGKILL while the second (step 8) is half written: the torn file
    is never taken, the run resumes at step 4 and still ends as the uninterrupted one."""
    config = render_config(tmp_path, tiny_model_dir, data_file, export=None, resume={"every_steps": 4})
    run = config.parent
    proc = tune(config, CRUIJFF_TEST_KILL_DURING_SAVE="2")
    assert proc.returncode in (-9, 137), proc.stderr[-2000:]
    assert list((run / "checkpoints").glob(FILE_NAME + ".tmp-*")), "the torn save should be on disk"
    ok(tune(config))
    assert [e["step"] for e in record(run) if e["event"] == "resume"] == [4]
    assert not list((run / "checkpoints").glob(FILE_NAME + ".tmp-*"))
    assert_same_training(run, reference)


@pytest.mark.slow
def test_a_checkpoint_of_another_config_is_not_resumed(reference, tiny_model_dir, data_file, tmp_path):
    """A re-planned run (another learning rate) starts from the beginning, not from a stale file."""
    config = render_config(tmp_path, tiny_model_dir, data_file, export=None)
    run = config.parent
    ok(tune(config, CRUIJFF_TEST_SIGNAL_AT_STEP="5:TERM"), EXIT_RESUMABLE)
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config)
    cfg.optimizer.lr = 1.0e-3
    OmegaConf.save(cfg, config)
    ok(tune(config))
    assert not [e for e in record(run) if e["event"] == "resume"]
    assert [e["step"] for e in metrics(run) if e["type"] == "train"] == list(range(1, 25))



@pytest.mark.slow
def test_out_of_memory_is_retried_at_half_batch_size_from_the_last_checkpoint(reference, tiny_model_dir,
                                                                            data_file, tmp_path):
    """torch's OutOfMemoryError after step 6 (injected while batch_size > 2): the same process
    retries at batch_size 2 with gradient_accumulation_steps 2 (the same effective batch) from the
    step-4 checkpoint, keeps the choice in overrides.json, says so in record.jsonl, and ends as
    the uninterrupted run (to float tolerance: the sums are accumulated in another order)."""
    from cruijff.run.records import attempt_note, read_attempts

    config = render_config(tmp_path, tiny_model_dir, data_file, export=None, resume={"every_steps": 4})
    run = config.parent
    (run / "record.jsonl").write_text(json.dumps({"event": "start", "time": 0, "job_id": "1"}) + "\n")
    ok(tune(config, CRUIJFF_TEST_OOM_AT_STEP="6:2"))
    [retry] = [e for e in record(run) if e["event"] == "oom_retry"]
    assert (retry["previous_batch_size"], retry["batch_size"], retry["gradient_accumulation_steps"]) == (4, 2, 2)
    assert [e["step"] for e in record(run) if e["event"] == "resume"] == [4]
    assert json.loads((run / "overrides.json").read_text())["batch_size"] == 2
    got = [e for e in metrics(run) if e["type"] == "train"]
    want = [e for e in metrics(reference) if e["type"] == "train"]
    assert [e["step"] for e in got] == list(range(1, 25))
    assert [e["train_loss"] for e in got] == pytest.approx([e["train_loss"] for e in want], rel=1e-4)
    assert attempt_note(read_attempts(run / "record.jsonl"), "1")[1] == \
        "attempt 1, retried with batch_size 2 after out-of-memory, resumed at step 4"


@pytest.mark.slow  # four starts of two torchtune processes
def test_the_distributed_recipe_resumes_where_a_sigterm_stopped_it(tiny_model_dir, data_file, tmp_path):
    """FSDP2 over gloo, 2 ranks on CPU: SIGTERM after step 3 (every rank: a requeue signals the
    whole job); the ranks agree to stop, rank 0 writes the gathered adapter and optimizer state and
    every rank's RNG; the next run loads it into every rank's shards, trains steps 4.. only and ends
    as an uninterrupted 2-rank run: same losses, records and adapter."""
    reference = render_config(tmp_path / "reference", tiny_model_dir, data_file, export=None).parent
    ok(tune(reference / "finetune.yaml", nproc=2))
    config = render_config(tmp_path / "run", tiny_model_dir, data_file, export=None)
    run = config.parent
    stopped = tune(config, nproc=2, CRUIJFF_TEST_SIGNAL_AT_STEP="3:TERM")
    # each rank exits EXIT_RESUMABLE; torchrun reports a failed worker with its own exit code
    assert stopped.returncode != 0 and (run / "checkpoints" / FILE_NAME).is_file(), stopped.stderr[-3000:]
    assert [e["step"] for e in metrics(run) if e["type"] == "train"] == [1, 2, 3]
    ok(tune(config, nproc=2))
    events = record(run)
    assert [e["step"] for e in events if e["event"] == "interrupted"] == [3]
    assert [e["step"] for e in events if e["event"] == "resume"] == [3]
    assert_same_training(run, reference, steps=12)


# ---- through the real local SLURM ---------------------------------------------------------------
def slurm_plan(tmp_path: Path, model_dir: Path, data: Path, experiment: str, *, step_seconds: float,
               time_limit: str = "00:15:00", resume: dict | None = None) -> Path:
    """The tiny manifest (the reference's training config) on the SLURM executor; its manifest path."""
    from cruijff.compiler.render.yaml import dump_yaml
    from tests.helpers_finetune import tiny_manifest

    m = tiny_manifest(model_dir, data)
    m.update(experiment=experiment, output_dir=str(tmp_path / "plan"), executor={"kind": "slurm"},
             cluster={"env": {"variables": {"CRUIJFF_TEST_STEP_SECONDS": str(step_seconds),
                                            "OMP_NUM_THREADS": "1"}}})
    m["finetune"]["resources"]["time"] = time_limit
    if resume:
        m["finetune"]["resume"] = resume
    path = tmp_path / "manifest.yaml"
    path.write_text(dump_yaml(m))
    return path


def squeue_state(job_id: str) -> str | None:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip() or None


@pytest.fixture
def experiment(slurm_cluster):
    import uuid

    from tests.helpers_faults import cancel_experiment

    name = f"resume{uuid.uuid4().hex[:8]}"
    yield name
    cancel_experiment(name)


@pytest.mark.slurm
@pytest.mark.slow  # two starts of `tune run` under SLURM (~90 s)
def test_scontrol_requeue_mid_run_resumes_from_the_checkpoint_saved_on_sigterm(
        experiment, reference, tiny_model_dir, data_file, tmp_path):
    """`scontrol requeue` (what a preempting partition does): SIGTERM, SIGKILL 5 s later. The
    recipe saves on the TERM, the job keeps its id, the next attempt resumes at that step, trains
    no earlier step again and ends with the reference's losses and adapter; the killed attempt is
    recorded with its signal and exit code 85, not 0."""
    import sys

    from tests.helpers_faults import cruijff, env_with, eventually

    manifest = slurm_plan(tmp_path, tiny_model_dir, data_file, experiment, step_seconds=0.4)
    # jobs find tune on PATH and this checkout on PYTHONPATH (sbatch exports the environment)
    env = env_with(None, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    out = cruijff("apply", str(manifest), "--json", env=env)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "plan" / "finetune" / "tiny_words"
    [job] = [s["job_id"] for s in json.loads(out.stdout)["submitted"]]

    def trained(n: int) -> bool:
        path = run / "logs" / "metrics.jsonl"
        return path.is_file() and sum(1 for line in path.read_text().splitlines() if '"train"' in line) >= n

    eventually(lambda: trained(4), timeout=180, every=0.2)
    assert subprocess.run(["scontrol", "requeue", job]).returncode == 0
    eventually(lambda: any(e["event"] == "interrupted" for e in record(run)), timeout=30)
    eventually(lambda: squeue_state(job) == "PENDING", timeout=60)
    time.sleep(5)  # not at once: a start while slurmd still revokes the old credential fails the job
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
    eventually(lambda: squeue_state(job) is None, timeout=300, every=0.5)

    events = record(run)
    stopped = next(e for e in events if e["event"] == "interrupted")
    assert stopped["signal"] == "SIGTERM" and 4 <= stopped["step"] < 24
    ends = [e for e in events if e["event"] == "end"]
    assert len(ends) == 2 and {e["job_id"] for e in ends} == {job}
    assert ends[0]["exit_code"] == EXIT_RESUMABLE and ends[0]["signal"] == "TERM"
    assert ends[1]["exit_code"] == 0
    assert [e["step"] for e in events if e["event"] == "resume"] == [stopped["step"]]
    assert_same_training(run, reference)
    assert (run / "epoch_1" / "model" / "model.safetensors").is_file()  # the export came out too


@pytest.mark.slurm
@pytest.mark.slow  # several one-minute attempts
def test_three_times_the_time_limit_of_work_finishes_by_requeues_and_its_evaluation_runs(
        experiment, tiny_model_dir, data_file, tmp_path):
    """`time: 00:01:00` and ~3 minutes of work (24 slowed steps plus each attempt's start): each
    attempt is warned (USR1) before its limit, saves, requeues itself under the same job id; the
    last one finishes, the evaluation waiting on it (afterok) runs, and status shows the attempts.
    The test's only help: it skips SLURM's ~2-minute BeginTime wait of a requeued job."""
    import sys

    from tests.helpers_faults import cruijff, env_with

    manifest = slurm_plan(tmp_path, tiny_model_dir, data_file, experiment, step_seconds=4.0,
                          time_limit="00:01:00", resume={"max_attempts": 12})
    from ruamel.yaml import YAML

    yaml = YAML()
    m = yaml.load(manifest.read_text())
    m["eval"] = {"tasks": [{"name": "capitalization", "task": "capitalization",
                            "file": str(RECIPES.parent / "experiments" / "tasks" / "capitalization.py")}],
                 "epochs": "last", "base_models": False, "limit": 4,
                 "resources": {"gpus": 0, "cpus": 1, "mem": "4G", "time": "00:10:00"}}
    with manifest.open("w") as f:
        yaml.dump(m, f)
    env = env_with(None, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    out = cruijff("apply", str(manifest), "--json", env=env)
    assert out.returncode == 0, out.stderr
    jobs = {s["node"]: s["job_id"] for s in json.loads(out.stdout)["submitted"]}
    ft = jobs["finetune/tiny_words"]
    plan = tmp_path / "plan"
    deadline = time.monotonic() + 900
    pending_since: dict[str, float] = {}
    while True:
        assert time.monotonic() < deadline, record(plan / "finetune" / "tiny_words")
        q = subprocess.run(["squeue", "-h", "-o", "%i|%T|%r|%j"], capture_output=True, text=True).stdout
        mine = [line.split("|") for line in q.splitlines() if line.split("|")[-1].startswith(f"{experiment}:")]
        if not mine:
            break
        for job_id, state, reason, _ in mine:
            if state == "PENDING" and reason == "BeginTime":
                # not at once: slurmd revokes the old attempt's credential, and a start within
                # that moment fails the job ("Job credential revoked"); SLURM itself waits ~2 min
                since = pending_since.setdefault(job_id, time.monotonic())
                if time.monotonic() - since > 5:
                    subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], capture_output=True)
            else:
                pending_since.pop(job_id, None)
        time.sleep(1)
    run = plan / "finetune" / "tiny_words"
    events = record(run)
    requeues = [e for e in events if e["event"] == "requeue"]
    assert len(requeues) >= 2 and {e["job_id"] for e in requeues} == {ft}
    assert [e["event"] for e in events if e["event"] == "end"] and events[-1]["exit_code"] == 0
    assert all(e["exit_code"] == EXIT_RESUMABLE for e in events if e["event"] == "end" and e is not events[-1])
    train = [e["step"] for e in metrics(run) if e["type"] == "train"]
    assert train == list(range(1, 25)), "a step trained twice or missing"
    status = json.loads(cruijff("status", str(plan), "--json", env=env).stdout)
    nodes = {n["id"]: n for n in status["nodes"]}
    assert {n["state"] for n in nodes.values()} == {"done"}, status["counts"]
    ftn = nodes["finetune/tiny_words"]
    assert ftn["attempts"] == len(requeues) + 1 and "after the time limit" in ftn["note"]


@pytest.mark.slurm
def test_rendered_job_scripts_pass_sbatch_test_only(slurm_cluster):
    """Every job script of the golden plans (the renderer's current output, pinned by
    tests/unit/test_compile_golden.py): sbatch accepts its #SBATCH lines, --requeue and
    --signal=B:USR1@grace included, without submitting anything."""
    import shutil

    golden = RECIPES.parent / "tests" / "golden"
    scripts = sorted(golden.rglob("job.sbatch"))
    finetunes = [s for s in scripts if "/finetune/" in str(s)]
    assert finetunes and shutil.which("sbatch")
    for script in scripts:
        text = script.read_text()
        # the cluster's own accounts and partitions do not exist here: keep the lines this test is about
        lines = [line for line in text.splitlines()
                 if not line.startswith(("#SBATCH --account", "#SBATCH --partition", "#SBATCH --qos",
                                         "#SBATCH --constraint", "#SBATCH --gres", "#SBATCH --mem",
                                         "#SBATCH --output"))]
        proc = subprocess.run(["sbatch", "--test-only"], input="\n".join(lines) + "\n", capture_output=True,
                              text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
    assert all("#SBATCH --signal=B:USR1@" in s.read_text() and "#SBATCH --requeue" in s.read_text()
               for s in finetunes)
