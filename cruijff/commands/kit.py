"""`cruijff import SUMMARY`: cruijff_kit's experiment_summary.yaml as a manifest on stdout."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import click

from cruijff.errors import Location, ManifestError, Problem

CHECKED_AS = "imported manifest"


def _checked(text: str, folder: Path) -> tuple[list[Problem], list[Problem]]:
    """Validate the manifest text as `cruijff validate` would, as if saved in `folder` (where its
    relative paths resolve from); (errors, warnings), pointing into the printed text."""
    from cruijff.compiler.pipeline import check

    def located(problems: list[Problem]) -> list[Problem]:
        return [replace(p, location=replace(p.location, file=CHECKED_AS) if p.location else Location(CHECKED_AS))
                for p in problems]

    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".cruijff-import-", suffix=".yaml",
                                     encoding="utf-8") as f:
        f.write(text)
        f.flush()
        try:
            warnings = check(Path(f.name), env=dict(os.environ)).warnings
        except ManifestError as e:
            return located(e.problems), located(e.warnings)
    return [], located(warnings)


@click.command("import")
@click.argument("summary", type=click.Path(dir_okay=False))
@click.option("--no-check", is_flag=True, help="Print the manifest even when it does not validate.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest text and the notes as JSON.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the manifest to FILE, its paths relative to FILE's folder (default: stdout, "
                   "with absolute paths, so it works wherever it is saved).")
def import_summary(summary: str, no_check: bool, as_json: bool, out: str | None) -> None:
    """Translate cruijff_kit's experiment_summary.yaml into a cruijff manifest (printed on stdout,
    or written to --out FILE).

    Fields without an equivalent become comments; the manifest is validated before it is printed.
    A task script or data file not reachable here (it lives on the cluster) is a warning, as in
    `cruijff plan`.
    """
    from cruijff.commands.compile import _fail
    from cruijff.compiler.kit_import import rebase_paths, render, translate
    from cruijff.compiler.source import load

    try:
        if not Path(summary).is_file():
            raise ManifestError([Problem(f"no such file: {summary}", Location(summary),
                                         "pass cruijff_kit's experiment_summary.yaml")])
        imported = translate(load(summary))
    except ManifestError as e:
        _fail(e, as_json, "import")
        return
    design_dir = Path(summary).resolve().parent
    out_dir = Path(out).resolve().parent if out else None
    if out_dir is not None and not out_dir.is_dir():
        _fail(ManifestError([Problem(f"--out {out}: its folder {out_dir} does not exist", Location(out),
                                     "create the folder first")]), as_json, "import")
        return
    imported = replace(imported, manifest=rebase_paths(imported.manifest, str(design_dir),
                                                       str(out_dir) if out_dir else None))
    text = render(imported, Path(summary).name)
    problems, warnings = ([], []) if no_check else _checked(text, out_dir or design_dir)
    if problems:
        _fail(ManifestError([*problems, Problem(
            "the imported manifest does not validate", hint="fix the design file, or print it anyway with "
            "--no-check and edit it")]), as_json, "import")
        return
    if out:
        Path(out).write_text(text, encoding="utf-8")
    if as_json:
        from cruijff.commands.jsonout import emit

        emit("import", {"ok": True, "manifest": text, "notes": imported.notes, "out": out,
                        "warnings": [w.as_dict() for w in warnings]})
        return
    for w in warnings:
        click.echo(str(w), err=True)
    if out:
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)
    if imported.notes:
        click.echo(f"{len(imported.notes)} field(s) without an equivalent: see the comments at the end", err=True)
