"""Issue 25 items 1-3 through real `inspect eval` (hf provider, the tiny random Llama): cells of the
evaluation matrix of experiments/tiny_prompts.yaml, planned by cruijff and run with their rendered
job scripts, evaluate each run with its own prompt variant (or, where the task says cross_prompt,
with the task's), and with the decoding settings the manifest gives (greedy, or three sampled
answers per item at temperature 0.7, top_p 0.9, reduced by mode).

The fine-tunes are not trained here (tests/integration/test_end_to_end.py trains): each evaluated
epoch folder is the tiny model itself, which is all an evaluation reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require
from tests.unit.test_eval_matrix import base, compile_

pytestmark = pytest.mark.inspect

INSPECT = Path(sys.executable).with_name("inspect")
WORDS = ["apple", "banana", "cherry", "river"]
VERBOSE = "Capitalize the word. Answer with the word alone."
CELLS = {  # node → (system prompt the samples carry, samples per item or None for greedy)
    "eval/tiny_words_r8_prompt-verbose/epoch_1/capitalization": (VERBOSE, None),  # its own variant
    "eval/tiny_words_r8_prompt-terse/epoch_1/verbose-prompt": (VERBOSE, None),  # cross-prompt
    "eval/tiny_words_r4_prompt-terse/epoch_0/sampled": (None, 3),  # its own variant (no system turn)
}
# The default tier runs one cell that has all three: a cell of the matrix, evaluated cross-prompt
# (the verbose variant on a run trained with the terse one), with two sampled answers per item.
ONE_CELL = {"eval/tiny_words_r8_prompt-terse/epoch_1/verbose-prompt": (VERBOSE, 2)}
SAMPLED = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "samples": 2, "reducer": "mode"}


@pytest.mark.parametrize("which", [
    pytest.param("one-cell"),
    # three inspect runs: about 90 s on 2 busy cores; the one-cell case covers each part by default
    pytest.param("three-cells", marks=pytest.mark.slow),
])
def test_matrix_prompt_variants_and_decoding_through_inspect(which, tiny_model_dir, tmp_path):
    require(INSPECT.exists(), f"inspect CLI not found next to {sys.executable}")
    from inspect_ai.log import read_eval_log

    data = tmp_path / "caps.json"
    caps = [{"input": w, "output": w.capitalize()} for w in WORDS]
    data.write_text(json.dumps({"train": caps, "validation": caps[:2], "test": caps}))
    m = base()
    m["models"]["tiny"]["path"] = str(tiny_model_dir)
    m["datasets"]["words"] = {"path": str(data), "format": "instruct_json"}
    m["eval"]["limit"] = 2
    chosen = CELLS if which == "three-cells" else ONE_CELL
    if which == "one-cell":
        m["eval"]["tasks"][1].update(SAMPLED)
    compiled = compile_(tmp_path, m)
    out = Path(compiled.plan.output_dir)
    cells = [n for n in compiled.plan.nodes if n.kind in ("eval", "base_eval")]
    assert len(cells) == 7 and set(chosen) <= {n.id for n in cells}
    for rel, text in compiled.files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CRUIJFF_JOB_ID": "1",
           "PATH": f"{INSPECT.parent}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(REPO)}
    env.pop("INSPECT_DISPLAY", None)
    procs = {}
    for node_id in chosen:
        node = compiled.plan.by_id()[node_id]
        epoch_dir = out / "finetune" / node.attrs["run"] / f"epoch_{node.attrs['epoch']}"
        epoch_dir.mkdir(parents=True, exist_ok=True)
        if not (epoch_dir / "model").exists():
            (epoch_dir / "model").symlink_to(tiny_model_dir)  # what the fine-tune would export
        procs[node_id] = subprocess.Popen(["bash", str(out / node_id / "job.sbatch")], cwd=out / node_id, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for node_id, proc in procs.items():
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output

    for node_id, (system, samples) in chosen.items():
        [path] = list((out / node_id / "logs").glob("*.eval"))
        log = read_eval_log(str(path))
        assert log.status == "success"
        for sample in log.samples:
            roles = [msg.role for msg in sample.input]
            if system is None:
                assert roles == ["user"]
            else:
                assert roles == ["system", "user"] and sample.input[0].text == system
            assert sample.input[-1].text.startswith("Word: ")  # the manifest's template
        generate = log.plan.config
        assert log.eval.model_args["do_sample"] is (samples is not None)
        if samples:
            assert (generate.temperature, generate.top_p) == (0.7, 0.9)
            assert log.eval.config.epochs == samples and log.eval.config.epochs_reducer == ["mode"]
            assert sorted((s.id, s.epoch) for s in log.samples) == sorted(
                (i, e) for i in {s.id for s in log.samples} for e in range(1, samples + 1))
            assert len(log.samples) == 2 * samples
        else:
            assert generate.temperature == 0 and generate.top_p is None
            assert log.eval.config.epochs in (None, 1) and len(log.samples) == 2
        assert log.eval.metadata.get("cross_prompt") is (True if node_id.endswith("verbose-prompt") else None)
