"""The import contract that keeps the tree honest (docs/dev/architecture.md), checked on the syntax
tree: every import statement counts, including those inside functions.

- cruijff.compiler never imports cruijff.run or cruijff.results (data flows one way);
- only cruijff.commands.draw draws with rich, and imports it inside functions (`--json` never loads it);
- `plan`, `validate`, `apply`, `status`, `cancel`, `--help` and the executors import no torch,
  torchtune, transformers or inspect_ai (checked by importing them in a fresh interpreter).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers_models import placed_tiny

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "cruijff"
HEAVY = ("torch", "torchtune", "transformers", "inspect_ai")


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = REPO) -> set[str]:
    """Every module an import statement in this file names (relative imports resolved)."""
    out: set[str] = set()
    package = module_name(path, root).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def sources(under: Path):
    return sorted(under.rglob("*.py"))


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_tree_has_the_stages():
    for folder in ("compiler", "compiler/render", "run", "run/executors", "results", "data", "train", "tasks",
                   "llm", "commands"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    for gone in ("model.py", "artifact.py", "registry.py", "fit.py", "compile.py", "apply.py", "render"):
        assert not (PACKAGE / gone).exists(), f"cruijff/{gone} moved (issue 15)"


def test_the_compiler_never_imports_run_or_results():
    bad = [(module_name(f), m) for f in sources(PACKAGE / "compiler") for m in imports(f)
           if within(m, "cruijff.run") or within(m, "cruijff.results") or within(m, "cruijff.commands")]
    assert bad == [], f"the compiler imports later stages: {bad}"


DRAW = PACKAGE / "commands" / "draw"


def test_only_the_draw_package_uses_rich():
    bad = [module_name(f) for f in sources(PACKAGE)
           if DRAW not in f.parents and any(within(m, "rich") for m in imports(f))]
    assert bad == [], f"rich imported outside cruijff.commands.draw: {bad}"


def test_the_draw_package_imports_rich_inside_functions():
    """A module-level `import rich` would load it for `status --json` and for every command that
    merely imports a draw function."""
    bad = []
    for f in sources(DRAW):
        for node in ast.parse(f.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [(module_name(f), n) for n in names if within(n, "rich")]
    assert bad == [], f"rich imported at module level: {bad}"


def test_the_contract_checker_sees_imports_inside_functions(tmp_path):
    """The checker must be able to fail: lazy and relative imports inside a function count."""
    probe = tmp_path / "cruijff" / "compiler" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from cruijff.run.apply import apply\n    import rich.console\n"
                     "    from ..results import scores\n")
    assert {"cruijff.run.apply", "rich.console", "cruijff.results", "cruijff.results.scores"} <= imports(probe, tmp_path)


LIGHT = [
    "cruijff.cli", "cruijff.commands.compile", "cruijff.commands.run", "cruijff.compiler.pipeline",
    "cruijff.compiler.write", "cruijff.compiler.capacity", "cruijff.compiler.estimate",
    "cruijff.run.apply", "cruijff.run.status", "cruijff.run.cancel", "cruijff.run.reconcile",
    "cruijff.run.executors.select", "cruijff.run.executors.local", "cruijff.run.executors.slurm",
    "cruijff.commands.draw", "cruijff.commands.draw.status", "cruijff.commands.draw.plan",
    "cruijff.commands.draw.run", "cruijff.commands.jsonout", "cruijff.plan", "cruijff.scores",
]


@pytest.mark.parametrize("module", LIGHT)
def test_plan_apply_status_cancel_and_the_executors_import_nothing_heavy(module):
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", f"{module} imports {out.stdout.strip()}"


def test_the_commands_run_without_heavy_imports(tmp_path):
    """plan, validate, status, apply --dry-run and cancel on a real plan, first with --json (which
    must not load rich either), then drawn for humans, then --help, in one fresh interpreter:
    whatever their functions import lazily counts too."""
    out = tmp_path / "plan"
    tiny = str(placed_tiny(tmp_path))
    code = f"""
import sys
from click.testing import CliRunner
from cruijff.cli import cli
r = CliRunner()
calls = (["validate", {tiny!r}], ["plan", {tiny!r}, "--out", {str(out)!r}],
         ["status", {str(out)!r}, "--executor", "local"], ["apply", {str(out)!r}, "--dry-run", "--executor", "local"],
         ["cancel", {str(out)!r}, "--executor", "local"])
