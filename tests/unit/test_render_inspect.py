"""Evaluation nodes: the hf and vllm provider lines and their model configs."""

from cruijff.render.inspect import eval_commands, model_config


def test_hf_reads_the_local_directory_greedily():
    cfg = model_config(model_dir="/m/epoch_1/model", gpus=0, provider="hf")
    assert cfg == {"model_path": "/m/epoch_1/model", "tokenizer_path": "/m/epoch_1/model", "device": "cpu",
                   "do_sample": False}
    [argv] = eval_commands(task_file="/t.py", task_name="task", model_dir="/m", provider="hf",
                           seed=1, limit=None, metadata={"run": "r"})
    # cruijff.scores runs inspect (which exits 0 on errored evals), checks the log, says why it failed
    assert argv[:5] == ["python", "-m", "cruijff.scores", "logs", "--"]
    eval_argv = argv[5:]
    assert eval_argv[:5] == ["inspect", "eval", "/t.py@task", "--model", "hf/local"]
    assert ["--metadata", "run=r"] == eval_argv[-2:]
    # `--display none` drops the reason an eval could not start ("Task named ... not found")
    assert eval_argv[eval_argv.index("--display") + 1] == "log"


def test_vllm_names_the_directory_in_the_model_and_serves_on_all_gpus():
    cfg = model_config(model_dir="/m", gpus=4, provider="vllm")
    assert cfg["tensor_parallel_size"] == 4 and "model_path" not in cfg and "device" not in cfg
    [argv] = eval_commands(task_file="/t.py", task_name="task", model_dir="/m/epoch_0/model",
                           provider="vllm", seed=1, limit=5, metadata={})
    eval_argv = argv[argv.index("--") + 1:]
    assert eval_argv[eval_argv.index("--model") + 1] == "vllm//m/epoch_0/model"
    assert eval_argv[eval_argv.index("--limit") + 1] == "5"
