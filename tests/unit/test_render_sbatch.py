"""Job scripts: #SBATCH lines sbatch reads right, and no manifest value ever runs as shell code.

The hostile test puts shell metacharacters into every manifest string that reaches a job script,
plans it, and runs every job.sbatch with bash, PATH pointing at stubs that record their argv
(tune, inspect, cruijff, python, module, conda, hostname, date): nothing may execute, and each
stub must receive each hostile string whole, as one argument. `cluster.env.setup` is verbatim
shell by design (documented) and stays out of this.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from cruijff.compiler.pipeline import check, compile_manifest
from cruijff.errors import ManifestError
from cruijff.plan import Resources
from tests.helpers_models import stand_in_model
from cruijff.compiler.render.sbatch import UnsafeValue, directive, environment_lines, job_script, sbatch_path
from cruijff.compiler.render.yaml import dump_yaml
from cruijff.compiler.write import write_plan

# Paths expand $VAR and ${VAR} at plan time by design (documented), so path values get no variables.
HOSTILE_PATH = "$(touch PWNED) `touch PWNED2` ; rm -rf ~ 'q' \"dq\" \\ & | > x < y * #c %j $((1+1))"
PATH_NL = HOSTILE_PATH + "\nsecond $(touch PWNED3) line"
HOSTILE = HOSTILE_PATH + ' "$HOME" ${HOME}'
HOSTILE_NL = HOSTILE + "\nsecond $(touch PWNED3) line"
STUBS = ("tune", "inspect", "cruijff", "python", "module", "conda", "hostname", "date")


# ---------------------------------------------------------------------------------------------
# #SBATCH lines

def slurm_argument(line: str) -> list[str]:
    """Slurm's _get_argument (src/sbatch/opt.c): how sbatch splits an #SBATCH line into words."""
    words, i = [], 0
    while True:
        while i < len(line) and line[i].isspace():
            i += 1
        if i >= len(line):
            return words
        arg, quoted, escape = [], False, False
        while i < len(line) and (quoted or not line[i].isspace()) and line[i] != "\n":
            c = line[i]
            if escape:
                escape = False
                arg.append(c)
            elif c == "\\":
                escape = True
            elif c == '"':
                quoted = not quoted
            elif c == "#":
                return words + (["".join(arg)] if arg else [])
            else:
                arg.append(c)
            i += 1
        if arg:
            words.append("".join(arg))


@pytest.mark.parametrize("path", ["/scratch/u/exp", "/a b/c", "/x/it's \"q\"/#h/back\\slash", "/p%j/q", "/t\tab"])
def test_output_path_reaches_sbatch_intact(path):
    line = f"#SBATCH --output={sbatch_path(path + '/')}slurm-%j.out"
    assert line.startswith("#SBATCH ")
    (word,) = slurm_argument(line[len("#SBATCH "):])
    # sbatch's own %-patterns: %% is a literal %, %j the job id
    assert word == "--output=" + path.replace("%", "%%") + "/slurm-%j.out"


def test_line_breaks_never_reach_a_header():
    with pytest.raises(UnsafeValue):
        sbatch_path("/a\n#SBATCH --account=x")
    with pytest.raises(UnsafeValue):
        directive("--partition", "gpu\nx")
    with pytest.raises(UnsafeValue):
        directive("--account", "a b")


def test_directives_from_resources_and_cluster():
    text = job_script(title="t", job_name="exp:finetune/r", node_dir="/o/finetune/r",
                      resources=Resources(gpus=2, cpus=8, mem="64G", time="1-00:00:00"),
                      cluster={"account": "lab", "partition": "gpu", "constraint": "a100|h100", "qos": "hi",
                               "mail": "me@x.org", "mail_type": "FAIL"}, commands=[["true"]])
    for line in ["#SBATCH --job-name=exp:finetune/r", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=64G",
                 "#SBATCH --time=1-00:00:00", "#SBATCH --gres=gpu:2", "#SBATCH --account=lab",
                 "#SBATCH --partition=gpu", "#SBATCH --constraint=a100|h100", "#SBATCH --qos=hi",
                 "#SBATCH --mail-user=me@x.org", "#SBATCH --mail-type=FAIL", "#SBATCH --output=/o/finetune/r/slurm-%j.out"]:
        assert line in text.splitlines()
    assert text.startswith("#!/bin/bash\n")
    assert "--gres" not in job_script(title="t", job_name="j", node_dir="/o", resources=Resources(gpus=0),
                                      cluster={}, commands=[["true"]])


