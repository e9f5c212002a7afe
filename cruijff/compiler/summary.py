"""What `cruijff plan` reports: counts, GPUs and GPU-hours per node kind, and the diff."""

from __future__ import annotations

from typing import Any, Callable

from cruijff.plan import NODE_KINDS, Plan, PlanDiff, PlanText


def plan_summary(plan: Plan, diff: PlanDiff | None) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {}
    for kind in NODE_KINDS:
        nodes = [n for n in plan.nodes if n.kind == kind]
        if nodes:
            kinds[kind] = {
                "jobs": len(nodes),
                "gpus": sum(n.resources.gpus for n in nodes),
                "gpu_hours": round(sum(n.resources.gpu_hours() for n in nodes), 2),
            }
    out: dict[str, Any] = {
        "experiment": plan.experiment,
        "output_dir": plan.output_dir,
        "jobs": len(plan.nodes),
        "kinds": kinds,
        "gpu_hours": round(sum(k["gpu_hours"] for k in kinds.values()), 2),
    }
    cells = evaluation_cells(plan)
    if cells:
        out["cells"] = cells
    if diff is not None:
        out["changes"] = {k: len(v) for k, v in diff.as_dict().items()}
    return out


def evaluation_cells(plan: Plan) -> list[dict[str, Any]]:
    """Every evaluation cell (the evaluation matrix): run, base model or checkpoint, epoch, task, and
    whether it evaluates a fine-tune with another prompt than its own (cross_prompt: trained, evaluated)."""
    from cruijff.plan import EVAL_KINDS

    out = []
    for n in plan.nodes:
        if n.kind not in EVAL_KINDS:
            continue
        a = n.attrs
        cell = {"node": n.id, "run": a.get("run"), "model": a["model"], "epoch": a.get("epoch"),
                "task": a["task"], "dataset": a["eval_dataset"], "kind": n.kind}
        if "cross_prompt" in a:
            cell["cross_prompt"] = a["cross_prompt"]
        out.append(cell)
    return out


def setting_changes(old: PlanText, new: Plan, files: dict[str, str],
                    read_old: Callable[[str], str | None]) -> dict[str, list[dict[str, Any]]]:
    """Per changed node, which of its settings changed (terraform plan's `~ attr: old → new`).

    files: the new plan's files (path relative to output_dir → text); read_old reads the previous
    plan's file at such a path (None when gone). Settings are the node's resources, its inputs
    (task file, dataset, recipe, cruijff code), the leaves of its rendered YAML configs, the lines
    of its job script, and which of its parents changed.
    """
    old_hash = old.hashes()
    new_hash = new.hashes()
    changed = {n.id for n in new.nodes if old_hash.get(n.id, n.hash) != n.hash}
    per_node: dict[str, list[str]] = {}
    for rel in files:
        node_id, _, name = rel.rpartition("/")
        if node_id in changed:
            per_node.setdefault(node_id, []).append(name)
    out: dict[str, list[dict[str, Any]]] = {}
    for node in new.nodes:
        if node.id not in changed:
            continue
        before = old.node(node.id)
        if before is None:  # its line in plan.json was edited by hand: what changed is not known
            continue
        changes: list[dict[str, Any]] = []

        def add(setting: str, a: Any, b: Any) -> None:
            changes.append({"setting": setting, "old": a, "new": b})

        for key, a, b in _changed_keys(before.resources.as_dict(), node.resources.as_dict()):
            add(f"resources.{key}", a, b)
        for key, a, b in _changed_keys(before.inputs, node.inputs):
            add(key, a, b)
        if before.parents != node.parents:
            add("parents", list(before.parents), list(node.parents))
        else:
            upstream = [p for p in node.parents if old_hash.get(p) != new_hash.get(p)]
            if upstream:
                add("upstream", None, upstream)
        for name in sorted(per_node.get(node.id, [])):
            rel = f"{node.id}/{name}"
            previous, text = read_old(rel), files[rel]
            if previous == text:
                continue
            if previous is None:
                add(name, None, "(new file)")
            elif name.endswith(".yaml"):
                for key, a, b in _changed_keys(_leaves(previous), _leaves(text)):
                    add(f"{name}:{key}", a, b)
            else:
                gone, came = _changed_lines(previous, text)
                add(name, gone, came)
        out[node.id] = changes
    return out


