"""Do the training rows fit max_seq_len? Measured at plan time with the model's real tokenizer.

A run whose every answer is cut by truncation trains on nothing (NaN loss, a "done" job); the
recipe stops such a run at setup, but only once it has a GPU. `plan` finds it first where it can:
for each run whose model folder holds a tokenizer here and whose dataset file exists here (a
dataset a prepare job generates does not exist yet: skipped quietly), the exact `tokenizer:` and
`dataset:` components its finetune.yaml renders are measured by `python -m cruijff.train.measure`
in a subprocess (plan never imports torch or transformers). No row keeping an answer token is an
error at max_seq_len's file:line:col; some rows cut (or left with no answer) is a warning with
counts. Runs that share model, dataset, prompt and max_seq_len are measured once, and results
are cached in the plan directory (CACHE_FILE), keyed by the tokenizer files, the dataset's
content fingerprint, the components and the training code, so an unchanged re-plan starts no
subprocess. A measurement that cannot run is a warning that says why, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cruijff.compiler.cells import run_prompt
from cruijff.compiler.checks import hyperparameters_of
from cruijff.compiler.expand import Run
from cruijff.compiler.inputs import code_digest, fingerprint
from cruijff.compiler.render.torchtune import dataset_component, tokenizer_component
from cruijff.compiler.source import Source
from cruijff.errors import Problem
from cruijff.plan import FINETUNE

CACHE_FILE = ".cruijff-token-fit.json"
CACHE_VERSION = 1
MEASURE_MODULE = "cruijff.train.measure"
TIMEOUT_S = 600
# The files AutoTokenizer reads from a model folder (config.json names the class when the
# tokenizer config does not); the weights are not among them.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                   "config.json")
FIX = "or shorten the prompt (prompt.template, prompt.system) or the inputs"

Runner = Callable[[list[dict[str, Any]]], dict[str, Any]]


class MeasureFailed(Exception):
    """The measuring subprocess did not answer; its reason becomes a warning."""


@dataclass
class Combo:
    """One distinct (model, dataset, prompt, max_seq_len) to measure, and the runs that share it."""

    key: str
    request: dict[str, Any]
    model: str
    dataset: str
    max_seq_len: int
    where: list[Any]  # manifest path of this combination's max_seq_len
    runs: list[str] = field(default_factory=list)


# How each warning of a measurement that failed begins: a plan with one is not stamped as final
# (compiler/replan), so the next plan measures again.
NOT_MEASURED = "could not measure"

def has_tokenizer(model_dir: str) -> bool:
    return any(os.path.isfile(os.path.join(model_dir, f)) for f in TOKENIZER_FILES[:3])


def _tokenizer_fingerprint(model_dir: str) -> dict[str, str]:
    return {f: fingerprint(os.path.join(model_dir, f)) for f in TOKENIZER_FILES
            if os.path.exists(os.path.join(model_dir, f))}


def _len_path(source: Source, m: dict[str, Any], run: Run) -> list[Any]:
    """Where this run's max_seq_len is written: a grid value, an include entry, or the hyperparameters."""
    value = run.values.get("max_seq_len")
    grid = m["grid"]
    for i, entry in enumerate(grid.get("include", [])):
        if "max_seq_len" in entry and all(run.values.get(k) == v for k, v in entry.items()
                                          if not isinstance(v, list)):
            return ["grid", "include", i, "max_seq_len"]
    if "max_seq_len" in grid and value in grid["max_seq_len"]:
        return ["grid", "max_seq_len", grid["max_seq_len"].index(value)]
    return ["finetune", "hyperparameters", "max_seq_len"]


def combos(source: Source, m: dict[str, Any], runs: list[Run]) -> list[Combo]:
    """The measurable combinations, each once; runs whose model or data is not here are left out."""
    out: dict[str, Combo] = {}
    code = None
    seen: dict[tuple[Callable[[str], Any], str], Any] = {}  # a grid of 1,000 runs looks at each file once

    def once(path: str, digest: Callable[[str], Any]) -> Any:
        if (digest, path) not in seen:
            seen[digest, path] = digest(path)
        return seen[digest, path]

    for run in runs:
        model, ds = m["models"][run.model], m["datasets"][run.dataset]
        if "generate" in ds or not once(ds["path"], os.path.isfile) or not once(model["path"], has_tokenizer):
            continue
        hp = hyperparameters_of(m, run)
        tokenizer = tokenizer_component(model, hp)
        prompt = run_prompt(m, run)  # the run's own prompt variant (grid.prompt), else prompt
        datasets = {"train": dataset_component(ds, ds["splits"]["train"], prompt, hp)}
        if ds["splits"].get("validation"):
            datasets["validation"] = dataset_component(ds, ds["splits"]["validation"], prompt, hp)
        request = {"tokenizer": tokenizer, "datasets": datasets}
        code = code or code_digest(FINETUNE)
        what = {"version": CACHE_VERSION, "request": request, "code": code,
                "tokenizer files": once(os.path.join(model["path"], ""), _tokenizer_fingerprint),
                "data": once(ds["path"], fingerprint)}
        key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]
        if key not in out:
            out[key] = Combo(key, {"key": key, **request}, run.model, run.dataset, tokenizer["max_seq_len"],
                             _len_path(source, m, run))
        out[key].runs.append(run.name)
    return list(out.values())


