"""`--only` selectors: a small table of selector kinds, as dbt's graph/selector_methods.py.

Syntax: `kind:PATTERN` or a bare PATTERN (a glob on the node id); several, comma-separated,
select their union; a `+` suffix adds every descendant (`run:lr_1e-4+`). Patterns are
shell globs (fnmatch), matched case-sensitively. A term that selects nothing is an error, never
an empty selection: `--only run:typo` must not apply (or cancel) nothing and exit 0.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Callable

from cruijff.errors import UsageError
from cruijff.plan import NODE_KINDS, Node, Plan


def _attr(name: str) -> Callable[[Node, str], bool]:
    def match(node: Node, pattern: str) -> bool:
        value = node.attrs.get(name)
        return value is not None and fnmatchcase(str(value), pattern)

    return match


def _kind(node: Node, pattern: str) -> bool:
    return fnmatchcase(node.kind, pattern)


def _id(node: Node, pattern: str) -> bool:
    return fnmatchcase(node.id, pattern)


# kind -> (matcher, help). `model:` matches the node's base model; `task:` its eval task.
SELECTORS: dict[str, tuple[Callable[[Node, str], bool], str]] = {
    "run": (_attr("run"), "fine-tune run name (and its evaluations)"),
    "model": (_attr("model"), "base model name"),
    "kind": (_kind, f"node kind: {', '.join(NODE_KINDS)}"),
    "task": (_attr("task"), "evaluation task name"),
    "id": (_id, "node id, e.g. 'eval/*/epoch_2/*'"),
}

SELECTOR_HELP = (
    "Select nodes: run:NAME, model:NAME, kind:finetune|eval|base_eval, task:NAME, id:GLOB or a "
    "bare glob on the node id; comma-separated = union; a trailing + adds descendants."
)


def _descendants(plan: Plan, ids: set[str]) -> set[str]:
    children = plan.children()
    out, stack = set(ids), list(ids)
    while stack:
        for child in children[stack.pop()]:
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def ancestors(plan: Plan, ids: set[str]) -> set[str]:
    """Every ancestor of these nodes (not the nodes themselves unless they are ancestors)."""
    by_id = plan.by_id()
    out: set[str] = set()
    stack = [p for i in ids for p in by_id[i].parents]
    while stack:
        node_id = stack.pop()
        if node_id not in out:
            out.add(node_id)
            stack.extend(by_id[node_id].parents)
    return out


def select(plan: Plan, expression: str | None) -> set[str]:
    """The node ids an `--only` expression selects; every node when it is None or empty."""
    if not expression:
        return {n.id for n in plan.nodes}
    selected: set[str] = set()
    for term in (t.strip() for t in expression.split(",")):
        if not term:
            continue
        with_descendants = term.endswith("+")
        body = term[:-1] if with_descendants else term
        kind, sep, pattern = body.partition(":")
        if not sep:
            kind, pattern = "id", body
            named, eq, value = body.partition("=")
            if eq and named in SELECTORS:
                raise UsageError(f"--only {expression!r}: {term!r} is not a selector",
                                 hint=f"write {named}:{value} (kind:PATTERN, with a colon)")
        if kind not in SELECTORS:
            raise UsageError(
                f"--only {expression!r}: unknown selector kind {kind!r}",
                hint=f"use one of {', '.join(k + ':' for k in SELECTORS)} or a bare glob on the node id",
            )
        if not pattern:
            raise UsageError(f"--only {expression!r}: selector {term!r} has no pattern")
        if kind == "kind" and not any(fnmatchcase(k, pattern) for k in NODE_KINDS):
            raise UsageError(f"--only {expression!r}: no node kind matches {pattern!r}",
                             hint=f"kinds are {', '.join(NODE_KINDS)}")
        matcher = SELECTORS[kind][0]
        hits = {n.id for n in plan.nodes if matcher(n, pattern)}
        if not hits:
            raise UsageError(f"--only {expression!r}: {term!r} matches no node of this plan",
                             hint=existing(plan))
        selected |= _descendants(plan, hits) if with_descendants else hits
    return selected


def existing(plan: Plan, shown: int = 5) -> str:
    """What a selector could name in this plan, a few of each, so a typo can be fixed at once."""
    parts = []
    for name in ("run", "model", "task"):
        values = list(dict.fromkeys(str(n.attrs[name]) for n in plan.nodes if n.attrs.get(name) is not None))
        if values:
            more = f" (+{len(values) - shown} more)" if len(values) > shown else ""
            parts.append(f"{name}:{{{','.join(values[:shown])}}}{more}")
    kinds = list(dict.fromkeys(n.kind for n in plan.nodes))
    parts.append(f"kind:{{{','.join(kinds)}}}")
    return "this plan has " + "; ".join(parts) + " — or a glob on the node id, e.g. 'eval/*/epoch_0/*'"