def _changed_keys(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    missing = object()
    keys = list(a) + [k for k in b if k not in a]
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k, missing) != b.get(k, missing)]


def _leaves(text: str) -> dict[str, str]:
    """A rendered YAML config as dotted keys → the value's text (a list's items joined).

    Read line by line, not parsed: our configs are block-style, one key per line (render/yaml), and
    a YAML parser costs milliseconds per file, minutes for a 5,000-job re-plan. Only for showing.
    """
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, dotted key) of the open mappings
    last: str | None = None
    for raw in text.splitlines():
        body = raw.lstrip(" ")
        if not body or body.startswith("#"):
            continue
        indent = len(raw) - len(body)
        if body.startswith("- ") or body == "-" or (": " not in body and not body.endswith(":")):
            if last is not None:  # a list item, or a line of a multi-line scalar
                extra = body[2:] if body.startswith("- ") else body
                out[last] = f"{out[last]}, {extra}" if out[last] else extra
            continue
        key, sep, value = body.partition(": ")
        if not sep:  # "key:" opens a mapping (or a list)
            key, value = body[:-1], ""
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = f"{stack[-1][1]}.{key}" if stack else key
        out[path] = value
        if value == "":
            stack.append((indent, path))
        last = path
    parents = {k.rsplit(".", 1)[0] for k in out if "." in k}
    return {k: v for k, v in out.items() if k not in parents}


def _changed_lines(a: str, b: str) -> tuple[list[str], list[str]]:
    old_lines, new_lines = a.splitlines(), b.splitlines()
    old_set, new_set = set(old_lines), set(new_lines)
    return [l for l in old_lines if l not in new_set], [l for l in new_lines if l not in old_set]


def describe_change(change: dict[str, Any], width: int = 40) -> str:
    """One setting's change, short: `optimizer.lr: 0.001 → 0.002`, `task file changed`."""
    setting, a, b = change["setting"], change["old"], change["new"]
    if setting in ("cruijff code", "recipe", "dataset", "task file"):
        return f"{setting} changed" if a and b else f"{setting} {'appeared' if b else 'gone'}"
    if setting == "upstream":
        return "a parent changed"
    if setting.endswith(".sbatch") and isinstance(a, list):
        if len(a) == 1 and len(b) == 1:
            return f"{setting}: {_short(a[0].strip(), width)} → {_short(b[0].strip(), width)}"
        if len(a) + len(b) <= 2:
            return f"{setting}: " + ", ".join([*(f"-{_short(x.strip(), width)}" for x in a),
                                               *(f"+{_short(x.strip(), width)}" for x in b)])
        return f"{setting}: {max(len(a), len(b))} line(s) changed"
    return f"{setting}: {_short(a, width)} → {_short(b, width)}"


def _short(value: Any, width: int) -> str:
    text = "unset" if value is None else str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def change_groups(details: dict[str, list[dict[str, Any]]]) -> list[tuple[list[str], list[str]]]:
    """Changed nodes grouped by what changed, biggest group first: [(node ids, descriptions)].

    A job script's lines follow from changed resources, so beside those they are not repeated.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for node_id, changes in details.items():
        resources = any(c["setting"].startswith("resources.") for c in changes)
        shown = [c for c in changes if not (resources and c["setting"].endswith(".sbatch"))]
        key = tuple(dict.fromkeys(describe_change(c) for c in shown)) or ("hash changed",)
        groups.setdefault(key, []).append(node_id)
    return sorted(((ids, list(key)) for key, ids in groups.items()), key=lambda g: -len(g[0]))