def check_token_fit(source: Source, m: dict[str, Any], runs: list[Run], *, cache: dict[str, Any],
                    runner: Runner | None = None) -> tuple[list[Problem], dict[str, Any]]:
    """Problems, and the cache entries to keep (the combinations measured now or found cached)."""
    todo = combos(source, m, runs)
    if not todo:
        return [], {}
    missing = [c for c in todo if c.key not in cache]
    results = {c.key: cache[c.key] for c in todo if c.key in cache}
    problems: list[Problem] = []
    if missing:
        try:
            answer = (runner or run_measure)([c.request for c in missing])
            results.update({c.key: answer[c.key] for c in missing if c.key in answer})
        except MeasureFailed as e:
            c = missing[0]
            problems.append(Problem(f"{NOT_MEASURED} whether the training rows fit max_seq_len: {e}",
                                    source.locate(["models", c.model, "path"]),
                                    "plan goes on; `cruijff data stats DATASET --model DIR --max-seq-len N` "
                                    "measures by hand", severity="warning"))
    for c in todo:
        if c.key in results:
            problems += _problems(source, c, results[c.key])
    keep = {k: v for k, v in results.items() if "error" not in v}
    return problems, keep


def _who(c: Combo) -> str:
    more = len(c.runs) - 1
    return f"run '{c.runs[0]}'" + (f" (and {more} more)" if more else "")


def _problems(source: Source, c: Combo, result: dict[str, Any]) -> list[Problem]:
    if "error" in result:
        return [Problem(f"{NOT_MEASURED} the token lengths of dataset '{c.dataset}' with model '{c.model}''s "
                        f"tokenizer: {result['error']}", source.locate(["datasets", c.dataset, "path"]),
                        "training builds the same tokenizer and dataset: fix this before apply", severity="warning")]
    out = []
    where = source.locate(c.where)
    for role, s in result["splits"].items():
        rows, empty, cut, longest = s["rows"], s["empty"], s["truncated"], s["longest"]
        of = (f"the {role} split '{s['split']}' of dataset '{c.dataset}' with model '{c.model}''s tokenizer and "
              f"chat template")
        raise_to = f"raise max_seq_len to {longest} (the longest prompt + answer), {FIX}"
        if rows and empty == rows:
            out.append(Problem(f"{_who(c)} would train on no token: with max_seq_len {c.max_seq_len}, every one of "
                               f"the {rows} rows of {of} loses its whole answer to truncation", where, raise_to))
        elif empty or cut:
            lost = (f"; {empty} of them keep no answer token and add nothing to the loss (rows "
                    f"{', '.join(map(str, s['empty_rows']))}{', ...' if empty > len(s['empty_rows']) else ''})"
                    if empty else "")
            out.append(Problem(f"{_who(c)}: {cut} of the {rows} rows of {of} are longer than max_seq_len "
                               f"{c.max_seq_len} and are truncated{lost}", where, raise_to, severity="warning"))
    return out


def run_measure(requests: list[dict[str, Any]]) -> dict[str, Any]:
    """Measure in a fresh interpreter (torch, transformers), offline; its JSON answer by key."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    try:
        proc = subprocess.run([sys.executable, "-m", MEASURE_MODULE], input=json.dumps({"requests": requests}),
                              capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise MeasureFailed(f"it took longer than {TIMEOUT_S} s") from None
    except OSError as e:
        raise MeasureFailed(str(e)) from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise MeasureFailed(f"{MEASURE_MODULE} exited with {proc.returncode}: {lines[-1] if lines else 'no message'}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])["results"]
    except (IndexError, ValueError, KeyError, TypeError):
        raise MeasureFailed(f"{MEASURE_MODULE} gave no readable answer") from None


def read_cache(output_dir: str) -> dict[str, Any]:
    try:
        data = json.loads((Path(output_dir) / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def cache_text(entries: dict[str, Any]) -> str:
    return json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True) + "\n"
