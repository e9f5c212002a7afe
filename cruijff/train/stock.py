"""Load torchtune's own recipe modules, from where `tune run` finds them.

The wheel ships them as a top-level `recipes` package beside `torchtune`; cruijff's repository
also has a `recipes/` folder, so the module is loaded by file path, never by the name `recipes`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from cruijff.errors import CruijffError


def stock_recipe(name: str) -> ModuleType:
    import torchtune

    path = Path(torchtune.__file__).resolve().parent.parent / "recipes" / f"{name}.py"
    if not path.is_file():
        raise CruijffError(f"torchtune's recipe {name} is not installed (looked for {path})",
                           hint="install torchtune 0.6.1 from its wheel, which ships recipes/")
    module_name = f"_torchtune_stock_recipes.{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
