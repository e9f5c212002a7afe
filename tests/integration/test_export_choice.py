"""finetune.export adapter, for real: `cruijff apply MANIFEST --set ...` trains the tiny Llama with
torchtune, exports epoch_0/adapter only (no merged model), and `inspect eval` scores it through
PEFT (transformers loads the base the adapter names and applies the adapter, once).

The same run also carries a run-name template and `--set` overrides on apply (issue 25, items 5-7);
their rendering is pinned by tests/unit/test_frontdoor.py and its golden files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from tests.conftest import REPO

import pytest

pytestmark = [pytest.mark.train, pytest.mark.inspect]


# Slow (about 60 s on 2 busy cores: apply, tune run, inspect eval). Its parts in the default tier:
# the adapter export itself and PEFT loading it once (test_adapter_export_loads_the_adapter_once,
# below), an adapter folder through inspect's hf provider
# (test_inspect_eval.py::test_peft_adapter_directory_loads_through_hf_provider), the rendered configs
# (tests/unit/test_frontdoor.py and tests/golden/tiny_set).


def _manifest(tmp_path: Path, model_dir: Path) -> Path:
    yaml = YAML()
    m = yaml.load((REPO / "experiments" / "tiny.yaml").read_text())
    words = ["apple", "river", "house", "stone", "tiger", "lemon", "zebra", "candle", "mirror", "pencil",
             "garden", "window", "violin", "rabbit", "orange", "island"]
    rows = [{"input": w, "output": w.upper()} for w in words]
    data = tmp_path / "words.json"
    data.write_text(json.dumps({"train": rows, "validation": rows[:4], "test": rows[:4]}))
    m["experiment"] = f"export-{os.getpid()}"
    m["output_dir"] = str(tmp_path / "out")
    m["executor"] = {"kind": "local", "max_parallel": 1}
    m["models"]["tiny"]["path"] = str(model_dir)
    m["datasets"]["words"] = {"path": str(data), "format": "instruct_json"}
    m["grid"] = {"lora_rank": [4]}
    m["eval"]["tasks"][0]["file"] = str(REPO / "experiments" / "tasks" / "capitalization.py")
    path = tmp_path / "manifest.yaml"
    with path.open("w") as f:
        yaml.dump(m, f)
    return path


@pytest.mark.slow
def test_adapter_only_export_is_evaluated_through_peft(tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    manifest = _manifest(tmp_path, tiny_model_dir)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    sets = ["finetune.export=adapter", "finetune.hyperparameters.epochs=1", "eval.limit=4",
            "eval.base_models=false", 'finetune.run_name="{model}-rank{lora_rank}"',
            "finetune.hyperparameters.val_every_n_steps=null"]
    argv = [sys.executable, "-m", "cruijff", "apply", str(manifest), "--json"]
    for s in sets:
        argv += ["--set", s]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    run = tmp_path / "out" / "finetune" / "tiny-rank4"  # the template named the run's folder
    adapter = run / "epoch_0" / "adapter"
    assert not (run / "epoch_0" / "model").exists(), "export adapter must not write a merged model"
    files = sorted(p.name for p in adapter.iterdir())
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(files), files
    assert not [f for f in files if f.endswith(".safetensors") and not f.startswith("adapter")], files
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
    record = json.loads((run / "epoch_0" / "record.json").read_text())
    assert (record["adapter_dir"], record["export_dir"], record["exported"]) == (str(adapter), None, True)

    # The evaluation loaded the adapter folder and scored it.
    node = tmp_path / "out" / "eval" / "tiny-rank4" / "epoch_0" / "capitalization"
    assert f"model_path: {adapter}" in (node / "model_config.yaml").read_text()
    from cruijff.results import scores

    score = scores.latest(node / "logs")
    assert score is not None and score.status == "success", score
    from inspect_ai.log import read_eval_log

    log = read_eval_log(score.path)
    assert len(log.samples) == 4 and log.eval.metadata["run"] == "tiny-rank4"

    # What transformers loads from the folder is the base with the adapter applied once: the same
    # logits as PEFT's own merge of torchtune's checkpoint, and not the base model's.
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        loaded = AutoModelForCausalLM.from_pretrained(adapter)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        plain = base(ids).logits
        merged = PeftModel.from_pretrained(base, run / "checkpoints" / "epoch_0").merge_and_unload()(ids).logits
    assert torch.allclose(loaded, merged, atol=1e-5)
    assert not torch.allclose(loaded, plain, atol=1e-5)


def test_adapter_export_loads_the_adapter_once(tiny_model_dir, tmp_path):
    """export_adapter (what the recipe calls for export adapter or both) on a real PEFT save: the
    folder names its base, holds no model weights, loads through transformers with the adapter
    applied once; one holding merged weights beside adapter_config.json is refused."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from cruijff.train.export import ExportError, _refuse_mixed, export_adapter

    checkpoint = tmp_path / "checkpoints" / "epoch_0"
    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    peft_model.save_pretrained(checkpoint)
    config = json.loads((checkpoint / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = None  # as torchtune writes it
    (checkpoint / "adapter_config.json").write_text(json.dumps(config))

    out = export_adapter(tiny_model_dir, checkpoint, tmp_path / "epoch_0" / "adapter")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
    assert (out / "tokenizer.json").is_file() and not (out / "model.safetensors").exists()
    assert not list(out.parent.glob(".adapter.tmp-*"))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        loaded = AutoModelForCausalLM.from_pretrained(out)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        plain = base(ids).logits
        once = PeftModel.from_pretrained(base, checkpoint).merge_and_unload()(ids).logits
    assert torch.allclose(loaded, once, atol=1e-5) and not torch.allclose(loaded, plain, atol=1e-5)

    (out / "model.safetensors").write_bytes(b"merged weights")
    with pytest.raises(ExportError, match="again"):
        _refuse_mixed(out)