def test_environment_lines_quote_values_and_keep_setup_verbatim():
    lines = environment_lines({"modules": ["cuda/12 x"], "conda": "my env", "variables": {"A": "$(x)", "B": True},
                               "setup": ["ulimit -n 4096"]}, {"C": "1"})
    assert "module load 'cuda/12 x'" in lines
    assert "conda activate 'my env'" in lines
    assert "export A='$(x)'" in lines and "export B=true" in lines and "export C=1" in lines
    assert lines[-1] == "ulimit -n 4096"
    with pytest.raises(UnsafeValue):
        environment_lines({"variables": {"A B": "x"}}, {})


def test_newline_in_output_dir_is_rejected_at_its_line(tmp_path):
    m = hostile_manifest(tmp_path, "conda")
    m["output_dir"] = str(tmp_path / "out\n#SBATCH --account=stolen")
    path = tmp_path / "m.yaml"
    path.write_text(dump_yaml(m))
    with pytest.raises(ManifestError) as info:
        check(path)
    (problem,) = info.value.problems
    assert problem.location.line == 1 + next(i for i, line in enumerate(path.read_text().splitlines())
                                             if line.startswith("output_dir:"))
    assert "one line" in problem.message


def test_newline_from_an_environment_variable_is_rejected(tmp_path):
    m = hostile_manifest(tmp_path, "conda")
    m["output_dir"] = "${EVIL_DIR}/out"
    path = tmp_path / "m.yaml"
    path.write_text(dump_yaml(m))
    with pytest.raises(ManifestError) as info:
        compile_manifest(path, env={"EVIL_DIR": str(tmp_path / "a\nb")})
    (problem,) = info.value.problems
    assert "line break" in problem.message
    assert problem.location.line == 1 + next(i for i, line in enumerate(path.read_text().splitlines())
                                             if line.startswith("output_dir:"))


# ---------------------------------------------------------------------------------------------
# hostile values, run for real

def hostile_manifest(tmp: Path, env_kind: str) -> dict:
    env: dict = {"modules": [HOSTILE], "variables": {"HOSTILE_VAR": HOSTILE_NL}}
    if env_kind == "conda":
        env["conda"] = HOSTILE
    else:
        env["venv"] = str(tmp / f"venv {HOSTILE_PATH}")
    (tmp / f"task {PATH_NL}.py").write_text("from inspect_ai import task\n\n@task\ndef t(**kwargs):\n    pass\n")
    stand_in_model(tmp / f"model {PATH_NL}", [f"model {HOSTILE}.safetensors"])
    (tmp / HOSTILE_NL).write_text("")  # generate.from_csv: the local executor's prepare job reads it here
    return {
        "experiment": "hostile",
        "description": HOSTILE_NL,
        "output_dir": str(tmp / f"out {HOSTILE_PATH}"),
        "executor": {"kind": "local"},
        "cluster": {"env": env},
        "models": {"tiny": {
            "path": str(tmp / f"model {PATH_NL}"), "family": "custom",
            "builder": {"_component_": "torchtune.models.llama3.lora_llama3", "note": HOSTILE_NL},
            "checkpoint_files": [f"model {HOSTILE}.safetensors"], "model_type": "LLAMA3"}},
        "datasets": {"words": {"path": str(tmp / f"data {PATH_NL}.json"), "format": "instruct_json",
                               "generate": {"kind": "twins", "pairs": 10, "from_csv": HOSTILE_NL}}},
        "prompt": {"system": HOSTILE_NL, "template": HOSTILE_NL + " {input}"},
        "finetune": {"resources": {"gpus": 0}},
        "eval": {"tasks": [{"name": "t", "file": str(tmp / f"task {PATH_NL}.py"), "task": "t",
                            "args": {"hostile": HOSTILE_NL, "items": [HOSTILE, 1]}}],
                 "base_models": True},
    }


def make_stubs(folder: Path, conda_base: Path) -> None:
    folder.mkdir()
    code = f"""#!{sys.executable}
import json, os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps({{"cmd": name, "argv": sys.argv[1:], "cwd": os.getcwd(),
                        "var": os.environ.get("HOSTILE_VAR")}}) + "\\n")
if name == "date":
    print("1.5")
elif name == "hostname":
    print("stubhost")
elif name == "conda" and sys.argv[1:2] == ["info"]:
    print({str(conda_base)!r})
"""
    for name in STUBS:
        (folder / name).write_text(code)
        (folder / name).chmod(0o755)
    (conda_base / "etc" / "profile.d").mkdir(parents=True)
    (conda_base / "etc" / "profile.d" / "conda.sh").write_text("# stub: defines no conda function\n")


