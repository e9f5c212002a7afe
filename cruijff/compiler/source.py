"""Load a manifest with ruamel.yaml's round-trip loader so every value can be traced to file:line:col."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, SequenceNode

from cruijff.errors import Location, ManifestError, Problem


class Source:
    """A loaded manifest: its data (ruamel CommentedMap) and where each value came from."""

    def __init__(self, path: Path, data: Any):
        self.path = path
        self.data = data
        self.overridden: dict[tuple, Location] = {}  # key path → its `--set` (cruijff.compiler.overrides)

    @property
    def display(self) -> str:
        return str(self.path)

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> Location:
        """The location of the value at `path`, or of the deepest part of it that exists.

        key=True points at the last key itself rather than its value (unknown keys, duplicates).
        A value set on the command line is located at its `--set` argument.
        """
        if self.overridden:
            for n in range(len(path), 0, -1):
                where = self.overridden.get(tuple(path[:n]))
                if where is not None:
                    return where
        node = self.data
        line, col = 0, 0
        if isinstance(node, (CommentedMap, CommentedSeq)):
            line, col = node.lc.line, node.lc.col
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, CommentedMap) and part in node:
                if key and last:
                    line, col = node.lc.key(part)
                else:
                    line, col = node.lc.value(part)
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line, col = node.lc.item(part)
                node = node[part]
            else:
                break
        return Location(self.display, line + 1, col + 1)


def load(path: str | Path) -> Source:
    """Read and parse a manifest; a syntax error is reported as a ManifestError with its location."""
    p = Path(path)
    display = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError([Problem(f"no such manifest: {display}", Location(display),
                                     "check the path, e.g. experiments/twins.yaml")]) from None
    except IsADirectoryError:
        raise ManifestError([Problem(f"{display} is a directory, not a manifest file", Location(display),
                                     "pass the YAML file inside it")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError([Problem(f"cannot read manifest: {e}", Location(display))]) from None
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        node = yaml.compose(text)  # parsed once: the node graph is checked, then built
        _refuse_alias_bombs(display, node)
        data = yaml.constructor.construct_document(node) if node is not None else None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = Location(display, mark.line + 1, mark.column + 1) if mark else Location(display)
        what = e.problem or e.context or "invalid YAML"
        if e.problem and e.context and e.context_mark and e.problem_mark \
                and e.context_mark.line != e.problem_mark.line:
            what += f" ({e.context} that starts at line {e.context_mark.line + 1})"
        raise ManifestError([Problem(f"YAML syntax error: {what}", loc,
                                     "fix the indentation or quoting around this place")]) from None
    except ManifestError:
        raise
    except Exception as e:  # ruamel raises a few unmarked errors (e.g. duplicate keys in some versions)
        raise ManifestError([Problem(f"YAML error: {e}".splitlines()[0], Location(display))]) from None
    if data is None:
        raise ManifestError([Problem("the manifest is empty", Location(display, 1, 1),
                                     "start from experiments/tiny.yaml or `cruijff schema`")])
    if not isinstance(data, CommentedMap):
        raise ManifestError([Problem("the manifest must be a mapping of keys to values", Location(display, 1, 1),
                                     "start from experiments/tiny.yaml")])
    return Source(p, data)


MAX_VALUES = 100_000  # values a manifest may hold with its aliases expanded (a real one holds hundreds)


def _refuse_alias_bombs(display: str, root: Any) -> None:
    """Refuse a manifest whose aliases expand to more than MAX_VALUES values ("billion laughs").

    Checked on the composed node graph, before any value is built: there an alias is the very node
    it names, so counting costs the size of the file, not of the tree. Every later stage (ruamel's
    own duplicate-key message included) walks the expanded tree: nine levels of ten aliases would
    keep `plan` busy for minutes.
    """
    sizes: dict[int, int] = {}

    def children(node: Any) -> list[Any]:
        if isinstance(node, MappingNode):
            return [part for pair in node.value for part in pair]
        return list(node.value) if isinstance(node, SequenceNode) else []

    def size(node: Any) -> int:
        key = id(node)
        if key not in sizes:
            sizes[key] = 1  # a node met again while counting it (a cycle) counts once
            sizes[key] = 1 + sum(size(child) for child in children(node))
        return sizes[key]

    if root is None:
        return
    try:
        if size(root) <= MAX_VALUES:
            return
    except RecursionError:
        raise ManifestError([Problem("the manifest is nested too deeply", Location(display, 1, 1),
                                     "a manifest needs a few levels of nesting; remove the rest")]) from None
    node = root  # descend to the smallest value that is too big: where the repeated aliases are
    while True:
        big = next((c for c in children(node) if sizes.get(id(c), 0) > MAX_VALUES), None)
        if big is None:
            break
        node = big
    mark = node.start_mark
    raise ManifestError([Problem(
        f"this value expands to {sizes[id(node)]:,} values through YAML aliases (more than {MAX_VALUES:,})",
        Location(display, mark.line + 1, mark.column + 1),
        "an alias of a value that is itself made of aliases multiplies; write the values out, or use "
        "aliases of plain values only")])


def to_plain(value: Any) -> Any:
    """ruamel's commented containers and scalars → plain dicts, lists, str, int, float, bool."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value
