"""Evaluation nodes: the hf and vllm provider lines and their model configs."""

from cruijff.compiler.render.inspect import eval_commands, model_config


def test_hf_reads_the_local_directory_greedily():
    cfg = model_config(model_dir="/m/epoch_1/model", gpus=0, provider="hf")
    # tokenizer_call_args: the template writes BOS where there is one; a second would differ
    # from the trained prompt ids (tests/integration/test_parity.py)
    assert cfg == {"model_path": "/m/epoch_1/model", "tokenizer_path": "/m/epoch_1/model", "device": "cpu",
                   "do_sample": False, "tokenizer_call_args": {"add_special_tokens": False}}
    [argv] = eval_commands(task_file="/t.py", task_name="task", model_dir="/m", provider="hf",
                           seed=1, limit=None, metadata={"run": "r"}, max_tokens=20)
    # cruijff.results.scores runs inspect (which exits 0 on errored evals), checks the log, says why it failed
    assert argv[:5] == ["python", "-m", "cruijff.scores", "logs", "--"]
    eval_argv = argv[5:]
    assert eval_argv[:5] == ["inspect", "eval", "/t.py@task", "--model", "hf/local"]
    assert ["--metadata", "run=r"] == eval_argv[-2:]
    # `--display none` drops the reason an eval could not start ("Task named ... not found")
    assert eval_argv[eval_argv.index("--display") + 1] == "log"
    assert eval_argv[eval_argv.index("--max-tokens") + 1] == "20" and eval_argv[eval_argv.index("--seed") + 1] == "1"


def test_vllm_names_the_directory_in_the_model_and_serves_on_all_gpus():
    cfg = model_config(model_dir="/m", gpus=4, provider="vllm")
    assert cfg["tensor_parallel_size"] == 4 and "model_path" not in cfg and "device" not in cfg
    [argv] = eval_commands(task_file="/t.py", task_name="task", model_dir="/m/epoch_0/model",
                           provider="vllm", seed=1, limit=5, metadata={}, max_tokens=7)
    eval_argv = argv[argv.index("--") + 1:]
    assert eval_argv[eval_argv.index("--model") + 1] == "vllm//m/epoch_0/model"
    assert eval_argv[eval_argv.index("--limit") + 1] == "5"
    assert eval_argv[eval_argv.index("--max-tokens") + 1] == "7"


def test_hf_spreads_a_multi_gpu_model_over_every_gpu():
    """inspect's hf provider hands `device` to from_pretrained as device_map: 'auto' spreads the layers."""
    assert model_config(model_dir="/m", gpus=4, provider="hf") == {
        "model_path": "/m", "tokenizer_path": "/m", "device": "auto", "do_sample": False,
        "tokenizer_call_args": {"add_special_tokens": False}}
    assert model_config(model_dir="/m", gpus=2, provider="hf")["device"] == "auto"
    assert model_config(model_dir="/m", gpus=1, provider="hf")["device"] == "cuda:0"


def test_hf_provider_really_uses_device_as_device_map():
    """Pins the inspect-ai behaviour the rendered config relies on (read from its installed source)."""
    import inspect as pyinspect

    from inspect_ai.model._providers import hf

    source = pyinspect.getsource(hf.HuggingFaceAPI.__init__)
    assert 'collect_model_arg("device")' in source and "device_map=self.device" in source


BIG = """\
experiment: big
output_dir: out
models:
  llama-70b: {path: /models/Llama-3.3-70B-Instruct, family: Llama-3.3-70B-Instruct}
datasets:
  words: {path: words.json, format: instruct_json}
finetune: {hyperparameters: {epochs: 1}}
eval:
  tasks: [{name: cap, file: cap.py, task: cap}]
  base_models: true
"""


def test_a_70b_evaluation_plan_renders_device_map_auto(tmp_path):
    from cruijff.compiler.pipeline import compile_manifest
    import yaml

    (tmp_path / "m.yaml").write_text(BIG)
    (tmp_path / "cap.py").write_text("from inspect_ai import task\n\n\n@task\ndef cap(**kwargs):\n    ...\n")
    files = compile_manifest(tmp_path / "m.yaml").files
    configs = {k: yaml.safe_load(v) for k, v in files.items() if k.endswith("model_config.yaml")}
    assert set(configs) == {"eval/llama-70b_words/epoch_0/cap/model_config.yaml",
                            "base_eval/llama-70b/words/cap/model_config.yaml"}
    for cfg in configs.values():
        assert cfg["device"] == "auto"
    script = files["base_eval/llama-70b/words/cap/job.sbatch"]
    assert "#SBATCH --gres=gpu:4" in script


def test_hf_text_completion_renders_the_plain_text_template():
    """text_completion: inspect renders cruijff's one-turn template (the prompt text, nothing of the
    model's chat template) and tokenizes it with the tokenizer's own BOS, as training does."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from cruijff.prompting import TEXT_COMPLETION_CHAT_TEMPLATE

    cfg = model_config(model_dir="/m", gpus=0, provider="hf", style="text_completion")
    assert cfg["tokenizer_call_args"] == {"add_special_tokens": True}
    assert cfg["chat_template"] == TEXT_COMPLETION_CHAT_TEMPLATE
    assert "chat_template" not in model_config(model_dir="/m", gpus=0, provider="hf")

    def raise_exception(message):
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment()
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(TEXT_COMPLETION_CHAT_TEMPLATE)
    text = "Word: apple\nCapitalized: "
    assert template.render(messages=[{"role": "user", "content": text}], add_generation_prompt=True) == text
    import pytest

    with pytest.raises(ValueError, match="one user turn"):
        template.render(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": text}])
