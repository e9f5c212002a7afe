"""cruijff_kit's experiment design file (experiment_summary.yaml) → a cruijff manifest.

`translate` (mapping.py) maps each field it can (experiment → experiment/description/output_dir, variables and
runs → grid, controls → prompt and hyperparameters, models.base → models, data.training →
datasets, output.wandb_project → finetune.wandb, evaluation → eval) and keeps every field without
an equivalent as a note; `render` (emit.py) writes the manifest as YAML with those notes as comments. The
defaults are not copied: cruijff's schema defaults are cruijff_kit's (docs/cruijff_kit.md), so an
imported manifest sets only what the design file set. Pure apart from reading task scripts' names.
"""

from cruijff.compiler.kit_import.emit import rebase_paths, render
from cruijff.compiler.kit_import.mapping import Imported, translate
from cruijff.compiler.kit_import.reading import HYPERPARAMETERS, SCHEDULERS, task_function

__all__ = ["HYPERPARAMETERS", "SCHEDULERS", "Imported", "rebase_paths", "render", "task_function", "translate"]
