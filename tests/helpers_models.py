"""A stand-in model folder: the files plan checks a model folder for (cruijff.compiler.modelfiles).

Enough for plan-time tests that never load the model. Its vocabulary is vocab.json, so token_fit
(which measures where tokenizer.json, tokenizer_config.json or tokenizer.model are) leaves it alone.
"""

from __future__ import annotations

from pathlib import Path


def stand_in_model(folder: str | Path, checkpoint_files=("model.safetensors",)) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "vocab.json", *checkpoint_files):
        if not (folder / name).exists():
            (folder / name).write_text("{}")
    return folder


def placed_tiny(tmp: str | Path) -> Path:
    """experiments/tiny.yaml copied into tmp with its task file and a stand-in model folder."""
    import shutil

    repo = Path(__file__).resolve().parents[1]
    tmp = Path(tmp)
    shutil.copy(repo / "experiments" / "tiny.yaml", tmp / "tiny.yaml")
    shutil.copytree(repo / "experiments" / "tasks", tmp / "tasks", dirs_exist_ok=True)
    stand_in_model(tmp / "tiny" / "model")
    return tmp / "tiny.yaml"
