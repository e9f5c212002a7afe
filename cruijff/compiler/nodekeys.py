"""Each node's store key as a plan compiles (cruijff.store.keys holds what a key is): its settings
with the plan's paths replaced, its inputs and its parents' keys; written to store-keys.json."""

from __future__ import annotations

from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, Callable

from cruijff.plan import PREPARE
from cruijff.store.keys import KEY_VERSION, near_keys, node_key, normalise, places, settings_text

if TYPE_CHECKING:
    from cruijff.compiler.graph import JobSpec


class NodeKeys:
    def __init__(self, m: dict[str, Any], recipes: str, fingerprint: Callable[[str], str]):
        self.m = m
        self.out = m["output_dir"]
        self.recipes = recipes
        self._fingerprint = fingerprint
        self._keys: dict[str, str | None] = {}
        self._near: dict[str, list[str]] = {}  # node id → where to look to explain a miss
        self._near_of: dict[tuple, list[str]] = {}  # a few distinct (kind, model, data, task) among thousands
        self._texts: dict[str, str] = {}  # node id → its settings as JSON (cruijff.store.keys.settings_text)
        self._parent_keys: dict[str, list[str | None]] = {}

    def add(self, spec: JobSpec, parents: tuple[str, ...], inputs: dict[str, str], settings: dict[str, Any]) -> None:
        """The node's key: its settings (the data render just turned into files) with paths
        replaced, its inputs, its parents' keys."""
        self.add_normalised(spec, parents, self.normalised(spec, parents, inputs, settings))

    def normalised(self, spec: JobSpec, parents: tuple[str, ...], inputs: dict[str, str],
                   settings: dict[str, Any]) -> dict[str, Any]:
        """The key's settings: needs no other node's key (a worker process computes it beside render)."""
        pairs: list[tuple[str | None, str]] = [(f"{self.out}/{spec.id}", "<node>"), (self.out, "<plan>"),
                                               (self.recipes, "<recipes>")]
        pairs += [(f"{self.out}/{p}", f"<parent:{i}>") for i, p in enumerate(parents)]
        model_path = self._model_path(spec)
        pairs.append((model_path, "<model>"))
        for name in ("dataset", "eval_dataset"):
            value = spec.attrs.get(name)
            if isinstance(value, str) and value in self.m["datasets"]:
                pairs.append((self.m["datasets"][value]["path"], "<dataset>"))
        for task in (self.m.get("eval") or {}).get("tasks", []):
            pairs.append((task["file"], "<task file>"))
        normalised = normalise(settings, places(pairs))
        normalised["inputs"] = dict(inputs)
        normalised["gpus"] = spec.resources.gpus
        if spec.kind != PREPARE and model_path:
            normalised["model"] = self._fingerprint(model_path)
        return normalised

    @staticmethod
    def key_fields(normalised: dict[str, Any]) -> dict[str, Any]:
        """What add_normalised reads of the settings beside their JSON text (the fingerprints and
        the near keys' fields): all a worker process hands back with the text (5,000 nodes' full
        settings took 20 ms more to pickle and unpickle)."""
        return {k: normalised[k] for k in ("model", "inputs", "task") if k in normalised}

    def add_normalised(self, spec: JobSpec, parents: tuple[str, ...], normalised: dict[str, Any],
                       text: str | None = None) -> None:
        """The key from settings `normalised` made (text: as JSON, when made already; then
        key_fields(normalised) is enough) and the parents' keys (added before it)."""
        self._texts[spec.id] = settings_text(normalised) if text is None else text
        self._parent_keys[spec.id] = [self._keys.get(p) for p in parents]
        self._keys[spec.id] = node_key(spec.kind, normalised, self._parent_keys[spec.id], self._texts[spec.id])
        what = (spec.kind, repr(normalised.get("model")), repr((normalised.get("inputs") or {}).get("dataset")),
                repr(normalised.get("task")))
        if what not in self._near_of:
            self._near_of[what] = near_keys(spec.kind, normalised)
        self._near[spec.id] = self._near_of[what]

    def _model_path(self, spec: JobSpec) -> str | None:
        model = self.m["models"].get(spec.attrs.get("model")) if isinstance(spec.attrs.get("model"), str) else None
        return (model.get("path") or model.get("checkpoint")) if model else None  # a checkpoint: no path

    def parent_keys(self, parents: tuple[str, ...]) -> list[str | None]:
        return [self._keys.get(p) for p in parents]

    def stored(self, node_id: str) -> tuple[list[str], str | None, str]:
        """A keyed node's near keys, key and store-key settings as JSON, as render_cache keeps them."""
        return self._near[node_id], self._keys[node_id], self._texts[node_id]

    def adopt(self, spec: JobSpec, parents: tuple[str, ...], near: list[str], key: str | None, text: str) -> None:
        """A node rendered as the last plan did: its near keys, store key and settings from then."""
        self._parent_keys[spec.id] = self.parent_keys(parents)
        self._keys[spec.id] = key
        self._near[spec.id] = near
        self._texts[spec.id] = text

    def settings_file(self) -> str:
        """store-settings.json's text: each node's store-key settings (nested: flattened only where
        they are compared, for a miss with a near entry or a publish) as compact JSON with sorted
        keys and a newline, put together from each node's settings text in one join (5,000 nodes:
        5 MB, each copy of which cost 4 ms of fresh memory here)."""
        quote = encode_basestring_ascii  # json.dumps of a string, without its per-call set-up
        pieces = ["{"]
        for node_id in sorted(self._texts):
            pieces += (quote(node_id), ":", self._texts[node_id], ",")
        if len(pieces) > 1:
            pieces.pop()  # the last comma
        pieces.append("}\n")
        return "".join(pieces)

    def document(self) -> dict[str, Any]:
        """What `plan` writes to store-keys.json: each node's key (None: never stored), near keys
        and parents' keys."""
        return {"version": KEY_VERSION, "keys": self._keys, "near": self._near, "parents": self._parent_keys}
