"""`cruijff eval CHECKPOINT --task FILE@NAME`: evaluate any model folder or epoch folder outside a plan.

Not a second evaluation path: the options become a one-model manifest (cruijff.compiler.standalone,
the checkpoint as `models.<name>.checkpoint`), written into the output folder, planned and applied
like any other, so the job is a plan's `checkpoint_eval` node: the same rendered files, prompt
rules and scores, and `cruijff status`/`report` read the folder afterwards.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from cruijff.data.formats import MANIFEST_FORMATS, TEXT
from cruijff.errors import ExitCode, ManifestError

MANIFEST_FILE = "eval.manifest.yaml"  # the manifest `cruijff eval` wrote (plan writes manifest.yaml, resolved)


@click.command("eval")
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.option("--task", "tasks", multiple=True, required=True, metavar="FILE@NAME",
              help="An inspect task: its file and @task function (repeat for several).")
@click.option("--data", default=None, metavar="FILE",
              help="Dataset to evaluate on (default: the one an epoch folder of a plan was trained on).")
@click.option("--format", "fmt", type=click.Choice([f for f in MANIFEST_FORMATS if f != TEXT]), default=None,
              help="The dataset's format (default: the training one, else instruct_json).")
@click.option("--split", default=None, help="Split to evaluate (default: test).")
@click.option("--template", default=None, help="Prompt template with {input} (default: what trained it, else none).")
@click.option("--system", default=None, help="System prompt (default: what trained it, else none).")
@click.option("--style", type=click.Choice(["chat", "text_completion"]), default=None,
              help="How the prompt reaches the model (default: what trained it, else chat).")
@click.option("--family", default=None, help="Model family: sets the job's resources (default: the plan's, else custom).")
@click.option("--name", default=None, help="Name of the model in the plan (default: <run>_epoch_<n> or the folder's name).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Plan folder for the evaluation (default: ./cruijff-eval/<name>).")
@click.option("--slurm", is_flag=True, help="Submit one SLURM job per task instead of running here.")
@click.option("--limit", type=int, default=None, help="Evaluate only the first N samples.")
@click.option("--max-tokens", type=int, default=None, help="Most tokens generated per answer (default 20).")
@click.option("--seed", type=int, default=None, help="Generation seed (default 14).")
@click.option("--gpus", type=int, default=None, help="GPUs per job.")
@click.option("--mem", default=None, help="Memory per job (SLURM syntax, e.g. 32G).")
@click.option("--time", "time_", default=None, help="Time limit per job (HH:MM:SS).")
@click.option("--partition", default=None, help="SLURM partition.")
@click.option("--account", default=None, help="SLURM account.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def evaluate(checkpoint: str, tasks: tuple[str, ...], data: str | None, fmt: str | None, split: str | None,
             template: str | None, system: str | None, style: str | None, family: str | None, name: str | None,
             out: str | None, slurm: bool, limit: int | None, max_tokens: int | None, seed: int | None,
             gpus: int | None, mem: str | None, time_: str | None, partition: str | None, account: str | None,
             as_json: bool) -> None:
    """Evaluate CHECKPOINT (a merged model or PEFT adapter folder, or an epoch folder of a plan) on
    inspect tasks, here or as SLURM jobs, with the prompt it was trained with and a plan's scores.

    An epoch folder of a plan (`<plan>/finetune/<run>/epoch_<n>`) brings its run's dataset, prompt
    template, system prompt and style, and the plan's model family and cluster settings; any other
    folder needs --data (and --template/--system for the prompt it learned). The folder --out holds
    the plan: `cruijff status` and `cruijff report` read it afterwards.
    """
    from cruijff.commands.compile import _fail
    from cruijff.commands.jsonout import emit, errors
    from cruijff.compiler.pipeline import compile_manifest
    from cruijff.compiler.render.yaml import dump_yaml
    from cruijff.compiler.standalone import eval_manifest, safe_name, trained_with
    from cruijff.compiler.write import write_plan

    with errors("eval", as_json):
        trained = trained_with(checkpoint)
        label = name or (f"{trained.run}_epoch_{trained.epoch}" if trained else Path(checkpoint).resolve().name)
        out_dir = Path(out or Path("cruijff-eval") / safe_name(label)).resolve()
        resources = {k: v for k, v in (("gpus", gpus), ("mem", mem), ("time", time_)) if v is not None}
        if not slurm and gpus is None and shutil.which("nvidia-smi") is None:  # runs here, and here has no GPU
            resources["gpus"] = 0
            if not as_json:
                click.echo("no GPU here (no nvidia-smi): evaluating on the CPU (--gpus 0)", err=True)
        cluster = {k: v for k, v in (("partition", partition), ("account", account)) if v is not None}
        manifest = eval_manifest(checkpoint, tasks=list(tasks), out=str(out_dir), slurm=slurm, data=data, format=fmt,
                                 split=split, template=template, system=system, style=style, family=family,
                                 name=name, limit=limit, max_tokens=max_tokens, seed=seed, resources=resources,
                                 cluster=cluster, trained=trained)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / MANIFEST_FILE
        path.write_text(dump_yaml(manifest, header=[f"Written by `cruijff eval {checkpoint}`."]), encoding="utf-8")
        try:
            compiled = compile_manifest(path)
        except ManifestError as e:
            _fail(e, as_json, "eval")
        write_plan(compiled.plan, compiled.files)
        for w in compiled.checked.warnings:
            if not as_json:
                click.echo(str(w), err=True)
        result = _apply(compiled.plan, slurm)
        scores = _scores(compiled.plan) if not slurm else {}
    data_out = {"ok": result.ok, "out": str(out_dir), "manifest": str(path), "executor": result.executor,
                "trained_with": ({"run": trained.run, "epoch": trained.epoch} if trained else None),
                "nodes": {n.id: {"state": result.final.get(n.id), "job_id": dict(result.submitted).get(n.id),
                                 **({"score": scores[n.id]} if n.id in scores else {})}
                          for n in compiled.plan.nodes}}
    if as_json:
        emit("eval", data_out)
    else:
        _draw(data_out, slurm)
    if not result.ok:
        sys.exit(int(ExitCode.FAILURE))


def _apply(plan, slurm: bool):
    from cruijff.run.apply import apply
    from cruijff.run.executors.select import make_executor

    return apply(plan, make_executor("slurm" if slurm else "local", plan))


def _scores(plan) -> dict[str, dict]:
    """Each evaluation's headline and every metric of its latest successful log."""
    from cruijff.results.scores import read_scores

    out = {}
    for n in plan.nodes:
        ok = [s for s in read_scores(Path(plan.output_dir) / n.id / "logs") if s.status == "success"]
        if ok:
            out[n.id] = {"headline": ok[-1].headline, "metrics": ok[-1].metrics, "samples": ok[-1].samples,
                         "log": str(ok[-1].path)}
    return out


def _draw(data: dict, slurm: bool) -> None:
    if data["trained_with"]:
        t = data["trained_with"]
        click.echo(f"prompt and data of run {t['run']} (epoch {t['epoch']}), from its finetune.yaml")
    for node, info in data["nodes"].items():
        line = f"{node}: {info['state']}"
        if info.get("job_id"):
            line += f" (job {info['job_id']})"
        score = info.get("score")
        if score and score["headline"]:
            metric, value = score["headline"]
            line += f"  {metric} = {value:.4g} over {score['samples']} samples"
        click.echo(line)
    click.echo(f"plan: {data['out']}" + ("  (follow it with `cruijff status " + data["out"] + "`)" if slurm else ""))
