"""apply's side of the results store (cruijff/store): which nodes to take from it instead of
running them, and their materialisation, recorded in state.db as done by the `store` executor."""

from __future__ import annotations

from cruijff.plan import Plan
from cruijff.run.executors.base import COMPLETED
from cruijff.run.observe import LIVE, STORE, Observation
from cruijff.run.selectors import ancestors
from cruijff.run.state import State


def reusable(plan: Plan, obs: dict[str, Observation], selected: set[str], force: bool, store) -> dict[str, dict]:
    """Nodes not done here whose result the store holds: node id → its entry's source (looked up,
    not yet verified). A forced node is run again, never reused."""
    from cruijff.store.reuse import read_keys, reusable_source

    doc = read_keys(plan.output_dir)
    if doc is None:
        return {}
    scope = selected | ancestors(plan, selected)
    out = {}
    for node in plan.nodes:
        o = obs[node.id]
        if node.id not in scope or (force and node.id in selected) or o.state in LIVE:
            continue
        if o.state == COMPLETED and not o.outdated:
            continue
        source = reusable_source(store, plan, node.id, doc["keys"].get(node.id))
        if source is not None:
            out[node.id] = source
    return out


def from_store(plan: Plan, state: State, obs: dict[str, Observation], selected: set[str], force: bool, store,
                result) -> bool:
    """Publish the done nodes, then materialise the reusable ones (verified first; a refused entry
    is reported and its node runs as usual) and record them done. Whether any was reused."""
    from cruijff.store.reuse import materialise, publish_done, read_keys, source_text

    done = [i for i, o in obs.items() if o.state == COMPLETED and not o.outdated]
    result.published = publish_done(store, plan, done)
    doc = read_keys(plan.output_dir) or {"keys": {}}
    for node_id in reusable(plan, obs, selected, force, store):
        source, problem = materialise(store, plan, node_id, doc["keys"][node_id])
        if problem:
            result.store_refused.append((node_id, problem))
            continue
        row = state.record_adopted(node_id, plan.node(node_id).hash, STORE, f"store:{doc['keys'][node_id][:12]}",
                                   reason=source_text(source))
        state.record_final(row, COMPLETED, 0, source_text(source))
        result.reused.append((node_id, source))
    return bool(result.reused)


def preview(plan: Plan, obs: dict[str, Observation], selected: set[str], force: bool, store) -> list[tuple[str, dict]]:
    """--dry-run: the nodes apply would take from the store (obs marks them done, as apply would)."""
    if store is None:
        return []
    found = list(reusable(plan, obs, selected, force, store).items())
    for node_id, _ in found:
        obs[node_id] = Observation(node_id, COMPLETED, executor=STORE)
    return found
