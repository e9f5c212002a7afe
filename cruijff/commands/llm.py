"""`cruijff embed`, `cruijff logits`, `cruijff check-finetuned` (need the [train,kit] extras)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from cruijff.data.formats import FORMATS as _FORMATS
from cruijff.commands.prompt_options import template_options
from cruijff.errors import CruijffError, UsageError

_POOLING = ("mean", "median", "max", "first", "last", "last_non_padding")  # = cruijff.llm.POOLING_MODES
_DTYPES = ("auto", "float32", "bfloat16", "float16")


def _model_options(f: Callable) -> Callable:
    for opt in reversed([
        click.option("--device", default="auto", show_default=True, help="cuda, mps, cpu or auto (cuda > mps > cpu)."),
        click.option("--dtype", type=click.Choice(_DTYPES), default="auto", show_default=True,
                     help="auto: bfloat16/float16 on GPU, float32 on CPU."),
    ]):
        f = opt(f)
    return f


def _dataset_options(f: Callable) -> Callable:
    opts = [
        click.argument("data", type=click.Path(exists=True)),
        click.option("--model", "model", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Base or merged model directory, or a PEFT adapter directory (its base is looked up)."),
        click.option("--adapter", type=click.Path(exists=True, file_okay=False),
                     help="PEFT adapter directory to put on --model."),
        click.option("--format", "fmt", type=click.Choice(_FORMATS), default=None,
                     help="Dataset format (default: detected from the path)."),
        click.option("--split", default="test", show_default=True, help="Dataset split to run."),
        click.option("--out", required=True, type=click.Path(dir_okay=False), help="HDF5 file to write."),
        click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1)),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N rows."),
        click.option("--chat-template/--no-chat-template", default=True, show_default=True,
                     help="Wrap prompts in the tokenizer's chat template (with the generation prompt)."),
        click.option("--system", default=None, help="System prompt."),
        click.option("--preprompt", default=None, help="Text prepended to the user turn."),
        click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON object."),
    ]
    f = template_options(f)
    for opt in reversed(opts):
        f = opt(f)
    return _model_options(f)


def _quiet() -> None:
    """transformers' per-load progress bars would interleave with ours (and with --json)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _prepare(data: str, fmt: str | None, split: str, limit: int | None, model: str, adapter: str | None,
             device: str, dtype: str, settings, as_json: bool = False) -> tuple[Any, list[str], list[str], dict[str, Any]]:
    """Read the split, load the model and render the prompts; returns (loaded, ids, texts, attrs)."""
    from cruijff.data.formats import detect_format, read_split
    from cruijff.llm import load_model, prompt_texts, row_id

    fmt = fmt or detect_format(data)
    rows = read_split(data, fmt, split)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise UsageError(f"split {split!r} of {data} has no rows")
    ids = [row_id(r, i) for i, r in enumerate(rows)]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise UsageError(f"split {split!r} of {data} repeats the row id {dup!r}",
                         hint="row `id` fields must be unique (rows without one are numbered)")
    _quiet()  # after the data is read: a wrong split fails before transformers loads
    lm = load_model(model, adapter, device=device, dtype=dtype)
    for note in lm.notes:
        click.echo(f"note: {note}", err=True)
    texts = prompt_texts(lm.tokenizer, rows, settings)
    attrs = {**lm.describe(), "data": str(Path(data).resolve()), "format": fmt, "split": split,
             "rows": len(rows), **settings.as_attrs()}
    return lm, ids, texts, attrs


def _run_with_progress(total: int, what: str, fn: Callable[[Callable[[int], None]], Any], quiet: bool = False) -> Any:
    if quiet:  # --json: stdout holds the answer alone, stderr no bar
        return fn(lambda n: None)
    from cruijff.commands import draw

    with draw.progress(total, what) as advance:
        return fn(advance)