for args in [[*a, "--json"] for a in calls] + ["rich", *calls, ["--help"]]:
    if args == "rich":
        print("rich" in sys.modules)
        continue
    res = r.invoke(cli, args)
    assert res.exit_code == 0, (args, res.output, res.exception)
print([m for m in {HEAVY!r} if m in sys.modules])
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-2:] == ["False", "[]"], "--json loaded rich, or a command a heavy library"


STOPPING = {"cancel", "record_final_job", "kill_group"}  # executor.cancel, state.record_final_job, kill_group


def _stopping_calls(path: Path) -> list[str]:
    """Calls in a file that stop jobs or record them cancelled (a method `.cancel(`, not a function `cancel(`)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else "kill_group" if getattr(f, "id", "") == "kill_group" else None
            if name in STOPPING:
                out.append(f"{module_name(path)}:{node.lineno} {name}")
    return out


def test_one_place_stops_running_jobs():
    """apply (superseded, duplicate and removed nodes' jobs) and cancel stop jobs through
    cruijff.run.stop only; the executors implement cancel and the local one kills process groups."""
    stopper = PACKAGE / "run" / "stop.py"
    executors = PACKAGE / "run" / "executors"
    found = [c for f in sources(PACKAGE) if f != stopper and executors not in f.parents
             for c in _stopping_calls(f)]
    assert found == [], f"jobs stopped outside cruijff/run/stop.py: {found}"
    assert len(_stopping_calls(stopper)) == 3


MAX_LINES = 400


def test_long_modules_say_why_they_are_long():
    """A module past MAX_LINES usually holds more than one responsibility: split it, or say in its
    docstring why it is one ("... is long because ...")."""
    long = []
    for f in sources(PACKAGE):
        text = f.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if text.count("\n") > MAX_LINES and "long because" not in doc:
            long.append(f"{module_name(f)} ({text.count(chr(10))} lines)")
    assert long == [], f"modules over {MAX_LINES} lines without a reason in their docstring: {long}"


# Start-up budget (issue 27.2): modules loaded by importing each entry point in a fresh interpreter,
# with headroom of about 15%. Raising a budget needs a reason: every module costs every `cruijff plan`.
BUDGET = {"cruijff.cli": 120, "cruijff.commands.compile": 135, "cruijff.compiler.pipeline": 290}
# The job graph is a plain ordered mapping (compiler/graph.py): no networkx, even for a compile.
NEVER_FOR_PLAN = ("networkx", "cruijff.llm", "rich", *HEAVY)


@pytest.mark.parametrize("module", sorted(BUDGET))
def test_plan_imports_stay_within_their_budget(module):
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            f"print(len(sys.modules)); print([m for m in {NEVER_FOR_PLAN!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    count, never = out.stdout.split("\n")[:2]
    assert never == "[]", f"{module} imports {never}"
    assert int(count) <= BUDGET[module], f"{module} loads {count} modules, over its budget of {BUDGET[module]}"


def test_the_validation_child_is_forked_before_ruamel_and_jsonschema_load():
    """`plan` imports cruijff.compiler.validate to start its child (validate.ahead): the child
    parses and validates, so loading them there puts them on its path, not on plan's."""
    code = ("import sys, cruijff.compiler.validate; "
            "print([m for m in ('ruamel.yaml', 'jsonschema', 'difflib') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_an_unchanged_replan_loads_no_compiler(tmp_path):
    """The second `plan` of an unchanged manifest answers from its stamp: no schema validation
    (jsonschema), no YAML parsing (ruamel), no pipeline. The first validates in a child where
    there is a core to spare (cruijff.compiler.validate.ahead), so jsonschema is not loaded here."""
    from cruijff.cores import workers

    tiny = str(placed_tiny(tmp_path))
    env = {**__import__("os").environ, "CRUIJFF_CACHE_DIR": str(tmp_path / "cache")}
    code = f"""
import sys
from click.testing import CliRunner
from cruijff.cli import cli
res = CliRunner().invoke(cli, ["plan", {tiny!r}, "--out", {str(tmp_path / 'plan')!r}, "--json"])
assert res.exit_code == 0, res.output
print([m for m in ("jsonschema", "ruamel", "cruijff.compiler.pipeline", "networkx") if m in sys.modules])
"""
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
            for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    first = ['ruamel', 'cruijff.compiler.pipeline'] if workers() > 1 else ['jsonschema', 'ruamel', 'cruijff.compiler.pipeline']
    assert runs[0].stdout.strip() == str(first)  # no networkx
    assert runs[1].stdout.strip() == "[]"