@pytest.mark.parametrize("env_kind", ["conda", "venv"])
def test_hostile_values_never_run(tmp_path, env_kind):
    m = hostile_manifest(tmp_path, env_kind)
    if env_kind == "venv":
        activate = Path(m["cluster"]["env"]["venv"]) / "bin" / "activate"
        activate.parent.mkdir(parents=True)
        activate.write_text('printf \'{"cmd": "activate"}\\n\' >> "$STUB_LOG"\n')
    path = tmp_path / "hostile.yaml"
    path.write_text(dump_yaml(m))
    compiled = compile_manifest(path)
    write_plan(compiled.plan, compiled.files)
    out = Path(m["output_dir"])
    assert compiled.plan.output_dir == str(out)

    stubs, home, cwd, log = tmp_path / "stubs", tmp_path / "home", tmp_path / "cwd", tmp_path / "stub.log"
    make_stubs(stubs, tmp_path / "conda-base")
    home.mkdir()
    (home / "keep").write_text("rm -rf $HOME must not have run")
    cwd.mkdir()
    bash = shutil.which("bash")
    kinds = set()
    for node in compiled.plan.nodes:
        kinds.add(node.kind)
        script = out / node.script
        res = subprocess.run([bash, str(script)], cwd=cwd, capture_output=True, text=True, timeout=60,
                             env={"PATH": str(stubs), "HOME": str(home), "STUB_LOG": str(log)})
        assert res.returncode == 0, (node.id, res.stderr)
        events = [json.loads(line) for line in (out / node.record).read_text().splitlines()]
        assert [e["event"] for e in events] == ["start", "end"] and events[-1]["exit_code"] == 0
        assert events[0]["host"] == "stubhost"
    assert kinds == {"prepare", "finetune", "eval", "base_eval"}

    assert not [p for p in tmp_path.rglob("PWNED*")], "a manifest value ran as shell code"
    assert (home / "keep").exists()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    by_cmd: dict[str, list] = {}
    for c in calls:
        by_cmd.setdefault(c["cmd"], []).append(c)
    n = len(compiled.plan.nodes)
    if env_kind == "conda":
        assert all(c["argv"] == ["activate", HOSTILE] for c in by_cmd["conda"] if c["argv"][:1] != ["info"])
        assert len([c for c in by_cmd["conda"] if c["argv"][0] == "activate"]) == n
    else:
        assert len(by_cmd["activate"]) == n
    assert [c["argv"] for c in by_cmd["module"]] == [["load", HOSTILE]] * n
    for c in calls:
        if c["cmd"] in ("tune", "inspect", "cruijff", "python"):
            assert c["var"] == HOSTILE_NL  # exported whole, newline included

    (prep,) = by_cmd["cruijff"]
    assert prep["argv"][:4] == ["data", "generate", "twins", m["datasets"]["words"]["path"]]
    # a relative from_csv is made absolute against the manifest's folder (the job runs in its node dir)
    assert prep["argv"][prep["argv"].index("--from-csv") + 1] == os.path.normpath(str(tmp_path / HOSTILE_NL))
    assert prep["cwd"] == str(out / "prepare" / "words")

    run_dirs = [str(out / nd.id) for nd in compiled.plan.nodes if nd.kind == "finetune"]
    assert sorted(c["argv"][-1] for c in by_cmd["tune"]) == sorted(f"{d}/finetune.yaml" for d in run_dirs)
    evals = [nd for nd in compiled.plan.nodes if nd.kind in ("eval", "base_eval")]
    # cruijff.results.scores runs `inspect eval` (then checks its log)
    runs = [c for c in by_cmd["python"] if c["argv"][:5] == ["-m", "cruijff.scores", "logs", "--", "inspect"]]
    assert len(runs) == len(evals)
    for c in runs:
        assert c["argv"][5:7] == ["eval", f"{m['eval']['tasks'][0]['file']}@t"]
        assert c["cwd"].startswith(str(out / "eval")) or c["cwd"].startswith(str(out / "base_eval"))

    # the YAML files carry the same values, intact
    y = YAML(typ="safe")
    ft = y.load((out / compiled.plan.nodes[1].id / "finetune.yaml").read_text())
    assert ft["dataset"]["system"] == HOSTILE_NL and ft["dataset"]["template"] == HOSTILE_NL + " {input}"
    assert ft["checkpointer"]["checkpoint_dir"] == m["models"]["tiny"]["path"]
    assert ft["tokenizer"]["path"] == m["models"]["tiny"]["path"]
    task_cfg = y.load((out / evals[0].id / "task_config.yaml").read_text())
    assert task_cfg["hostile"] == HOSTILE_NL and task_cfg["items"] == [HOSTILE, 1]
    assert task_cfg["system"] == HOSTILE_NL
