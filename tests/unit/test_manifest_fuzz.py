"""Property: any mutation of a shipped manifest gives exit 0 or 2 and a clean message, never a traceback.

The mutations are the ones a user (or a careless script) makes: a value of the wrong type, a huge
or non-finite number (YAML reads 1e999 as inf), unicode, deep nesting, empty values, a deleted or
an unknown key. `validate` and `plan` run in-process through cruijff's real entry point
(cruijff.cli.main, which turns domain errors into exit codes), so an exception that escapes it is
a failure of the test, whatever its type.
"""

from __future__ import annotations

import copy
import io
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

import cruijff.commands.compile as compile_commands
from cruijff.cli import main

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
SHIPPED = sorted(EXPERIMENTS.glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe").load(path.read_text())
    # The mutated copy is written elsewhere: keep its relative paths pointing at the shipped files.
    for ds in data["datasets"].values():
        ds["path"] = str(EXPERIMENTS / ds["path"])
    for model in data["models"].values():
        model["path"] = str(EXPERIMENTS / model["path"])
    for task in data.get("eval", {}).get("tasks", []):
        task["file"] = str(EXPERIMENTS / task["file"])
    return data


MANIFESTS = {p.stem: _load(p) for p in SHIPPED}


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


def nested(depth: int, leaf: Any, as_map: bool) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf} if as_map else [leaf]
    return leaf


SPECIAL = [1e999, -1e999, float("nan"), 10**400, -(10**400), 1.0, 3.0, 0, -1, 2**31, 2**63, 1e30, 1e-300,
           "", " ", "\n", "ü", "💥", "\t\u200b", "${CRUIJFF_UNSET_FUZZ}", "~", "../..", "all", "last", "null",
           "q_proj", "model:tiny", "$(rm -rf ~)", [], {}, None, True, False]
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
values = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.booleans(),
    st.lists(st.one_of(st.integers(-5, 5), text, st.floats()), max_size=4),
    st.dictionaries(text, st.integers(-5, 5), max_size=3),
    st.builds(nested, st.integers(1, 60), st.sampled_from([1, "x", 1e999]), st.booleans()),
)


@st.composite
def mutated(draw) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(MANIFESTS)))
    data = copy.deepcopy(MANIFESTS[name])
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(data)))
        kind = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        parent = data
        for part in where[:-1]:
            parent = parent[part]
        if not where:
            continue
        last = where[-1]
        if kind == "replace":
            parent[last] = draw(values)
        elif kind == "delete":
            del parent[last]
        else:
            target = parent[last]
            if isinstance(target, dict):
                target[draw(text)] = draw(values)
            elif isinstance(target, list):
                target.append(draw(values))
    return name, data


def dump(data: Any, path: Path) -> None:
    yaml = YAML(typ="safe")
    yaml.allow_unicode = True
    buf = io.StringIO()
    yaml.dump(data, buf)
    path.write_text(buf.getvalue(), encoding="utf-8")


def run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    else:  # pragma: no cover - main always exits
        code = 0
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def no_slurm(monkeypatch):
    # plan asks SLURM for limits when the executor resolves to slurm; not this test's subject
    monkeypatch.setattr(compile_commands, "_slurm_fit", lambda plan, files, **kw: (None, []))
    monkeypatch.delenv("CRUIJFF_UNSET_FUZZ", raising=False)


@settings(max_examples=int(os.environ.get("CRUIJFF_FUZZ_EXAMPLES", "120")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=mutated())
def test_mutated_manifests_exit_0_or_2_without_a_traceback(case, tmp_path, capsys, no_slurm, monkeypatch):
    name, data = case
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    work = tmp_path / "case"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    manifest = work / f"{name}.yaml"
    dump(data, manifest)
    code, out = run(["validate", str(manifest)], capsys)
    assert code in (0, 2), out
    assert "Traceback" not in out
    event(f"validate exit {code}")
    if code == 2:
        assert "error" in out
        return
    code, out = run(["plan", str(manifest), "--out", str(work / "plan")], capsys)
    event(f"plan exit {code}")
    assert code in (0, 2), out
    assert "Traceback" not in out


@pytest.mark.parametrize("value", [1e999, float("nan"), -1e999])
def test_non_finite_grid_value_is_a_schema_error(value, tmp_path, capsys):
    """The traceback from run naming (format_value) that a fuzzer found once in 340 manifests."""
    data = copy.deepcopy(MANIFESTS["tiny"])
    data["grid"]["lr"] = [1e-3, value]
    manifest = tmp_path / "m.yaml"
    dump(data, manifest)
    code, out = run(["validate", str(manifest)], capsys)
    assert code == 2 and "Traceback" not in out
    assert f"grid.lr[1] is {value!r}, not a finite number" in out
    line = next(i for i, t in enumerate(manifest.read_text().splitlines(), 1) if t.strip().startswith("lr:"))
    assert f"{manifest}:{line + 2}:" in out or f"{manifest}:{line}:" in out


def alias_bomb(levels: int, width: int = 10) -> list[str]:
    """YAML lines of a "billion laughs": each level a list of `width` aliases of the level below."""
    lines = ['  l0: &l0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return lines


BOMB_SECONDS = 10  # each case must be refused well within this (it ran for minutes once)


@pytest.mark.parametrize("place", ["top", "task_args", "grid"])
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_alias_bombs_are_refused_at_once_with_their_place(place, command, tmp_path, capsys, no_slurm):
    import signal
    import time

    data = copy.deepcopy(MANIFESTS["twins"])
    data["output_dir"] = str(tmp_path / "out")
    manifest = tmp_path / "bomb.yaml"
    dump(data, manifest)
    text = manifest.read_text()
    bomb = "\n".join(alias_bomb(9)) + "\n"
    if place == "top":
        text += "bombs:\n" + bomb
    elif place == "task_args":
        task = data["eval"]["tasks"][0]  # anchors first, then an alias where any value goes
        text = "x-bombs:\n" + bomb + text.replace(
            "tasks:\n", f"tasks:\n  - {{name: b, file: {task['file']}, task: {task['task']}, args: {{x: *l8}}}}\n", 1)
    else:  # a duplicate key, whose message ruamel would build from the whole expanded value
        text = "x-bombs:\n" + bomb + text.replace("grid:\n", "grid:\n  lr: *l8\n", 1)
    manifest.write_text(text)

    def too_slow(*_):
        raise TimeoutError(f"{command} of an alias bomb ran over {BOMB_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(BOMB_SECONDS)
    started = time.monotonic()
    try:
        code, out = run([command, str(manifest), "--out", str(tmp_path / "out")] if command == "plan"
                        else [command, str(manifest)], capsys)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < BOMB_SECONDS
    assert code == 2 and "Traceback" not in out, out
    assert "through YAML aliases" in out
    lines = manifest.read_text().splitlines()
    line = int(out.split(f"{manifest}:")[1].split(":")[0])
    assert lines[line - 1].lstrip().startswith(("l5:", "l6:", "l7:", "l8:")), (line, out)
    assert not (tmp_path / "out").exists()
