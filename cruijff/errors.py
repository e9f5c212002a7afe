"""One error family, so the CLI can print any domain failure as one message without a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # a job or an external tool failed
    INVALID = 2  # the user's input (manifest, arguments, plan) is wrong
    INTERRUPTED = 130


@dataclass(frozen=True)
class Location:
    """A place in a source file; line and col are 1-based, as editors show them."""

    file: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.col is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """One finding about the user's input: what is wrong, where, and how to fix it."""

    message: str
    location: Location | None = None
    hint: str | None = None
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        fix = f" — {self.hint}" if self.hint else ""
        label = "warning: " if self.severity == "warning" else ""
        return f"{where}{label}{self.message}{fix}"

    def as_dict(self) -> dict:
        loc = self.location
        return {
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "col": loc.col if loc else None,
        }


class CruijffError(Exception):
    """A failure the user can fix; printed as its message alone."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None, location: Location | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.location = location

    def __str__(self) -> str:
        return str(Problem(self.message, self.location, self.hint))


class UsageError(CruijffError):
    exit_code = ExitCode.INVALID


class ManifestError(CruijffError):
    """Every problem found in a manifest, reported together."""

    exit_code = ExitCode.INVALID

    def __init__(self, problems: list[Problem]):
        self.problems = [p for p in problems if p.severity == "error"]
        self.warnings = [p for p in problems if p.severity != "error"]
        n = len(self.problems)
        super().__init__(f"{n} error{'s' if n != 1 else ''} in manifest")

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class SchedulerError(CruijffError):
    """The scheduler refused or failed a request (sbatch, squeue, scancel ...)."""


class StateError(CruijffError):
    """The plan directory or its state database is missing, locked or inconsistent."""
