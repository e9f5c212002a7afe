"""Drawing for humans: the only place that uses rich (tests/unit/test_architecture.py).

Commands get data from the domain and call these; `--json` answers go through
cruijff/commands/jsonout.py instead. Names load their module on first use and every module imports
rich inside its functions, so `validate` does not load the status code and `--json` never loads rich.

    status.py  the status grid, --watch        plan.py  validate's problems, the plan summary
    run.py     apply's progress and result,     data.py  dataset description, token statistics
               cancel, report                   llm.py   progress bar, check-finetuned tables
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "status": ("live_status", "print_status", "render_plain", "render_text", "score_legend"),
    "plan": ("manifest_failed", "plan_summary", "problems", "ready", "validated"),
    "run": ("ApplyProgress", "apply_result", "cancel_result", "report_result"),
    "data": ("dataset", "dropped_turns", "token_stats"),
    "llm": ("comparison", "progress"),
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE)


def __getattr__(name: str) -> Any:
    if name not in _MODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE[name]}"), name)
