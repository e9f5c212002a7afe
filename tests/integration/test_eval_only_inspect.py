"""Evaluating what a plan did not train, through real `inspect eval` on the tiny model (issue 25,
items 4 and 8):

- cruijff_kit's own capitalization task (tests/fixtures/cruijff_kit, vendored unchanged) is fed its
  interface (data_path, config_path → the rendered eval.yaml) and the ids it makes inspect's hf
  provider generate from are the ids training masks as the prompt, token for token: the same
  parity test as cruijff's own tasks (test_parity.py), on the tiny model's ChatML tokenizer and a
  Llama-3-style one, in chat and text_completion style. An empty system prompt is where the kit
  task differs (it always adds a system message): equal under Llama 3's template, not under
  ChatML, which is why plan warns; the test shows both.
- a checkpoint model of a manifest (`models.<name>.checkpoint`) and `cruijff eval` run as real jobs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.inspect

KIT_TASK = REPO / "tests" / "fixtures" / "cruijff_kit" / "capitalization_inspect_task.py"
KIT_DATA = REPO / "tests" / "fixtures" / "cruijff_kit" / "words_5L_80P_10.json"
SYSTEM = "You are a helpful assistant."
TEMPLATE = "Capitalize the given word: {input}\n"


@pytest.fixture(scope="module")
def words(tmp_path_factory) -> Path:
    """cruijff_kit's capitalization data shape ({split: [{input, output}]}), 40 test rows."""
    out = tmp_path_factory.mktemp("kit-data") / "words.json"
    subprocess.run([sys.executable, "-m", "cruijff", "data", "generate", "capitalization", str(out), "--count", "400",
                    "--letters", "5", "--seed", "7"], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return out


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory) -> Path:
    from tests.chat_tokenizers import build_llama3_style

    return build_llama3_style(tmp_path_factory.mktemp("llama3-style"))


def kit_prompt_ids(model_dir: Path, data: Path, prompt: dict, tmp: Path, split: str = "test") -> list[tuple[int, ...]]:
    """The input_ids inspect's hf provider passes to model.generate when cruijff_kit's task runs
    with the arguments cruijff renders (task_config.yaml, eval.yaml, model_config.yaml)."""
    import torch
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import GenerateConfig, get_model

    from cruijff.compiler.render.inspect import kit_eval_config, kit_task_config, model_config
    from cruijff.compiler.render.yaml import dump_yaml
    from cruijff.compiler.taskfile import task_signature
    from tests.integration.test_parity import awaited_batches

    style = prompt.get("style", "chat")
    config = tmp / "eval.yaml"
    config.write_text(dump_yaml(kit_eval_config(prompt=prompt)))
    args = kit_task_config(dataset={"path": str(data), "splits": {"test": split}}, prompt=prompt, task={},
                           config_path=str(config), label="ckpt", max_tokens=1,
                           accepted=task_signature(str(KIT_TASK), "capitalization").accepted)
    model = get_model("hf/local", config=GenerateConfig(max_connections=64), memoize=False,
                      **model_config(model_dir=str(model_dir), gpus=0, provider="hf", style=style))
    eos = model.api.tokenizer.eos_token_id
    seen: list[tuple[int, ...]] = []

    def generate(input_ids, attention_mask, **kwargs):
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            seen.append(tuple(t for t, keep in zip(ids, mask) if keep))  # left padding dropped
        new = torch.full((input_ids.shape[0], 1), eos, dtype=input_ids.dtype)
        return SimpleNamespace(sequences=torch.cat([input_ids, new], 1), logits=None, hidden_states=None)

    model.api.model.generate = generate
    with awaited_batches():
        (log,) = inspect_eval(f"{KIT_TASK}@capitalization", model=model, task_args=args, log_dir=str(tmp / "logs"),
                              display="none", max_connections=64)
    assert log.status == "success", log.error
    return seen


def trained_prompt_ids(model_dir: Path, data: Path, prompt: dict, split: str = "test") -> list[tuple[int, ...]]:
    from tests.integration.test_parity import trained_prompts

    rows = len(json.loads(data.read_text())[split])
    dataset = {"path": str(data), "format": "instruct_json", "splits": {"test": split}}
    full = {"template": None, "system": None, **prompt}
    return trained_prompts(model_dir, dataset, full, split, list(range(rows)))


