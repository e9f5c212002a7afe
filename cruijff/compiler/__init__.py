"""The compiler: manifest → plan directory, pure stages in order.

source (ruamel, file:line:col) → schema/validate → resolve → checks → families → expand → graph
→ batching → render/{torchtune, sbatch, inspect, yaml} → write; summary, capacity (cluster fit),
estimate, docgen. It never imports cruijff.run or cruijff.results (tests/unit/test_architecture.py).
"""
