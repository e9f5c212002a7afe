"""Writing the imported manifest as YAML, with the notes as comments (ruamel, imported when called)."""

from __future__ import annotations

import os
from typing import Any

from cruijff.compiler.kit_import.mapping import Imported


def render(imported: Imported, source_name: str) -> str:
    """The manifest as YAML, with the notes as comments: remarks at their keys, the rest at the end."""
    from io import StringIO

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    def build(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            cm = CommentedMap()
            for k, v in value.items():
                cm[k] = build(v, (*path, k))
                if (*path, k) in imported.remarks:
                    cm.yaml_add_eol_comment(imported.remarks[(*path, k)], k)
            if len(path) >= 2 and path[0] == "grid" or path[:2] == ("eval", "tasks"):
                cm.fa.set_flow_style()
            return cm
        if isinstance(value, list):
            seq = CommentedSeq(build(v, path) for v in value)
            if all(not isinstance(v, (dict, list)) for v in value):
                seq.fa.set_flow_style()
            return seq
        if isinstance(value, str) and ":" in value and path[-1:] == ("time",):
            return DoubleQuotedScalarString(value)  # 01:00:00 is a number to YAML 1.1 readers
        return value

    yaml = YAML()
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    text = StringIO()
    yaml.dump(build(imported.manifest, ()), text)
    head = [f"# Imported from {source_name} by `cruijff import`.",
            "# Unset hyperparameters take cruijff's defaults, which are cruijff_kit's (docs/cruijff_kit.md).",
            "# Add a cluster: block (account, partition, env: {conda: ...}) for SLURM."]
    if imported.runs:
        head.append("# cruijff_kit run -> cruijff run:")
        head += [f"#   {kit} -> {ours}" for kit, ours in imported.runs.items()]
    tail = ["", "# Fields of the design file without an equivalent here:"] if imported.notes else []
    tail += [f"#   {n}" for n in imported.notes]
    return "\n".join(head) + "\n" + text.getvalue() + ("\n".join(tail) + "\n" if tail else "")


def rebase_paths(manifest: dict[str, Any], design_dir: str, out_dir: str | None) -> dict[str, Any]:
    """The manifest with its file paths (relative to the design file's folder, as cruijff_kit reads
    them) made to resolve from where it is saved: relative to out_dir, or absolute (out_dir None,
    for stdout, whose file may go anywhere). Paths with $VARIABLES or ~ are kept as written."""
    def moved(path: str) -> str:
        if "$" in path or path.startswith("~"):
            return path
        absolute = os.path.normpath(os.path.join(design_dir, path))
        if out_dir is None or os.path.isabs(path) or os.path.commonpath([absolute, out_dir]) == os.sep:
            return absolute  # nothing shared but the root: an absolute path says more
        return os.path.relpath(absolute, out_dir)

    m = {**manifest}
    if isinstance(m.get("output_dir"), str):
        m["output_dir"] = moved(m["output_dir"])
    for section in ("models", "datasets"):
        if isinstance(m.get(section), dict):
            m[section] = {k: {**v, "path": moved(v["path"])} if isinstance(v.get("path"), str) else v
                          for k, v in m[section].items()}
    if isinstance(m.get("models"), dict):  # an eval-only run's checkpoint folder, as a path
        m["models"] = {k: {**v, "checkpoint": moved(v["checkpoint"])} if isinstance(v.get("checkpoint"), str) else v
                       for k, v in m["models"].items()}
    if isinstance(m.get("eval"), dict) and isinstance(m["eval"].get("tasks"), list):
        m["eval"] = {**m["eval"], "tasks": [{**t, "file": moved(t["file"])} if isinstance(t.get("file"), str) else t
                                            for t in m["eval"]["tasks"]]}
    return m
