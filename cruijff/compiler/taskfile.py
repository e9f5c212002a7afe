"""An eval task's file, checked from its syntax tree: the @task function exists and takes what cruijff passes."""

from __future__ import annotations

import ast
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
    from cruijff.compiler.render.inspect import task_config

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
        passed = list(task_config(dataset=dataset, prompt=m["prompt"], task=task))
        args = found.args
        accepted = {a.arg for a in [*args.args, *args.kwonlyargs]}
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
