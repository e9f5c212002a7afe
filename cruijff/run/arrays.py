"""The job-array script `cruijff apply` writes under `<output_dir>/arrays/`.

Task t runs node t's own job.sbatch with bash, its output going to `<node dir>/slurm-<array>_<t>.out`
(where a plain job's `slurm-<id>.out` would be), so each node behaves the same in an array as
alone: same script, same record.jsonl (its job id is `<array id>_<t>`), same log place.
Node directories are passed through shlex.quote; the #SBATCH lines are the members' own.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from cruijff.compiler.render.sbatch import sbatch_path

ARRAYS_DIR = "arrays"


def array_script_path(root: str | Path, name: str) -> Path:
    """Where the array named `array/<kind>/<digest>` has its script: `<root>/arrays/<kind>-<digest>.sbatch`."""
    return Path(root) / ARRAYS_DIR / (name.removeprefix("array/").replace("/", "-") + ".sbatch")


def array_script(*, title: str, root: str, header: Sequence[str], log: str,
                 members: Sequence[tuple[int, str, str]]) -> str:
    """members: (task id, node directory relative to root, node hash)."""
    entries = " ".join(f"[{t}]={shlex.quote(node_dir)}" for t, node_dir, _ in members)
    hashes = " ".join(f"[{t}]={shlex.quote(node_hash)}" for t, _, node_hash in members)
    lines = [
        "#!/bin/bash",
        f"# {' '.join(title.split())}",
        "# Written by `cruijff apply`: task t runs the job script of node t below.",
        *header,
        f"#SBATCH --output={sbatch_path(log)}",
        "#SBATCH --open-mode=append",
        "",
        "set -eo pipefail",
        f"root={shlex.quote(root)}",
        f"nodes=({entries})",
        f"hashes=({hashes})  # each node's plan hash: apply recognises the tasks without state.db",
        'node="${nodes[$SLURM_ARRAY_TASK_ID]:-}"',
        'if [ -z "$node" ]; then',
        '  echo "cruijff: array task ${SLURM_ARRAY_TASK_ID:-?} has no node in $0" >&2',
        "  exit 2",
        "fi",
        'cd "$root/$node"',
        'exec bash job.sbatch >> "slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.out" 2>&1',
    ]
    return "\n".join(lines) + "\n"


def array_members(script_text: str) -> dict[int, tuple[str, str | None]]:
    """The inverse of array_script: task id -> (node directory, node hash)."""
    arrays: dict[str, dict[int, str]] = {"nodes": {}, "hashes": {}}
    for line in script_text.splitlines():
        name, sep, rest = line.partition("=(")
        if sep and name in arrays:
            body = rest.split(")  #", 1)[0].rstrip().removesuffix(")")
            for word in shlex.split(body):
                index, _, value = word.partition("=")
                if index.startswith("[") and index.endswith("]") and index[1:-1].isdigit():
                    arrays[name][int(index[1:-1])] = value
    return {t: (node_dir, arrays["hashes"].get(t)) for t, node_dir in arrays["nodes"].items()}


def array_root(script_text: str) -> str | None:
    """The plan directory an array script runs in (its `root=` line)."""
    for line in script_text.splitlines():
        if line.startswith("root="):
            words = shlex.split(line[len("root="):])
            return words[0] if words else None
    return None


def write_array_script(plan, batch) -> Path:
    """arrays/<kind>-<digest>.sbatch: written before its intent rows, so a retry finds it in place."""
    import os

    from cruijff.compiler.batching import header_shape

    root = Path(plan.output_dir)
    first = (root / batch.nodes[0].script).read_text()
    path = array_script_path(root, batch.name)
    text = array_script(
        title=f"{plan.experiment}: {len(batch.nodes)} {batch.kind} jobs as one job array",
        root=str(root), header=header_shape(first), log=str(path.with_suffix(".out")),
        members=[(t, n.dir, n.hash) for t, n in zip(batch.tasks, batch.nodes)],
    )
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
