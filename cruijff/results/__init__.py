"""Results: inspect eval logs → scores, and the report (tables, plots, groups, cost)."""