def _written(kind: str, as_json: bool, out: str, arrays: dict[str, Any], attrs: dict[str, Any], text: str) -> None:
    """What embed/logits wrote: one line, or with --json the `cruijff.<kind>` object."""
    if as_json:
        from cruijff.commands.jsonout import emit

        emit(kind, {"ok": True, "out": out, "rows": int(attrs["rows"]),
                    "arrays": {k: list(v.shape) for k, v in arrays.items()},
                    "attrs": {k: v for k, v in attrs.items() if isinstance(v, (str, int, float, bool, list, type(None)))}})
    else:
        click.echo(text)


@click.command("embed")
@_dataset_options
@click.option("--layer", default=-1, show_default=True,
              help="Hidden-state layer: 0 = embeddings, 1..L = decoder layers, negative counts from the end.")
@click.option("--pooling", type=click.Choice(_POOLING), default="mean", show_default=True,
              help="first = first real token; last = last position; last_non_padding = last real token.")
def embed(data, model, adapter, fmt, split, out, batch_size, limit, chat_template, system, preprompt, as_json,
          template, device, dtype, layer, pooling) -> None:
    """Pool one layer's hidden states for every prompt of a DATA split into an HDF5 file."""
    from cruijff.commands.jsonout import errors
    from cruijff.llm import PromptSettings, embeddings, save_tensors, select_layer

    with errors("embed", as_json):
        settings = PromptSettings(chat_template, system, preprompt, template)
        lm, ids, texts, attrs = _prepare(data, fmt, split, limit, model, adapter, device, dtype, settings, as_json)
        select_layer(tuple(range(lm.model.config.get_text_config().num_hidden_layers + 1)), layer)  # fail early
        values = _run_with_progress(len(texts), "embed", lambda progress: embeddings(
            lm.model, lm.tokenizer, texts, layer=layer, pooling=pooling, add_special_tokens=not chat_template,
            batch_size=batch_size, progress=progress), quiet=as_json)
        attrs |= {"kind": "embeddings", "layer": layer, "pooling": pooling}
        save_tensors(out, ids, {"embeddings": values}, attrs)
    _written("embed", as_json, out, {"embeddings": values}, attrs,
             f"wrote {values.shape[0]} × {values.shape[1]} embeddings (layer {layer}, {pooling}) to {out}")


@click.command("logits")
@_dataset_options
@click.option("--answers", default=None,
              help='Comma-separated answer strings, e.g. "0,1": keep only their (first) tokens and add '
                   "probabilities normalised over them. Spaces are kept as typed.")
@click.option("--answer-ids", default=None, help='Comma-separated token ids instead of --answers, e.g. "15,16".')
@click.option("--base", type=click.Path(exists=True, file_okay=False), default=None,
              help="The base model of the --model adapter (as check-finetuned's --base), when the adapter "
                   "does not name it.")
def logits(data, model, adapter, fmt, split, out, batch_size, limit, chat_template, system, preprompt, as_json,
           template, device, dtype, answers, answer_ids, base) -> None:
    """Next-token logits after every prompt of a DATA split, to an HDF5 file."""
    from cruijff.commands.jsonout import errors

    with errors("logits", as_json):
        _logits(data, model, adapter, fmt, split, out, batch_size, limit, chat_template, system, preprompt,
                as_json, template, device, dtype, answers, answer_ids, base)


