"""Issue 25 items 1-3 through plan: the evaluation matrix (which task on which run, epoch and base
model), prompt variants as a grid axis (trained and evaluated with the same prompt; a different one
only with cross_prompt: true), and decoding settings in the inspect command and the node hash.

The shipped experiments/tiny_prompts.yaml is the base manifest (its rendered files are pinned in
tests/golden/tiny_prompts); each test changes a part of it.
"""

from __future__ import annotations

import copy
import io
import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from cruijff.compiler.pipeline import compile_manifest
from cruijff.errors import ManifestError

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"


def base() -> dict:
    m = YAML(typ="safe").load((EXPERIMENTS / "tiny_prompts.yaml").read_text())
    m["models"]["tiny"]["path"] = str(EXPERIMENTS / "tiny" / "model")
    m["datasets"]["words"]["path"] = str(EXPERIMENTS / "tiny" / "data" / "capitalization.json")
    for task in m["eval"]["tasks"]:
        task["file"] = str(EXPERIMENTS / task["file"])
    return m


def write(tmp_path: Path, m: dict) -> Path:
    m = copy.deepcopy(m)
    m["output_dir"] = str(tmp_path / "out")
    path = tmp_path / "m.yaml"
    buf = io.StringIO()
    YAML().dump(m, buf)
    path.write_text(buf.getvalue())
    return path


def compile_(tmp_path: Path, m: dict):
    return compile_manifest(write(tmp_path, m), check_paths=False)


def errors(tmp_path: Path, m: dict) -> list:
    with pytest.raises(ManifestError) as e:
        compile_(tmp_path, m)
    return [p for p in e.value.problems if p.severity == "error"]


def line_of(path: Path, needle: str, after: str | None = None) -> int:
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and needle in line) + 1


def evals(compiled) -> list[str]:
    return [n.id for n in compiled.plan.nodes if n.kind in ("eval", "base_eval")]


def argv(compiled, node: str) -> list[str]:
    return shlex.split(compiled.files[f"{node}/job.sbatch"].strip().splitlines()[-1])


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


# --- 1. the evaluation matrix --------------------------------------------------------------------

def test_matrix_gives_exactly_its_cells(tmp_path):
    compiled = compile_(tmp_path, base())
    assert evals(compiled) == [
        "eval/tiny_words_r4_prompt-terse/epoch_0/sampled",
        "eval/tiny_words_r8_prompt-terse/epoch_1/capitalization",
        "eval/tiny_words_r8_prompt-terse/epoch_1/verbose-prompt",
        "eval/tiny_words_r8_prompt-verbose/epoch_1/capitalization",
        "eval/tiny_words_r8_prompt-verbose/epoch_1/verbose-prompt",
        "base_eval/tiny/words/capitalization",
        "base_eval/tiny/words/verbose-prompt",
    ]


def test_without_a_matrix_every_task_runs_on_every_run_and_epoch(tmp_path):
    m = base()
    del m["eval"]["matrix"]
    m["eval"]["epochs"] = "all"
    m["eval"]["base_models"] = True
    ids = evals(compile_(tmp_path, m))
    runs = ["tiny_words_r4_prompt-terse", "tiny_words_r8_prompt-terse", "tiny_words_r4_prompt-verbose",
            "tiny_words_r8_prompt-verbose"]
    tasks = ["capitalization", "verbose-prompt", "sampled"]
    assert ids == [f"eval/{r}/epoch_{e}/{t}" for r in runs for e in (0, 1) for t in tasks] + \
        [f"base_eval/tiny/words/{t}" for t in tasks]
    # the same cells written as a matrix: one row of every run, one base row
    m["eval"]["base_models"] = False
    m["eval"]["matrix"] = [{}, {"base_model": "tiny"}]
    assert evals(compile_(tmp_path, m)) == ids


def test_rows_union_and_duplicates_are_one_cell(tmp_path):
    m = base()
    m["eval"]["matrix"] = [{"where": {"prompt": "verbose"}, "tasks": ["capitalization"], "epochs": [0]},
                           {"run": "tiny_words_r4_prompt-verbose", "tasks": ["capitalization"], "epochs": "all"}]
    assert evals(compile_(tmp_path, m)) == [
        "eval/tiny_words_r4_prompt-verbose/epoch_0/capitalization",
        "eval/tiny_words_r4_prompt-verbose/epoch_1/capitalization",
        "eval/tiny_words_r8_prompt-verbose/epoch_0/capitalization",
    ]


