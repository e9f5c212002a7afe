"""CLI commands, one module per area; imported lazily by cruijff.cli."""
