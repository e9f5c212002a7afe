"""Real `inspect eval` runs (hf provider, tiny random Llama) in the exact shape the compiler renders.

The tiny model's answers are garbage; what is checked is the plumbing: task config → prompts →
generation → scores → log → cruijff.results.scores, and that PEFT adapter directories load.
"""

from __future__ import annotations

import importlib

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cruijff.results import scores
from tests.conftest import REPO, require

pytestmark = pytest.mark.inspect

INSPECT = Path(sys.executable).with_name("inspect")
TASKS = REPO / "experiments" / "tasks"
WORDS = ["apple", "banana", "cherry", "river", "house", "garden"]


def _yaml(path: Path, data: dict) -> Path:
    from ruamel.yaml import YAML

    with path.open("w") as f:
        YAML().dump(data, f)
    return path


def run_inspect(node: Path, task: str, model_dir: Path, task_args: dict, *, do_sample: bool = False,
                seed: int = 1234) -> subprocess.CompletedProcess:
    """The command line cruijff renders for an eval node (plus model/task config files)."""
    node.mkdir(parents=True, exist_ok=True)
    from cruijff.compiler.render.inspect import model_config as render_model_config

    model_config = render_model_config(model_dir=str(model_dir), gpus=0, provider="hf")
    if do_sample:
        del model_config["do_sample"]  # inspect's default: sample
    _yaml(node / "model_config.yaml", model_config)
    _yaml(node / "task_config.yaml", task_args)
    cmd = [str(INSPECT), "eval", str(TASKS / task), "--model", "hf/local",
           "--model-config", str(node / "model_config.yaml"),
           "--task-config", str(node / "task_config.yaml"),
           "--log-dir", str(node / "logs"), "--seed", str(seed), "--display", "none"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "INSPECT_DISPLAY": "none"}
    return subprocess.run(cmd, cwd=node, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("eval-data")
    caps = [{"input": w, "output": w.capitalize()} for w in WORDS]
    (d / "caps.json").write_text(json.dumps({"train": caps, "validation": caps[:2], "test": caps}))
    twins = [{"input": f"height {i} weight {9 - i}", "output": str(i % 2)} for i in range(6)]
    (d / "twins.json").write_text(json.dumps({"train": twins, "test": twins}))
    return d


@pytest.fixture(scope="module")
def inspect_ready():
    require(INSPECT.exists(), f"inspect CLI not found next to {sys.executable}")
    importlib.import_module("inspect_ai")


def _compare_with_inspect(log_dir: Path) -> scores.EvalScore:
    """cruijff.results.scores must read what inspect's own reader reads."""
    from inspect_ai.log import read_eval_log

    ours = scores.latest(log_dir)
    assert ours is not None
    theirs = read_eval_log(ours.path, header_only=True)
    assert ours.status == theirs.status
    assert ours.task == theirs.eval.task
    assert ours.model == theirs.eval.model
    if theirs.results is not None:
        assert ours.samples == theirs.results.completed_samples
        expected = {f"{s.name}/{k}": m.value for s in theirs.results.scores for k, m in s.metrics.items()}
        assert ours.metrics.keys() == expected.keys()
        for k, v in expected.items():
            assert ours.metrics[k] == pytest.approx(v, nan_ok=True), k
    return ours


@pytest.fixture(scope="module")
def capitalization_run(inspect_ready, tiny_model_dir, data_dir, tmp_path_factory):
    node = tmp_path_factory.mktemp("plan") / "eval" / "run0" / "epoch_0" / "capitalization"
    args = {"data": str(data_dir / "caps.json"), "format": "instruct_json", "split": "test",
            "template": "Capitalize: {input}", "system": "Answer with one word."}
    proc = run_inspect(node, "capitalization.py@capitalization", tiny_model_dir, args)
    return node, proc


def test_capitalization_eval_succeeds_and_scores_are_readable(capitalization_run):
    node, proc = capitalization_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = _compare_with_inspect(node / "logs")
    assert ours.status == "success", ours.error
    assert ours.task == "capitalization"
    assert ours.samples == len(WORDS)
    assert set(ours.metrics) >= {"exact_match/accuracy", "includes/accuracy"}
    assert scores.headline(node / "logs") == ("exact_match/accuracy", ours.metrics["exact_match/accuracy"])
    assert ours.started and ours.completed


def test_prompt_tokens_match_training_prompts(capitalization_run, data_dir, tiny_model_dir):
    """The real `inspect eval` fed the model as many tokens as the training prompts hold (inspect
    logs the batch's padded input length per sample); tests/integration/test_parity.py compares
    the ids themselves, row by row."""
    from inspect_ai.log import read_eval_log

    from cruijff.prompting import build_messages
    from cruijff.train.datasets import prompted_dataset
    from cruijff.train.tokenizer import hf_tokenizer

    node, _ = capitalization_run
    log = read_eval_log(scores.latest(node / "logs").path)
    assert log.eval.config.log_samples is not False
    sample = log.samples[0]
    expected = build_messages(WORDS[0], template="Capitalize: {input}", system="Answer with one word.")
    assert [{"role": m.role, "content": m.text} for m in sample.input] == expected
    assert sample.target == "Apple"
    ds = prompted_dataset(hf_tokenizer(str(tiny_model_dir)), path=str(data_dir / "caps.json"), format="instruct_json",
                          split="test", template="Capitalize: {input}", system="Answer with one word.")
    trained = {next(i for i, label in enumerate(ds[k]["labels"]) if int(label) != -100) for k in range(len(ds))}
    fed = {s.output.usage.input_tokens for s in log.samples}
    assert fed <= trained and max(fed) == max(trained), (fed, trained)
    # greedy and seeded: the generate config the task asked for reached the model
    assert log.plan.config.temperature == 0.0
    assert log.plan.config.seed == 1234


def test_zygosity_eval_reports_calibration_metrics(inspect_ready, tiny_model_dir, data_dir, tmp_path):
    node = tmp_path / "eval" / "run0" / "epoch_0" / "zygosity"
    # top_logprobs = the tiny vocabulary, so both labels are always listed (no floor needed).
    args = {"data": str(data_dir / "twins.json"), "format": "instruct_json", "split": "test",
            "template": "Traits: {input}\nZygosity:", "system": None, "top_logprobs": 512}
    proc = run_inspect(node, "twins.py@zygosity", tiny_model_dir, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = _compare_with_inspect(node / "logs")
    assert ours.status == "success", ours.error
    for name in ("exact_match/accuracy", "label_probability/label_accuracy", "label_probability/brier",
                 "label_probability/ece", "label_probability/auc"):
        assert name in ours.metrics and math.isfinite(ours.metrics[name]), name
    assert 0 <= ours.metrics["label_probability/brier"] <= 1

    from inspect_ai.log import read_eval_log

    log = read_eval_log(ours.path)
    for sample in log.samples:
        meta = sample.scores["label_probability"].metadata
        assert meta["floored"] == []  # both labels were in the top-k
        assert sum(meta["probs"].values()) == pytest.approx(1.0)
        assert meta["y"] == int(sample.target)


def test_peft_adapter_directory_loads_through_hf_provider(inspect_ready, tiny_model_dir, data_dir, tmp_path):
    """A clean adapter dir (adapter_config.json → base, plus tokenizer files) is a valid model_path."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = tmp_path / "epoch_0" / "model"
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)

    # The provider's load call (AutoModelForCausalLM.from_pretrained(model_path)) applies the adapter.
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        loaded = AutoModelForCausalLM.from_pretrained(adapter)
        plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        assert not torch.allclose(loaded(ids).logits, plain(ids).logits)

    node = tmp_path / "eval" / "adapter" / "epoch_0" / "capitalization"
    args = {"data": str(data_dir / "caps.json"), "format": "instruct_json", "split": "test",
            "template": None, "system": None}
    proc = run_inspect(node, "capitalization.py@capitalization", adapter, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _compare_with_inspect(node / "logs").status == "success"


# inspect formats each error's traceback with rich (about 40 s of CPU per failed evaluation here).
# The default tier has the same exit-0-but-error path through the job script, which fails it:
# test_a_solver_that_raises_says_why.
@pytest.mark.slow
def test_failed_eval_exits_zero_but_log_says_error(inspect_ready, tiny_model_dir, data_dir, tmp_path):
    """inspect eval exits 0 when the eval errors; job scripts must check with `python -m cruijff.scores`."""
    node = tmp_path / "eval" / "bad"
    args = {"data": str(data_dir / "caps.json")}
    # The hf provider samples by default; temperature 0 with sampling is rejected by transformers.
    proc = run_inspect(node, "capitalization.py@capitalization", tiny_model_dir, args, do_sample=True)
    assert proc.returncode == 0
    ours = _compare_with_inspect(node / "logs")
    assert ours.status == "error" and "temperature" in ours.error
    assert scores.headline(node / "logs") is None
    check = subprocess.run([sys.executable, "-m", "cruijff.scores", str(node / "logs")],
                           capture_output=True, text=True)
    assert check.returncode == 1 and "error" in check.stderr


def test_report_reads_real_logs(capitalization_run, tmp_path):
    """cruijff report on a plan whose eval node holds a real (zstd-compressed) .eval log."""
    pd = importlib.import_module("pandas")

    from cruijff.plan import dumps
    from cruijff.plan import EVAL, FINETUNE, Node, Plan, Resources
    from cruijff.results.report import build_report

    node, _ = capitalization_run
    root = node.parents[3]  # <plan>/eval/run0/epoch_0/capitalization
    attrs = {"run": "run0", "model": "tiny", "dataset": "caps", "hyperparameters": {"lr": 0.001}}
    plan = Plan("it", str(root), "m.yaml", "local", 1, {}, (
        Node("finetune/run0", FINETUNE, (), Resources(), "h", attrs),
        Node("eval/run0/epoch_0/capitalization", EVAL, ("finetune/run0",), Resources(), "h",
             {**attrs, "epoch": 0, "task": "capitalization"}),
    ))
    (root / "plan.json").write_text(dumps(plan))
    report = build_report(root, tmp_path / "report")
    table = pd.read_csv(report.tables["scores.csv"]).set_index("metric")["value"]
    expected = scores.latest(node / "logs").metrics
    assert table.to_dict() == pytest.approx(expected)
    # the per-item scores the paired comparisons use: inspect's samples, whose means are its metrics
    from cruijff.results.comparisons import item_rows

    items = pd.DataFrame(item_rows(plan, root))
    means = items.groupby("metric")["value"].mean().to_dict()
    assert means and set(means) <= set(expected)
    assert means == pytest.approx({m: expected[m] for m in means})
    assert set(items.groupby("metric")["item"].nunique()) == {scores.latest(node / "logs").samples}


# ---- a failed evaluation says why, in its job output and to `cruijff status` (issue 12.3) --------

BROKEN_TASKS = '''
from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.solver import solver


@task
def unreadable(**kwargs):
    raise ValueError("the task could not read its data: broken.json")


@solver
def exploding():
    async def solve(state, generate):
        raise RuntimeError("the solver exploded on a sample")
    return solve


@task
def explodes(**kwargs):
    return Task(dataset=MemoryDataset([Sample(input="x", target="X")]), solver=exploding())
'''


def run_eval_job(node: Path, task_file: Path, task_name: str, model_dir: Path, task_args: dict):
    """The eval node's job script exactly as the compiler renders it, run with bash like the local executor."""
    from cruijff.plan import Resources
    from cruijff.compiler.render.inspect import eval_commands, model_config
    from cruijff.compiler.render.sbatch import job_script

    node.mkdir(parents=True, exist_ok=True)
    _yaml(node / "model_config.yaml", model_config(model_dir=str(model_dir), gpus=0, provider="hf"))
    _yaml(node / "task_config.yaml", task_args)
    commands = eval_commands(task_file=str(task_file), task_name=task_name, model_dir=str(model_dir),
                             provider="hf", seed=1, limit=None, metadata={}, max_tokens=20)
    script = node / "job.sbatch"
    script.write_text(job_script(title="eval", job_name="it:eval", node_dir=str(node), resources=Resources(),
                                 cluster={}, commands=commands))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CRUIJFF_JOB_ID": "42",
           "PATH": f"{INSPECT.parent}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(REPO)}
    env.pop("INSPECT_DISPLAY", None)
    return subprocess.run(["bash", str(script)], cwd=node, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)


def _status_reason(node: Path) -> str | None:
    """What `cruijff status` shows for a failed node: its last attempt's error, first line."""
    from cruijff.run.records import last_attempt

    attempt = last_attempt(node / "record.jsonl", "42")
    assert attempt is not None and attempt.exit_code == 1
    return attempt.reason


def test_a_task_name_that_does_not_exist_says_so(inspect_ready, tiny_model_dir, data_dir, tmp_path):
    node = tmp_path / "eval" / "stanse"
    proc = run_eval_job(node, TASKS / "capitalization.py", "stanse", tiny_model_dir,
                        {"data": str(data_dir / "caps.json")})
    assert proc.returncode == 1
    assert "Task named 'stanse' not found." in proc.stdout  # inspect's own words, in job.out
    assert _status_reason(node) == ("evaluation failed: Task named 'stanse' not found. "
                                    "(inspect exit 1, no log written)")


@pytest.mark.slow  # the default tier has it through apply and status: test_failures_say_why_in_status_local
def test_a_task_that_raises_says_why(inspect_ready, tiny_model_dir, data_dir, tmp_path):
    tasks = tmp_path / "broken.py"
    tasks.write_text(BROKEN_TASKS)
    node = tmp_path / "eval" / "unreadable"
    proc = run_eval_job(node, tasks, "unreadable", tiny_model_dir, {})
    assert proc.returncode == 1 and "Traceback" in proc.stdout
    assert _status_reason(node) == ("evaluation failed: ValueError: the task could not read its data: "
                                    "broken.json (inspect exit 1, no log written)")


def test_a_solver_that_raises_says_why(inspect_ready, tiny_model_dir, data_dir, tmp_path):
    tasks = tmp_path / "broken.py"
    tasks.write_text(BROKEN_TASKS)
    node = tmp_path / "eval" / "explodes"
    proc = run_eval_job(node, tasks, "explodes", tiny_model_dir, {})
    assert proc.returncode == 1
    reason = _status_reason(node)
    assert reason.startswith("evaluation failed: eval status error: RuntimeError('the solver exploded on a sample')")
    assert reason in proc.stdout
