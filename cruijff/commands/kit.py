"""`cruijff import SUMMARY`: cruijff_kit's experiment_summary.yaml as a manifest on stdout."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import click

from cruijff.errors import Location, ManifestError, Problem

CHECKED_AS = "imported manifest"


def _checked(text: str, folder: Path) -> list[Problem]:
    """Validate the manifest text as `cruijff validate` would, as if saved in `folder` (relative paths
    are the design file's); problems point into the printed text."""
    from cruijff.compiler.pipeline import check

    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".cruijff-import-", suffix=".yaml",
                                     encoding="utf-8") as f:
        f.write(text)
        f.flush()
        try:
            check(Path(f.name), env=dict(os.environ))
        except ManifestError as e:
            return [replace(p, location=replace(p.location, file=CHECKED_AS) if p.location else Location(CHECKED_AS))
                    for p in e.problems]
    return []


@click.command("import")
@click.argument("summary", type=click.Path(dir_okay=False))
@click.option("--no-check", is_flag=True, help="Print the manifest even when it does not validate.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest text and the notes as JSON.")
def import_summary(summary: str, no_check: bool, as_json: bool) -> None:
    """Translate cruijff_kit's experiment_summary.yaml into a cruijff manifest (printed on stdout).

    Fields without an equivalent become comments; the manifest is validated before it is printed.
    """
    from cruijff.commands.compile import _fail
    from cruijff.compiler.kit_import import render, translate
    from cruijff.compiler.source import load

    try:
        if not Path(summary).is_file():
            raise ManifestError([Problem(f"no such file: {summary}", Location(summary),
                                         "pass cruijff_kit's experiment_summary.yaml")])
        imported = translate(load(summary))
    except ManifestError as e:
        _fail(e, as_json, "import")
        return
    text = render(imported, Path(summary).name)
    problems = [] if no_check else _checked(text, Path(summary).resolve().parent)
    if problems:
        _fail(ManifestError([*problems, Problem(
            "the imported manifest does not validate", hint="fix the design file, or print it anyway with "
            "--no-check and edit it")]), as_json, "import")
        return
    if as_json:
        from cruijff.commands.jsonout import emit

        emit("import", {"ok": True, "manifest": text, "notes": imported.notes})
        return
    click.echo(text, nl=False)
    if imported.notes:
        click.echo(f"{len(imported.notes)} field(s) without an equivalent: see the comments at the end", err=True)