@pytest.mark.parametrize("row, where, message", [
    ({"run": "tiny_words_r16_prompt-terse"}, "run", "names run 'tiny_words_r16_prompt-terse', which the grid does not make"),
    ({"where": {"lora_rank": 16}}, "where", "matches no run"),
    ({"tasks": ["capitalisation"]}, "capitalisation", "names task 'capitalisation'"),
    ({"base_model": "huge"}, "base_model", "names base model 'huge'"),
    ({"base_model": "tiny", "epochs": [0]}, "epochs", "gives epochs for a base model"),
    ({"run": "tiny_words_r4_prompt-terse", "base_model": "tiny"}, "- run", "gives run and base_model"),
    ({"epochs": [5]}, "epochs", "evaluates epoch 5 of run"),
])
def test_bad_matrix_rows_are_errors_at_their_place(tmp_path, row, where, message):
    m = base()
    m["eval"]["matrix"] = [row]
    found = errors(tmp_path, m)
    assert len(found) == 1 and message in found[0].message, found
    assert found[0].location.line == line_of(tmp_path / "m.yaml", where, after="matrix:")


def test_base_models_and_a_matrix_together_are_an_error(tmp_path):
    m = base()
    m["eval"]["base_models"] = True
    found = errors(tmp_path, m)
    assert "eval.base_models and eval.matrix are both set" in found[0].message
    assert found[0].location.line == line_of(tmp_path / "m.yaml", "base_models:")


