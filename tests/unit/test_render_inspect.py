"""Evaluation nodes: the hf and vllm provider lines and their model configs."""

from cruijff.render.inspect import eval_commands, model_config


def test_hf_reads_the_local_directory_greedily():
    cfg = model_config(model_dir="/m/epoch_1/model", gpus=0, provider="hf")
    # tokenizer_call_args: the template writes BOS where there is one; a second would differ
    # from the trained prompt ids (tests/integration/test_parity.py)
    assert cfg == {"model_path": "/m/epoch_1/model", "tokenizer_path": "/m/epoch_1/model", "device": "cpu",
                   "do_sample": False, "tokenizer_call_args": {"add_special_tokens": False}}
    eval_argv, check_argv = eval_commands(task_file="/t.py", task_name="task", model_dir="/m", provider="hf",
                                          seed=1, limit=None, metadata={"run": "r"})
    assert eval_argv[:5] == ["inspect", "eval", "/t.py@task", "--model", "hf/local"]
    assert ["--metadata", "run=r"] == eval_argv[-2:]
    assert check_argv == ["python", "-m", "cruijff.scores", "logs"]  # inspect exits 0 on errored evals


def test_vllm_names_the_directory_in_the_model_and_serves_on_all_gpus():
    cfg = model_config(model_dir="/m", gpus=4, provider="vllm")
    assert cfg["tensor_parallel_size"] == 4 and "model_path" not in cfg and "device" not in cfg
    eval_argv, _ = eval_commands(task_file="/t.py", task_name="task", model_dir="/m/epoch_0/model",
                                 provider="vllm", seed=1, limit=5, metadata={})
    assert eval_argv[eval_argv.index("--model") + 1] == "vllm//m/epoch_0/model"
    assert eval_argv[eval_argv.index("--limit") + 1] == "5"
