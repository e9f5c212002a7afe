"""cruijff's recipes copy torchtune's two `train()` loops (cruijff/train/recipes.py); this pins the
copies to the installed torchtune's, on the syntax tree.

Each loop is flattened to its statements (compound statements as their header line, nested by
depth; docstrings and comments dropped, formatting normalised by ast.unparse) and diffed against
torchtune's. The only differences allowed are cruijff's hooks, listed below with why. A torchtune
upgrade that changes its loop changes the diff and fails here, not in a user's run: port the
change into the copy (or the hook list) and rerun.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# (op, depth, statement): "-" torchtune's line the copy leaves out, "+" the copy's own line.
_HOOK = [
    ("+", "self._start_epoch(curr_epoch)"),  # epoch timer and memory peak reset
]
_AFTER_STEP = [
    # the per-step hook needs the step time every step, not only on log steps
    ("+", "time_per_step = time.perf_counter() - t0"),
    ("-", "time_per_step = time.perf_counter() - t0"),
    ("+", "self._after_step(curr_epoch, float(loss_to_log), int(num_tokens), time_per_step)"),
]
EXPECTED = {
    ("lora_finetune_single_device.py", "LoRAFinetuneRecipeSingleDevice"): [
        *_HOOK,
        # a resumed run skips the batches its checkpoint had trained (cruijff.train.resume)
        ("+", "if self._resume_skip(curr_epoch, idx):"),
        ("+", "continue"),
        *_AFTER_STEP,
        ("+", "pbar.close()"),
        # validation, adapter-only saves on the chosen epochs, the HF export and record.json
        ("-", "start_save_checkpoint = time.perf_counter()"),
        ("-", "log.info('Starting checkpoint save...')"),
        ("-", "self.save_checkpoint(epoch=curr_epoch)"),
        ("-", "log.info('Checkpoint saved in {:.2f} seconds.'.format(time.perf_counter() - start_save_checkpoint))"),
        ("+", "self._end_epoch(curr_epoch)"),
        ("+", "t0 = time.perf_counter()"),  # the epoch's save and validation are not a step's time
    ],
    ("lora_finetune_distributed.py", "LoRAFinetuneRecipeDistributed"): [
        # torch.cpu has no cache to empty (the gloo CPU tests)
        ("-", "training.cleanup_before_training()"),
        ("+", "if self._device.type != 'cpu':"),
        ("+", "training.cleanup_before_training()"),
        *_HOOK, *_AFTER_STEP,
        ("+", "if self._resume_skip(curr_epoch, idx):"),
        ("+", "continue"),
        ("+", "pbar.close()"),
        ("-", "self.save_checkpoint(epoch=curr_epoch)"),
        ("+", "self._end_epoch(curr_epoch)"),
        ("+", "t0 = time.perf_counter()"),
    ],
}


def statements(fn: ast.FunctionDef) -> list[str]:
    out: list[str] = []

    def walk(body, depth):
        for s in body:
            if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
                continue
            if isinstance(s, (ast.For, ast.While, ast.If, ast.With)):
                out.append("  " * depth + ast.unparse(s).split("\n", 1)[0])
                walk(s.body, depth + 1)
                if not isinstance(s, ast.With) and s.orelse:
                    out.append("  " * depth + "else:")
                    walk(s.orelse, depth + 1)
            else:
                out.append("  " * depth + ast.unparse(s).replace("\n", " "))

    walk(fn.body, 0)
    return out


def method(path: Path, cls: str, name: str = "train") -> ast.FunctionDef:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for f in node.body:
                if isinstance(f, ast.FunctionDef) and f.name == name:
                    return f
    raise AssertionError(f"{path}: no {cls}.{name}")


def torchtune_recipes() -> Path:
    spec = importlib.util.find_spec("torchtune")
    assert spec is not None and spec.origin, "torchtune is not installed"
    return Path(spec.origin).resolve().parent.parent / "recipes"


def differences(upstream: list[str], copy: list[str]) -> list[tuple[str, str]]:
    out = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=upstream, b=copy, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            out += [("-", line.strip()) for line in upstream[a0:a1]]
        if op in ("insert", "replace"):
            out += [("+", line.strip()) for line in copy[b0:b1]]
    return out


@pytest.mark.parametrize("recipe, cls", sorted(EXPECTED))
def test_the_copied_train_loop_matches_torchtune_but_for_the_hooks(recipe, cls):
    upstream = statements(method(torchtune_recipes() / recipe, cls))
    copy = statements(method(REPO / "cruijff" / "train" / "recipes.py", cls))
    got = differences(upstream, copy)
    assert sorted(got) == sorted(EXPECTED[(recipe, cls)]), (
        f"{cls}.train() drifted from torchtune's {recipe}:\n"
        + "\n".join(difflib.unified_diff(upstream, copy, "torchtune", "cruijff", n=1, lineterm="")))


def test_the_comparison_can_fail():
    """Dropping a torchtune statement (as the CUDA memory-history profiling once was) is caught."""
    recipe, cls = "lora_finetune_single_device.py", "LoRAFinetuneRecipeSingleDevice"
    upstream = statements(method(torchtune_recipes() / recipe, cls))
    copy = [s for s in statements(method(REPO / "cruijff" / "train" / "recipes.py", cls))
            if "_record_memory_history" not in s]
    assert sorted(differences(upstream, copy)) != sorted(EXPECTED[(recipe, cls)])