def test_plan_counts_and_lists_the_cells(tmp_path):
    from cruijff.cli import cli

    m = base()
    model = tmp_path / "model"  # plan checks the folder's files (the model is built by commands, not shipped)
    model.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        (model / name).write_text("{}")
    m["models"]["tiny"]["path"] = str(model)
    path = write(tmp_path, m)
    result = CliRunner().invoke(cli, ["plan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    cells = out["cells"]
    assert len(cells) == 7 and sum(c["run"] is None for c in cells) == 2
    crossed = [c for c in cells if "cross_prompt" in c]
    assert [(c["run"], c["task"], c["cross_prompt"]) for c in crossed] == [
        ("tiny_words_r8_prompt-terse", "verbose-prompt", {"trained": "terse", "evaluated": "verbose"})]
    text = CliRunner().invoke(cli, ["plan", str(path)]).output
    assert "evaluation cells: 7 (5 of fine-tunes, 2 of base models)" in text
    assert "cross-prompt: trained with 'terse', evaluated with 'verbose'" in " ".join(text.split())


# --- 2. prompts as a grid axis -------------------------------------------------------------------

def test_each_run_trains_and_evaluates_with_its_own_prompt(tmp_path):
    from ruamel.yaml import YAML as Y

    m = base()
    del m["eval"]["matrix"]
    m["eval"]["tasks"] = m["eval"]["tasks"][:1]
    compiled = compile_(tmp_path, m)
    load = Y(typ="safe").load
    systems = {}
    for node in compiled.plan.nodes:
        if node.kind != "eval":
            continue
        trained = load(compiled.files[f"finetune/{node.attrs['run']}/finetune.yaml"])["dataset"]
        evaluated = load(compiled.files[f"{node.id}/task_config.yaml"])
        assert (trained["system"], trained["template"]) == (evaluated["system"], evaluated["template"])
        systems[node.attrs["grid"]["prompt"]] = evaluated["system"]
    assert systems == {"terse": None, "verbose": "Capitalize the word. Answer with the word alone."}


def test_an_evaluation_with_another_prompt_needs_cross_prompt(tmp_path):
    m = base()
    del m["eval"]["tasks"][1]["cross_prompt"]
    found = errors(tmp_path, m)
    assert len(found) == 1
    assert ("eval task 'verbose-prompt' evaluates run 'tiny_words_r8_prompt-terse', trained with prompt 'terse', "
            "with prompt 'verbose'") in found[0].message
    assert "cross_prompt: true" in found[0].hint
    assert found[0].location.line == line_of(tmp_path / "m.yaml", "prompt: verbose", after="name: verbose-prompt")
    # evaluating only the runs trained with that prompt is no cross-prompt evaluation
    m["eval"]["matrix"][0]["where"]["prompt"] = "verbose"
    compiled = compile_(tmp_path, m)
    assert not any("cross_prompt" in n.attrs for n in compiled.plan.nodes)


def test_a_task_prompt_override_replaces_only_its_keys(tmp_path):
    m = base()
    m["eval"]["tasks"][0]["prompt"] = {"template": "Capitalize {input}:"}
    m["eval"]["tasks"][0]["cross_prompt"] = True
    compiled = compile_(tmp_path, m)
    load = YAML(typ="safe").load
    cfg = load(compiled.files["eval/tiny_words_r8_prompt-verbose/epoch_1/capitalization/task_config.yaml"])
    assert (cfg["system"], cfg["template"]) == ("Capitalize the word. Answer with the word alone.", "Capitalize {input}:")
    node = compiled.plan.by_id()["eval/tiny_words_r8_prompt-verbose/epoch_1/capitalization"]
    assert node.attrs["cross_prompt"] == {"trained": "verbose", "evaluated": "capitalization.prompt"}
    assert "cross_prompt=true" in argv(compiled, node.id)  # --metadata cross_prompt=true, in the eval log


def test_unknown_prompt_variants_are_errors(tmp_path):
    m = base()
    m["grid"]["prompt"] = ["terse", "chatty"]
    found = errors(tmp_path, m)
    assert "grid.prompt names prompt 'chatty', which is not declared under prompts" in found[0].message
    assert found[0].location.line == line_of(tmp_path / "m.yaml", "chatty")


def test_a_text_completion_variant_with_a_system_prompt_is_an_error(tmp_path):
    m = base()
    m["prompts"]["verbose"]["style"] = "text_completion"
    found = errors(tmp_path, m)
    assert any("prompts.verbose has a system prompt" in p.message for p in found)


# --- 3. decoding settings ------------------------------------------------------------------------

def test_decoding_settings_reach_the_inspect_command_and_the_hash(tmp_path):
    compiled = compile_(tmp_path, base())
    sampled = argv(compiled, "eval/tiny_words_r4_prompt-terse/epoch_0/sampled")
    assert [flag(sampled, f) for f in ("--temperature", "--top-p", "--epochs", "--epochs-reducer")] == \
        ["0.7", "0.9", "3", "mode"]
    assert "do_sample: true" in compiled.files["eval/tiny_words_r4_prompt-terse/epoch_0/sampled/model_config.yaml"]
    greedy = argv(compiled, "eval/tiny_words_r8_prompt-terse/epoch_1/capitalization")
    assert flag(greedy, "--temperature") == "0" and "--top-p" not in greedy and "--epochs" not in greedy
    assert "do_sample: false" in compiled.files["eval/tiny_words_r8_prompt-terse/epoch_1/capitalization/model_config.yaml"]

    m = base()
    m["eval"]["max_connections"] = 4  # eval-wide; the task's own temperature beats nothing else
    m["eval"]["tasks"][2]["temperature"] = 0.5
    again = compile_(tmp_path, m)
    args = argv(again, "eval/tiny_words_r4_prompt-terse/epoch_0/sampled")
    assert flag(args, "--temperature") == "0.5" and flag(args, "--max-connections") == "4"
    old, new = compiled.plan.by_id(), again.plan.by_id()
    assert old["eval/tiny_words_r4_prompt-terse/epoch_0/sampled"].hash != new["eval/tiny_words_r4_prompt-terse/epoch_0/sampled"].hash
    assert old["finetune/tiny_words_r4_prompt-terse"].hash == new["finetune/tiny_words_r4_prompt-terse"].hash


@pytest.mark.parametrize("change, key, message", [
    ({"do_sample": True}, "do_sample", "samples (do_sample: true) but its temperature is not set"),
    ({"temperature": 0.7}, "temperature", "sets temperature 0.7 but decodes greedily"),
    ({"top_p": 0.5}, "top_p", "sets top_p but decodes greedily"),
    ({"reducer": "mode"}, "reducer", "sets a reducer but draws one sample per item"),
])
def test_inconsistent_decoding_is_an_error_at_its_key(tmp_path, change, key, message):
    m = base()
    m["eval"]["tasks"][0].update(change)
    found = errors(tmp_path, m)
    assert len(found) == 1 and message in found[0].message, found
    assert found[0].location.line == line_of(tmp_path / "m.yaml", f"{key}:", after="name: capitalization")


def test_where_matches_fixed_hyperparameters_too(tmp_path):
    m = base()
    m["eval"]["matrix"] = [{"where": {"epochs": 2, "lora_rank": 4}, "tasks": ["capitalization"], "epochs": "last"}]
    assert evals(compile_(tmp_path, m)) == ["eval/tiny_words_r4_prompt-terse/epoch_1/capitalization",
                                           "eval/tiny_words_r4_prompt-verbose/epoch_1/capitalization"]
