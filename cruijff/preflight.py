"""Stable entry point `python -m cruijff.preflight`: a job's first step checks what `plan` could not see.

`plan` checks every model folder reachable from where it runs (cruijff.compiler.modelfiles). A
folder that lives on the cluster only is checked here, when the job starts: a missing file becomes
one `error` event in record.jsonl (status shows it) and exit 1, before torchtune or Hugging Face
fail on it with a misleading traceback. Job scripts name this module; keep its name and arguments.

    python -m cruijff.preflight model NAME FOLDER FILE... [--any FILE...]
"""

from __future__ import annotations

import os
import sys


def check_model(name: str, folder: str, files: list[str], any_of: list[str]) -> str | None:
    """Why the model folder cannot be used, or None."""
    if not os.path.isdir(folder):
        return (f"model '{name}': {folder} does not exist on this node — fix models.{name}.path (or "
                ".checkpoint) in the manifest, plan and apply again")
    gone = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
    if any_of and not any(os.path.isfile(os.path.join(folder, f)) for f in any_of):
        gone.append(" or ".join(any_of))
    if gone:
        return (f"model '{name}': {folder} has no {', '.join(gone)} — give the folder of a Hugging Face "
                f"model (config.json, tokenizer, weights) or adapter in models.{name}.path (or .checkpoint)")
    return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != "model":
        print("usage: python -m cruijff.preflight model NAME FOLDER FILE... [--any FILE...]", file=sys.stderr)
        return 2
    rest = args[3:]
    files, any_of = (rest[:rest.index("--any")], rest[rest.index("--any") + 1:]) if "--any" in rest else (rest, [])
    problem = check_model(args[1], args[2], files, any_of)
    if problem is None:
        return 0
    from cruijff.run.records import record_error

    print(f"error: {problem}", file=sys.stderr)
    record_error(problem)
    return 1


if __name__ == "__main__":
    sys.exit(main())