@pytest.mark.parametrize("which, prompt", [
    ("tiny", {"template": TEMPLATE, "system": SYSTEM}),
    ("llama3", {"template": TEMPLATE, "system": SYSTEM}),
    ("llama3", {"template": TEMPLATE, "system": None}),  # an empty system turn is none under Llama 3
    ("tiny", {"template": "Word: {input}\nCapitalized: ", "system": None, "style": "text_completion"}),
])
def test_kit_task_prompt_ids_are_the_trained_prompt_ids(which, prompt, words, tiny_model_dir, llama3_dir, tmp_path):
    model_dir = tiny_model_dir if which == "tiny" else llama3_dir
    evaluated = kit_prompt_ids(model_dir, words, prompt, tmp_path)
    trained = trained_prompt_ids(model_dir, words, prompt)
    assert len(trained) == len(evaluated) == 40
    assert Counter(evaluated) == Counter(trained)


def test_kit_task_with_an_empty_system_prompt_breaks_chatml_parity(tiny_model_dir, words, tmp_path):
    """What plan's warning is about: the kit task adds `system_message("")`, a system turn training
    never had under ChatML (the tiny model's template). The comparison above can fail."""
    prompt = {"template": TEMPLATE, "system": None}
    evaluated = kit_prompt_ids(tiny_model_dir, words, prompt, tmp_path)
    trained = trained_prompt_ids(tiny_model_dir, words, prompt)
    assert not set(evaluated) & set(trained)


# --- real jobs ------------------------------------------------------------------------------------

def cli(*args: str, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "cruijff", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)
    if check:
        assert proc.returncode == 0, f"cruijff {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def only_log(node_dir: Path):
    from inspect_ai.log import list_eval_logs, read_eval_log

    (log,) = list_eval_logs(str(node_dir / "logs"))
    return read_eval_log(log)


# slow: a whole apply. In the default tier: the kit task through inspect's own eval() and hf provider
# (the parity tests above), a checkpoint evaluated as a real job (test_cruijff_eval_of_an_adapter_folder_locally).
@pytest.mark.slow
def test_a_checkpoint_model_runs_the_kit_task_unchanged(tmp_path, tiny_model_dir):
    """A manifest whose only model is a checkpoint (the tiny model's folder, as a merged model) and
    whose task is cruijff_kit's, applied locally: a real `inspect eval` whose samples are the
    manifest's prompt and whose scores are the kit task's own (match, includes)."""
    from cruijff.compiler.render.yaml import dump_yaml

    manifest = {
        "experiment": f"ckpt-kit-{os.getpid()}", "output_dir": str(tmp_path / "out"),
        "executor": {"kind": "local"},
        "models": {"earlier": {"checkpoint": str(tiny_model_dir), "family": "custom"}},
        "datasets": {"words": {"path": str(KIT_DATA), "format": "instruct_json"}},
        "prompt": {"template": TEMPLATE, "system": SYSTEM},
        "finetune": {},
        "eval": {"tasks": [{"name": "caps", "file": str(KIT_TASK), "task": "capitalization"}],
                 "resources": {"gpus": 0}, "max_tokens": 3},
    }
    (tmp_path / "m.yaml").write_text(dump_yaml(manifest))
    applied = json.loads(cli("apply", str(tmp_path / "m.yaml"), "--json").stdout)
    assert applied["final"] == {"checkpoint_eval/earlier/words/caps": "completed"}
    node = tmp_path / "out" / "checkpoint_eval" / "earlier" / "words" / "caps"
    log = only_log(node)
    assert log.status == "success" and log.eval.task == "capitalization_earlier"  # vis_label, as cruijff_kit names it
    assert log.eval.task_args["data_path"] == str(KIT_DATA)
    assert log.eval.model_args["model_path"] == str(tiny_model_dir)
    (sample,) = log.samples  # the fixture's one test row
    test = json.loads(KIT_DATA.read_text())["test"][0]
    assert [(m.role, m.text) for m in sample.messages[:2]] == [("system", SYSTEM),
                                                               ("user", TEMPLATE.replace("{input}", test["input"]))]
    assert {s.name for s in log.results.scores} == {"match", "includes"}
    status = json.loads(cli("status", str(tmp_path / "out"), "--json").stdout)
    (shown,) = status["nodes"]
    assert shown["state"] == "done" and shown["score"] is not None


