"""An eval task's file, checked from its syntax tree: the @task function exists and takes what cruijff passes."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cruijff.errors import Problem
from cruijff.compiler.source import Source
from cruijff.compiler.validate import _choices_hint


def check_tasks(source: Source, m: dict[str, Any]) -> list[Problem]:
    """Each eval task's @task function exists and takes every argument cruijff passes it.

    Read from the file's syntax tree, never imported: planning must not run user code (nor import
    inspect-ai). inspect drops task arguments a function does not declare without a word, so a
    `def stance(data, split)` would be evaluated without the training prompt.
    """
    from cruijff.compiler.render.inspect import KIT_TASK, kit_task_config, task_config

    problems: list[Problem] = []
    trees: dict[str, ast.Module | Problem] = {}
    first = next(iter(m["datasets"].values()))
    for i, task in enumerate(m.get("eval", {}).get("tasks", [])):
        at_file, at_task = ["eval", "tasks", i, "file"], ["eval", "tasks", i, "task"]
        file, name = task["file"], task["task"]
        if not Path(file).exists() and not Path(file).parent.is_dir():  # its folder is not here either
            from cruijff.compiler.checks import unreachable

            problems.append(unreachable(source, m, f"eval task '{task['name']}': task file {file}", at_file,
                                        later="checked when the job starts"))
            continue
        if file not in trees:
            trees[file] = _parse_task_file(file)
        tree = trees[file]
        if isinstance(tree, Problem):
            problems.append(Problem(tree.message, source.locate(at_file), tree.hint))
            continue
        found = _task_function(tree, name)
        if found is None:
            defined = [f.name for f in tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
            problems.append(Problem(f"eval task '{task['name']}': {file} defines no function '{name}'",
                                    source.locate(at_task), _choices_hint(defined, name) if defined
                                    else "define it there as an @task function"))
            continue
        if found == "imported":
            continue  # re-exported from elsewhere: inspect will tell at run time
        if not _is_task(found, tree):
            problems.append(Problem(f"eval task '{task['name']}': {name} in {file} is not decorated with @task",
                                    source.locate(at_task), "add `@task` (from inspect_ai import task) above it; "
                                    "inspect finds only registered tasks"))
            continue
        dataset = m["datasets"].get(task.get("dataset", ""), first)
        args = found.args
        accepted = {a.arg for a in [*args.args, *args.kwonlyargs]}
        signature = task_signature(file, name)
        if signature.interface == KIT_TASK:
            passed = list(kit_task_config(dataset=dataset, prompt=m["prompt"], task=task, config_path="", label="",
                                          max_tokens=0, accepted=signature.accepted))
            problems += _kit_task_problems(source, m, i, task, name, file)
        else:
            passed = list(task_config(dataset=dataset, prompt=m["prompt"], task=task))
        missing = [p for p in passed if p not in accepted] if args.kwarg is None else []
        if missing:
            problems.append(Problem(
                f"eval task '{task['name']}': {name}() in {file} (line {found.lineno}) does not take "
                f"{', '.join(missing)}, which cruijff passes; inspect would drop them silently",
                source.locate(at_task),
                f"add {', '.join(f'{p}=None' for p in missing)} to its parameters (or **kwargs)"))
        positional = args.args
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        required = [a.arg for a, d in zip(positional, defaults) if d is None]
        required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
        unset = [p for p in required if p not in passed]
        if args.posonlyargs or unset:
            names = [a.arg for a in args.posonlyargs] or unset
            problems.append(Problem(
                f"eval task '{task['name']}': {name}() in {file} needs {', '.join(names)}, which cruijff does not pass"
                + (" (positional-only)" if args.posonlyargs else ""),
                source.locate(at_task), f"give it a default, or set it under eval.tasks[{i}].args"))
    return problems


@dataclass(frozen=True)
class TaskSignature:
    """What a task file's @task function takes: its interface (cruijff's or cruijff_kit's) and its
    parameters (None: it takes **kwargs)."""

    interface: str
    accepted: frozenset[str] | None


def task_signature(file: str, name: str) -> TaskSignature:
    """The interface of `name` in `file`, from its syntax tree (never imported): cruijff_kit's when
    it takes data_path and config_path but not data; cruijff's otherwise, and when the file cannot
    be read here (a task file on the cluster only: plan warned)."""
    from cruijff.compiler.render.inspect import CRUIJFF_TASK, KIT_REQUIRED, KIT_TASK

    key = (file, name, _mtime(file))
    if key not in _SIGNATURES:
        tree = _parse_task_file(file) if Path(file).is_file() else None
        found = _task_function(tree, name) if isinstance(tree, ast.Module) else None
        if not isinstance(found, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _SIGNATURES[key] = TaskSignature(CRUIJFF_TASK, None)
        else:
            args = found.args
            names = frozenset(a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs])
            kit = all(k in names for k in KIT_REQUIRED) and "data" not in names
            _SIGNATURES[key] = TaskSignature(KIT_TASK if kit else CRUIJFF_TASK,
                                             None if args.kwarg is not None else names)
    return _SIGNATURES[key]


_SIGNATURES: dict[tuple, TaskSignature] = {}


def _mtime(file: str) -> int | None:
    try:
        return Path(file).stat().st_mtime_ns
    except OSError:
        return None


def _kit_task_problems(source: Source, m: dict[str, Any], i: int, task: dict[str, Any], name: str,
                       file: str) -> list[Problem]:
    """A cruijff_kit task runs unchanged, so what it does with its arguments must give the training
    prompt: it reads a {split: [{input, output}]} JSON file (instruct_json), formats the template
    with str.format(input=...) and adds system_prompt as a system message even when it is ""."""
    problems = []
    where = source.locate(["eval", "tasks", i, "task"])
    what = f"eval task '{task['name']}': {name}() in {file} is a cruijff_kit task (data_path, config_path)"
    from cruijff.compiler.checkpoints import trainable_models
    from cruijff.compiler.expand import axes_of

    names = [task["dataset"]] if "dataset" in task else \
        axes_of(m["grid"], trainable_models(m), list(m["datasets"]))["dataset"]  # the grid's: what it runs on
    for ds_name in names:
        ds = m["datasets"].get(ds_name)
        if ds and ds["format"] != "instruct_json":
            problems.append(Problem(f"{what}; it reads instruct_json files, and dataset '{ds_name}' is {ds['format']}",
                                    where, "convert the data (`cruijff data convert`) or use a cruijff task "
                                    "(experiments/tasks/capitalization.py)"))
    template = m["prompt"]["template"]
    if template is not None:
        try:
            same = template.format(input="\0") == template.replace("{input}", "\0")
        except (IndexError, KeyError, ValueError):
            same = False
        if not same:
            problems.append(Problem(f"{what}; it fills prompt.template with str.format, which changes this "
                                    "template's other braces, so it would not be the training prompt",
                                    source.locate(["prompt", "template"]),
                                    "write the template without other braces, or use a cruijff task (it replaces "
                                    "{input} alone)"))
    system = m["prompt"]["system"] or ""
    if "{{" in system or "}}" in system:  # inspect's system_message formats it: {{ becomes {
        problems.append(Problem(f"{what}; its system message is formatted by inspect, which turns {{{{ and }}}} "
                                "into { and }, so it would not be the training system prompt",
                                source.locate(["prompt", "system"]), "write the system prompt without doubled braces"))
    if m["prompt"].get("style", "chat") == "chat" and not system:
        problems.append(Problem(f"{what}; it adds a system message even when prompt.system is empty, and "
                                "training has none: the prompt ids match only where the chat template renders "
                                "an empty system turn as none (Llama 3 does, ChatML such as SmolLM2 does not)",
                                where, "set prompt.system, or use a cruijff task (docs/cruijff_kit.md)",
                                severity="warning"))
    return problems


def _parse_task_file(file: str) -> ast.Module | Problem:
    path = Path(file)
    if not path.is_file():
        return Problem(f"eval task file {file} does not exist", hint="check the path (relative to the manifest's folder)")
    try:
        return ast.parse(path.read_bytes(), filename=file)
    except SyntaxError as e:
        return Problem(f"eval task file {file}:{e.lineno}:{e.offset}: Python syntax error: {e.msg}",
                       hint="fix the task file")
    except (OSError, ValueError, RecursionError, MemoryError) as e:
        return Problem(f"cannot read eval task file {file}: {e}", hint="check the file")


def _task_function(tree: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | str | None:
    """The module-level def of `name` (the last one wins, as in Python), 'imported', or None."""
    found: Any = None
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            found = stmt
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)) and any(
                (a.asname or a.name) == name for a in stmt.names):
            found = "imported"
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and any(
                isinstance(t, ast.Name) and t.id == name for t in getattr(stmt, "targets", [getattr(stmt, "target", None)])):
            found = "imported"
    return found


def _is_task(fn: ast.FunctionDef | ast.AsyncFunctionDef, tree: ast.Module) -> bool:
    """Decorated with inspect_ai's task: @task, @task(...), @inspect_ai.task or an alias of it."""
    aliases = {"task"} | {a.asname for s in tree.body if isinstance(s, ast.ImportFrom)
                          for a in s.names if a.name == "task" and a.asname}
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if (isinstance(target, ast.Name) and target.id in aliases) or \
                (isinstance(target, ast.Attribute) and target.attr == "task"):
            return True
    return False