def _logits(data, model, adapter, fmt, split, out, batch_size, limit, chat_template, system, preprompt, as_json,
            template, device, dtype, answers, answer_ids, base) -> None:
    from cruijff.llm import PromptSettings, answer_token_ids, next_token_logits, save_tensors

    if base is not None:
        if adapter is not None:
            raise UsageError("give --base with an adapter as --model, or --model BASE --adapter ADAPTER, not both")
        model, adapter = base, model

    if answers is not None and answer_ids is not None:
        raise UsageError("give --answers or --answer-ids, not both")
    chosen: list[str | int] | None = None
    if answers is not None:
        chosen = [a for a in answers.split(",") if a != ""]
    elif answer_ids is not None:
        try:
            chosen = [int(a) for a in answer_ids.split(",") if a.strip()]
        except ValueError:
            raise UsageError(f"--answer-ids must be integers, got {answer_ids!r}") from None
    if chosen is not None and not chosen:
        raise UsageError("--answers/--answer-ids is empty")
    settings = PromptSettings(chat_template, system, preprompt, template)
    lm, ids, texts, attrs = _prepare(data, fmt, split, limit, model, adapter, device, dtype, settings, as_json)
    token_ids = answer_token_ids(lm.tokenizer, chosen) if chosen is not None else None  # fail early
    result = _run_with_progress(len(texts), "logits", lambda progress: next_token_logits(
        lm.model, lm.tokenizer, texts, answers=token_ids, add_special_tokens=not chat_template,
        batch_size=batch_size, progress=progress), quiet=as_json)
    arrays = {"logits": result.logits}
    attrs["kind"] = "logits"
    if token_ids is not None:
        arrays["probs"] = result.probs
        attrs |= {"answers": [str(a) for a in chosen], "answer_token_ids": token_ids,
                  "answer_tokens": lm.tokenizer.convert_ids_to_tokens(token_ids)}
    save_tensors(out, ids, arrays, attrs)
    cols = "answers " + ", ".join(f"{a!r}→{t}" for a, t in zip(chosen, token_ids)) \
        if token_ids is not None else "the full vocabulary"
    _written("logits", as_json, out, arrays, attrs, f"wrote logits of {result.logits.shape[0]} rows over {cols} to {out}")


@click.command("check-finetuned")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--base", "base", type=click.Path(exists=True, file_okay=False), default=None,
              help="Base model directory (default for an adapter: its adapter_config.json base).")
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Prompts to compare outputs on: one per line, a JSON list, or JSONL {input: ...}.")
@click.option("--atol", default=0.0, show_default=True, help="A weight differs when max |Δ| exceeds this.")
@click.option("--logits-atol", default=1e-4, show_default=True, help="Outputs differ when logits max |Δ| exceeds this.")
@click.option("--outputs/--no-outputs", default=True, show_default=True, help="Also compare logits and generations.")
@click.option("--max-new-tokens", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--chat-template/--no-chat-template", default=None,
              help="Wrap prompts in the chat template (default: when the tokenizer has one).")
@click.option("--top", default=20, show_default=True, help="Tensors shown in the table (0 = all).")
@click.option("--expect", type=click.Choice(["differs", "identical"]), default=None,
              help="Exit with status 1 unless the verdict is this.")
@click.option("--json", "as_json", is_flag=True, help="Print the full comparison as JSON.")
@_model_options
def check_finetuned(model_dir, base, prompts, atol, logits_atol, outputs, max_new_tokens, chat_template, top,
                    expect, as_json, device, dtype) -> None:
    """Compare a saved adapter or merged MODEL_DIR with its base: weights and outputs."""
    from cruijff.llm import check_finetuned as run_check
    from cruijff.llm import read_prompts

    from cruijff.commands import draw
    from cruijff.commands.jsonout import emit, errors

    _quiet()
    with errors("check_finetuned", as_json):
        cmp = run_check(model_dir, base, prompts=read_prompts(prompts), atol=atol, logits_atol=logits_atol,
                        outputs=outputs, chat_template=chat_template, max_new_tokens=max_new_tokens,
                        device=device, dtype=dtype)
    if as_json:
        data = cmp.as_dict()
        data["checkpoint"] = data.pop("kind")  # adapter | full; `kind` names the JSON object
        emit("check_finetuned", data)
    else:
        draw.comparison(cmp, top)
    if expect is not None and cmp.verdict != expect:
        raise CruijffError(f"expected {expect!r}, but the verdict is {cmp.verdict!r}")
