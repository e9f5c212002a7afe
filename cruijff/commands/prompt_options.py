"""`--template` / `--template-file`: a prompt template on the command line means what it means in a manifest.

In a manifest, "Word: {input}\\nCapitalized:" (double-quoted YAML) holds a line break. Typed on a
command line, `--template "Word: {input}\\nCapitalized:"` holds a backslash and an n: a different
prompt, so `data stats`, `embed` and `logits` would measure what training never sees. A literal
backslash-n is warned about; `--template-file FILE` reads the template exactly (one trailing line
break dropped, as an editor adds it).
"""

from __future__ import annotations

import functools
from typing import Callable

import click

from cruijff.errors import UsageError

TEMPLATE_HELP = ("Prompt template with {input}, as in the manifest's prompt.template. A line break: "
                 "$'Q: {input}\\nA:' in bash, or --template-file.")


def resolve_template(template: str | None, template_file: str | None) -> str | None:
    if template is not None and template_file is not None:
        raise UsageError("give --template or --template-file, not both")
    if template_file is not None:
        try:
            text = open(template_file, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--template-file {template_file}: {e}") from None
        return text[:-1] if text.endswith("\n") else text
    if template is not None and "\\n" in template:
        click.echo("warning: --template holds a backslash followed by n, not a line break, so this prompt is "
                   "not the manifest's \"...\\n...\" — write $'...\\n...' in bash, or use --template-file",
                   err=True)
    return template


def template_options(f: Callable) -> Callable:
    """Adds --template and --template-file; the command gets one `template` argument."""
    @functools.wraps(f)
    def command(*args, template=None, template_file=None, **kwargs):
        return f(*args, template=resolve_template(template, template_file), **kwargs)

    command = click.option("--template-file", type=click.Path(exists=True, dir_okay=False), default=None,
                           help="Read the prompt template from this file (exactly; one final line break dropped).")(command)
    return click.option("--template", default=None, help=TEMPLATE_HELP)(command)
