"""Stable entry point `python -m cruijff.scores`: rendered job scripts of existing plans name it.

The code lives in cruijff.results.scores; this name stays so that plan directories made before
the package moved (issue 15) run unchanged and their node hashes (which cover the scripts) hold.
"""

from __future__ import annotations

import sys

from cruijff.results.scores import *  # noqa: F401,F403
from cruijff.results.scores import main

if __name__ == "__main__":
    sys.exit(main())
