"""array_script: task t runs node t's own job.sbatch, its output in `<node>/slurm-<array>_<t>.out`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cruijff.run.arrays import array_members, array_script

HEADER = ("#SBATCH --gres=gpu:1", "#SBATCH --time=01:00:00")

# A stand-in job script: where it ran, which task it was, something on stdout and stderr.
STUB = """#!/bin/bash
#SBATCH --job-name=stub
pwd > ran.txt
echo "$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID" >> ran.txt
echo "stdout of the job"
echo "stderr of the job" >&2
exit {code}
"""


def make_array(root: Path, members: dict[int, str], codes: dict[int, int] | None = None) -> Path:
    """Node dirs under root with stub job scripts, and the array script for them."""
    for t, node_dir in members.items():
        (root / node_dir).mkdir(parents=True, exist_ok=True)
        (root / node_dir / "job.sbatch").write_text(STUB.format(code=(codes or {}).get(t, 0)))
    script = root / "arrays" / "eval-abc.sbatch"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(array_script(title="exp: eval jobs as one job array", root=str(root), header=HEADER,
                                   log=str(script.with_suffix(".out")), members=[(t, d, f"h{t}") for t, d in sorted(members.items())]))
    return script


def run_task(script: Path, task: int, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": str(task)}
    return subprocess.run(["bash", str(script)], env=env, cwd=cwd, capture_output=True, text=True, timeout=30)


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def test_each_task_runs_its_own_node_with_output_in_the_node_dir(tmp_path):
    root = tmp_path / "exp"
    members = {0: "eval/r0/epoch_0/t0", 3: "eval/r3/epoch_0/t0", 12: "eval/r12/epoch_0/t0"}
    script = make_array(root, members)
    for t, node_dir in members.items():
        proc = run_task(script, t, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        node = root / node_dir
        assert (node / "ran.txt").read_text().splitlines() == [str(node), f"7 {t}"]
        assert (node / f"slurm-7_{t}.out").read_text() == "stdout of the job\nstderr of the job\n"
    assert sorted(str(p.parent.relative_to(root)) for p in root.rglob("ran.txt")) == sorted(members.values())


def test_a_failing_job_fails_its_task_with_its_exit_code(tmp_path):
    script = make_array(tmp_path, {0: "a", 1: "b"}, codes={1: 3})
    assert run_task(script, 0, cwd=tmp_path).returncode == 0
    assert run_task(script, 1, cwd=tmp_path).returncode == 3


def test_an_unknown_task_id_exits_2_with_a_clear_message(tmp_path):
    script = make_array(tmp_path, {0: "a", 2: "b"})
    proc = run_task(script, 1, cwd=tmp_path)
    assert proc.returncode == 2
    assert f"cruijff: array task 1 has no node in {script}" in proc.stderr
    assert not any(tmp_path.rglob("ran.txt"))


HOSTILE = [
    "sp ace/t 1",
    "$(touch CANARY_subst)",
    "it's",
    'q"uote',
    "`touch CANARY_backtick`",
    "semi;touch CANARY_semi",
    "amp&&touch CANARY_amp",
    "glob*?[x]",
    "${HOME}",
    "-dash",
]


def test_hostile_node_dirs_are_never_executed(tmp_path):
    root = tmp_path / "root $(touch CANARY_root) `touch CANARY_rootbt`; 'q\""
    members = dict(enumerate(HOSTILE))
    script = make_array(root, members)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = files_under(tmp_path)
    for t, node_dir in members.items():
        proc = run_task(script, t, cwd=cwd)
        assert proc.returncode == 0, (node_dir, proc.stderr)
        assert (root / node_dir / "ran.txt").read_text().splitlines()[0] == str(root / node_dir)
    created = files_under(tmp_path) - before
    expected = {str((root / d / f).relative_to(tmp_path)) for t, d in members.items()
                for f in ("ran.txt", f"slurm-7_{t}.out")}
    assert created == expected
    assert not [p for p in tmp_path.rglob("CANARY*") if p.is_file()]


def test_header_lines_are_copied_before_the_first_command_with_the_output_line(tmp_path):
    text = array_script(title="exp: 3 eval jobs as one job array", root="/out/exp", header=HEADER,
                        log="/out/exp/arrays/eval-abc.out", members=[(0, "a", "h0"), (1, "b", "h1")])
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    sbatch = [line for line in lines[:first_command] if line.startswith("#SBATCH")]
    assert sbatch[:2] == list(HEADER)
    assert "#SBATCH --output=/out/exp/arrays/eval-abc.out" in sbatch
    assert not [line for line in lines[first_command:] if line.startswith("#SBATCH")]


def test_output_path_is_quoted_for_sbatch(tmp_path):
    text = array_script(title="t", root="/out/my exp", header=(), log="/out/my exp/arrays/e-1%.out",
                        members=[(0, "a", "h0")])
    assert '#SBATCH --output="/out/my exp/arrays/e-1%%.out"' in text.splitlines()


def test_a_title_with_line_breaks_stays_one_comment_line(tmp_path):
    text = array_script(title="exp\ntouch CANARY\n#SBATCH --mem=1T", root=str(tmp_path), header=(),
                        log=str(tmp_path / "a.out"), members=[(0, "a", "h0")])
    assert text.splitlines()[1] == "# exp touch CANARY #SBATCH --mem=1T"
    assert "touch CANARY" not in text.splitlines()[2:]


def test_the_script_is_valid_bash(tmp_path):
    script = make_array(tmp_path, dict(enumerate(HOSTILE)))
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_array_members_reads_back_what_array_script_wrote():
    members = [(0, "eval/r0/epoch_0/t0", "abc"), (3, "eval/it's $(x)/t", "d e"), (1001, "b", "h")]
    text = array_script(title="t", root="/r", header=[], log="/r/a.out", members=members)
    assert array_members(text) == {t: (d, h) for t, d, h in members}