def test_cruijff_eval_of_an_adapter_folder_locally(tmp_path, tiny_model_dir):
    """`cruijff eval ADAPTER --task FILE@NAME --data` outside any plan: one real local job, the
    same files a plan renders, the score inspect's log holds."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = tmp_path / "elsewhere" / "adapter"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(adapter)
    out = tmp_path / "eval"
    answer = json.loads(cli("eval", str(adapter), "--task", f"{REPO}/experiments/tasks/capitalization.py@capitalization",
                            "--data", str(KIT_DATA), "--template", TEMPLATE, "--system", SYSTEM, "--gpus", "0",
                            "--out", str(out), "--max-tokens", "3", "--json").stdout)
    node = "checkpoint_eval/adapter/data/capitalization"
    assert answer["ok"] and answer["nodes"][node]["state"] == "completed"
    log = only_log(out / node)
    assert log.eval.model_args["model_path"] == str(adapter)
    assert log.eval.task_args["template"] == TEMPLATE and log.eval.task_args["system"] == SYSTEM
    want = {f"{s.name}/{k}": m.value for s in log.results.scores for k, m in s.metrics.items()}
    assert answer["nodes"][node]["score"]["metrics"] == pytest.approx(want)
    assert (out / "plan.json").is_file() and (out / "eval.manifest.yaml").is_file()


# slow: a real SLURM job of a real inspect eval. In the default tier: the same plan applied locally
# (test_cruijff_eval_of_an_adapter_folder_locally) and its --slurm manifest and job script rendered
# (tests/unit/test_eval_only.py::test_eval_slurm_renders_one_sbatch_job_per_task).
@pytest.mark.slow
def test_cruijff_eval_as_a_slurm_job(tmp_path, tiny_model_dir, slurm_cluster):
    import time
    import uuid

    out = tmp_path / "eval"
    name = f"ckpt-{uuid.uuid4().hex[:8]}"
    answer = json.loads(cli("eval", str(tiny_model_dir), "--task", f"{REPO}/experiments/tasks/capitalization.py@capitalization",
                            "--data", str(KIT_DATA), "--template", TEMPLATE, "--gpus", "0", "--mem", "2G",
                            "--time", "00:10:00", "--name", name, "--out", str(out), "--max-tokens", "3", "--slurm",
                            "--json").stdout)
    node = f"checkpoint_eval/{name}/data/capitalization"
    assert answer["ok"] and answer["executor"] == "slurm" and answer["nodes"][node]["job_id"]
    try:
        deadline = time.time() + 300
        while True:
            status = json.loads(cli("status", str(out), "--json", check=False).stdout)
            (shown,) = status["nodes"]
            if shown["state"] not in ("pending", "running"):
                break
            assert time.time() < deadline, shown
            time.sleep(2)
        assert shown["state"] == "done" and shown["score"] is not None, shown
        assert only_log(out / node).status == "success"
    finally:
        cli("cancel", str(out), check=False)


# slow: a real fine-tune first. In the default tier: an epoch folder's prompt and data read from
# its finetune.yaml (tests/unit/test_eval_only.py::test_eval_manifest_takes_the_prompt_of_the_epoch_folders_run)
# and cruijff eval as a real job (test_cruijff_eval_of_an_adapter_folder_locally).
@pytest.mark.slow
@pytest.mark.train
def test_cruijff_eval_of_a_trained_epoch_gives_the_plans_scores(tmp_path, tiny_model_dir):
    """What the seed's setup_inspect.py --finetune_epoch_dir did: an epoch folder evaluated outside
    its plan, with the prompt it was trained with, gives the plan's own evaluation of that epoch:
    the same task arguments, the same answers, the same scores."""
    from tests.integration.test_end_to_end import small_manifest, wait_until_settled

    manifest = small_manifest(tmp_path, tiny_model_dir, "local")
    cli("apply", str(manifest))
    out = tmp_path / "out"
    assert {n["state"] for n in wait_until_settled(out)["nodes"]} == {"done"}
    epoch = out / "finetune" / "tiny_words_r4" / "epoch_1"
    answer = json.loads(cli("eval", str(epoch), "--task", f"{REPO}/experiments/tasks/capitalization.py@capitalization",
                            "--limit", "6", "--gpus", "0", "--out", str(tmp_path / "again"), "--json").stdout)
    assert answer["trained_with"] == {"run": "tiny_words_r4", "epoch": 1}
    ours = tmp_path / "again" / "checkpoint_eval" / "tiny_words_r4_epoch_1" / "data" / "capitalization"
    plans = out / "eval" / "tiny_words_r4" / "epoch_1" / "capitalization"
    task_args = [YAML_LOAD(p / "task_config.yaml") for p in (ours, plans)]
    assert {k: v for k, v in task_args[0].items()} == task_args[1]  # the same data, split and prompt
    assert YAML_LOAD(ours / "model_config.yaml")["model_path"] == str(epoch / "model")
    a, b = only_log(ours), only_log(plans)
    assert [s.output.completion for s in a.samples] == [s.output.completion for s in b.samples]
    assert ({f"{s.name}/{k}": m.value for s in a.results.scores for k, m in s.metrics.items()}
            == {f"{s.name}/{k}": m.value for s in b.results.scores for k, m in s.metrics.items()})


def YAML_LOAD(path: Path):
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(path.read_text())
