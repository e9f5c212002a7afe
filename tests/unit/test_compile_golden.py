"""The rendered files of the shipped experiments, pinned byte for byte.

Machine-specific absolute paths become placeholders: <REPO> (this checkout), <SCRATCH> ($SCRATCH,
which twins and capitalization write under) and <HOME> (~). After an intended change, regenerate:

    CRUIJFF_UPDATE_GOLDEN=1 pytest tests/unit/test_compile_golden.py

and review the diff of tests/golden/ like any other change.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cruijff.plan import plan_to_dict
from cruijff.compiler.pipeline import compile_manifest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
MANIFESTS = ["tiny", "twins", "capitalization", "smollm2", "tiny_prompts"]
UPDATE = os.environ.get("CRUIJFF_UPDATE_GOLDEN", "") not in ("", "0")


@pytest.fixture
def machine(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    home = tmp_path / "home"
    monkeypatch.setenv("SCRATCH", str(scratch))
    monkeypatch.setenv("HOME", str(home))
    # Longest first, so a path under another is replaced whole.
    return sorted({str(REPO): "<REPO>", str(scratch): "<SCRATCH>", str(home): "<HOME>"}.items(),
                  key=lambda kv: -len(kv[0]))


def normalise(text: str, machine) -> str:
    for path, placeholder in machine:
        text = text.replace(path, placeholder)
    return text


def rendered(name: str, machine) -> dict[str, str]:
    # check_paths=False: the model folders are built by commands (tiny-model), not shipped
    compiled = compile_manifest(REPO / "experiments" / f"{name}.yaml", check_paths=False)
    files = {rel: normalise(text, machine) for rel, text in compiled.files.items()}
    plan = plan_to_dict(compiled.plan)
    plan.pop("cruijff_version")
    for node in plan["nodes"]:
        node.pop("hash")  # covers absolute paths; pinned through the files it hashes
        node["inputs"] = sorted(node["inputs"])  # which inputs, not their digests (code and data change)
    files["plan.nodes.json"] = normalise(json.dumps(plan, indent=1) + "\n", machine)
    return files


@pytest.mark.parametrize("name", MANIFESTS)
def test_rendered_files_match_golden(name, machine):
    files = rendered(name, machine)
    folder = GOLDEN / name
    if UPDATE:
        shutil.rmtree(folder, ignore_errors=True)
        for rel, text in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        pytest.skip(f"golden files of {name} rewritten")
    assert folder.is_dir(), f"no golden files yet: CRUIJFF_UPDATE_GOLDEN=1 pytest {__file__}"
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(on_disk), "the plan's files changed (CRUIJFF_UPDATE_GOLDEN=1 to accept)"
    for rel, text in files.items():
        want = (folder / rel).read_text()
        if text != want:
            diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                                f"golden/{name}/{rel}", "rendered"))
            pytest.fail(f"{rel} differs from its golden file (CRUIJFF_UPDATE_GOLDEN=1 to accept):\n{diff}")


@pytest.mark.parametrize("name", MANIFESTS)
def test_no_machine_paths_left_in_goldens(name, machine):
    for rel, text in rendered(name, machine).items():
        assert "/tmp/" not in text and str(REPO) not in text, rel


_HASHES = ("import json, sys; from cruijff.compiler.pipeline import compile_manifest; "
           "c = compile_manifest(sys.argv[1], check_paths=False); "
           "print(json.dumps([[n.id, n.hash] for n in c.plan.nodes]))")


@pytest.mark.parametrize("name", MANIFESTS)
def test_hashes_are_deterministic(name, machine):
    """Same manifest, same hashes and files: in one process, and across processes whose string
    hashing differs (PYTHONHASHSEED), which would expose any set or dict order leaking into a hash."""
    a = compile_manifest(REPO / "experiments" / f"{name}.yaml", check_paths=False)
    b = compile_manifest(REPO / "experiments" / f"{name}.yaml", check_paths=False)
    assert [(n.id, n.hash) for n in a.plan.nodes] == [(n.id, n.hash) for n in b.plan.nodes]
    assert a.files == b.files
    seen = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _HASHES, str(REPO / "experiments" / f"{name}.yaml")],
                             capture_output=True, text=True, env=env, cwd=REPO)
        assert out.returncode == 0, out.stderr
        seen.add(out.stdout.strip().splitlines()[-1])
    assert seen == {json.dumps([[n.id, n.hash] for n in a.plan.nodes])}


def test_fast_yaml_matches_ruamel_on_every_rendered_file(machine):
    """The compiler's own YAML writer must spell every config exactly as ruamel would."""
    from cruijff.compiler.render.yaml import _ruamel
    from ruamel.yaml import YAML

    for name in MANIFESTS:
        for rel, text in compile_manifest(REPO / "experiments" / f"{name}.yaml", check_paths=False).files.items():
            if rel.endswith(".yaml"):
                body = "".join(line for line in text.splitlines(True) if not line.startswith("#"))
                assert _ruamel(YAML(typ="safe").load(body)) == body, rel
