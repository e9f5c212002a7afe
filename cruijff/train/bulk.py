"""Chat renders and token counts for many rows at once (issue 27.5: measuring a million rows).

`ChatRenderer` renders a chat with the template once per conversation shape (its roles) and fills
in each row's contents by plain string joins, where the template provably copies every message's
content verbatim: its source reads `content` only as a piece of `{{ ... }}` output (alone or
joined with `+` / `~`), never in a test, filter, call or assignment, and the render of unique
sentinel contents shows each of them unchanged. Any other template (one that trims or tests the
content, e.g. Llama 3's `| trim`) is rendered per row by jinja, as before. `encoder` tokenizes a
list of texts with the Rust tokenizer of a fast Hugging Face tokenizer as its own call does,
without building a BatchEncoding or offsets. `counter` counts tokens without encoding where the
tokenizer is a byte-level BPE whose cuts are plain regular expressions: encoding costs ~1 µs a
token, far more than the rest of a row's measurement. Callers still check all three against the
exact per-row build on sampled rows.
"""

from __future__ import annotations

import re
from typing import Any, Callable

# whitespace and letters of both cases around the slot number: a render that strips or recases loses them
_SENTINEL = " \n\ue000c{}C\ue001\n "
_SLOT = re.compile(" \n\ue000c([0-9]+)C\ue001\n ")
_JOINS = ("Add", "Concat")  # string concatenation: the content stays verbatim
_CAPTURES = ("FilterBlock", "AssignBlock", "Macro", "CallBlock")  # blocks whose output is transformed or kept


def copies_content(template: str) -> bool:
    """True when the jinja source uses message content only as output, as is (see the module)."""
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        tree = ImmutableSandboxedEnvironment(extensions=[jinja2.ext.loopcontrols]).parse(template)
    except Exception:  # transformers' own extensions ({% generation %}): not analysed, rendered per row
        return False

    def output_only(node: Any, parents: list[Any]) -> bool:
        is_content = ((isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
                       and node.arg.value == "content") or (isinstance(node, nodes.Getattr) and node.attr == "content"))
        if is_content:
            up = parents[::-1]
            while up and type(up[0]).__name__ in _JOINS:
                up.pop(0)
            return (bool(up) and isinstance(up[0], nodes.Output)
                    and not any(type(p).__name__ in _CAPTURES for p in parents))
        if isinstance(node, nodes.Const) and node.value == "content":  # content reached another way (.get)
            return False
        if isinstance(node, nodes.Name) and node.name == "content":
            return False
        return all(output_only(child, [*parents, node]) for child in node.iter_child_nodes())

    return output_only(tree, [])


class ChatRenderer:
    """render(messages, add_generation_prompt) -> the text `render` gives, by string joins where
    the template allows (see the module), else by `render` itself."""

    def __init__(self, render: Callable[..., str], template: str | None):
        self._render = render
        self._joins = template is None or (isinstance(template, str) and copies_content(template))
        self._skeletons: dict[tuple, tuple[list[str], list[int]] | None] = {}

    def __call__(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        key = (tuple(m["role"] for m in messages), add_generation_prompt)
        skeleton = self._skeletons[key] if key in self._skeletons else self._skeleton(key)
        if skeleton is None:
            return self._render(messages, add_generation_prompt=add_generation_prompt)
        pieces, slots = skeleton
        out = [pieces[0]]
        for slot, piece in zip(slots, pieces[1:]):
            out += (messages[slot]["content"], piece)
        return "".join(out)

    def _skeleton(self, key: tuple) -> tuple[list[str], list[int]] | None:
        """The sentinel render split into literal pieces and message slots; None where it cannot be."""
        roles, add_generation_prompt = key
        skeleton = None
        if self._joins:
            sentinels = [{"role": r, "content": _SENTINEL.format(k)} for k, r in enumerate(roles)]
            try:
                text = self._render(sentinels, add_generation_prompt=add_generation_prompt)
            except Exception:  # the template refuses this shape: the per-row render says why
                text = None
            if text is not None:
                parts = _SLOT.split(text)
                pieces, slots = parts[0::2], [int(s) for s in parts[1::2]]
                if (sorted(set(slots)) == list(range(len(roles)))
                        and not any("\ue000" in p or "\ue001" in p for p in pieces)):
                    skeleton = (pieces, slots)
        self._skeletons[key] = skeleton
        return skeleton


def encoder(hf: Any, call_args: dict[str, Any]) -> Callable[[list[str]], list[Any]] | None:
    """encode(texts) -> the Rust encodings (`.ids`, `len()`) of `hf(texts, **call_args)`; None for
    a slow (Python) tokenizer or a call with arguments other than add_special_tokens. Each call
    first makes that same call on an empty text, so the Rust tokenizer is set up (no truncation or
    padding, its special-token splitting) as the call sets it."""
    backend = getattr(hf, "_tokenizer", None) if getattr(hf, "is_fast", False) else None
    if backend is None or not hasattr(backend, "encode_batch_fast") or set(call_args) != {"add_special_tokens"}:
        return None

    def encode(texts: list[str]) -> list[Any]:
        if not texts:
            return []
        hf("", **call_args)
        return backend.encode_batch_fast(texts, add_special_tokens=call_args["add_special_tokens"])

    return encode


# GPT-2's pre-tokenizer pattern: what tokenizers' ByteLevel(use_regex=True) splits with
_GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_NOT_PLAIN = re.compile(r"[^\t\n\r\x20-\x7e]")  # texts with any such character are tokenized by Rust
_ESCAPES = set("sSdDwWrnt\\'.-[](){}|?+*^$/ ")
MEMO = 200_000  # pieces whose token counts are remembered (then forgotten, to bound memory)
RECENT = 4096  # texts between added tokens whose counts are remembered, likewise
PARALLEL_ROWS = 20_000  # a split from this many rows is counted a share per core (cruijff.cores)


class _EmptyMatch(Exception):
    """A split pattern matched no character: that text is encoded instead."""


def _ascii_pattern(pattern: str) -> re.Pattern | None:
    """An Oniguruma pre-tokenizer pattern as Python's re for printable ASCII text (where \\p{L} is
    [A-Za-z], \\p{N} [0-9] and \\s, \\d, \\w mean the same), or None where it uses anything else."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            name = pattern[i:i + 5]
            if name in (r"\p{L}", r"\p{N}"):
                letters = "A-Za-z" if name == r"\p{L}" else "0-9"
                out.append(letters if in_class else f"[{letters}]")
                i += 5
                continue
            if pattern[i + 1:i + 2] not in _ESCAPES:
                return None
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[":
            if in_class:  # a nested class: Oniguruma's meaning is not Python's
                return None
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    try:
        return re.compile("".join(out), re.ASCII)
    except re.error:
        return None


def _piece_patterns(config: dict) -> list[tuple[re.Pattern, bool]] | None:
    """The splits a byte-level BPE tokenizer's pre-tokenizer makes, as Python patterns for ASCII
    text: ByteLevel with its own regex, after any Split(regex, Isolated) or Digits steps (SmolLM2's);
    each with whether it matches every character (no text is left between its matches)."""
    steps = config.get("pretokenizers") if config.get("type") == "Sequence" else [config]
    if not steps or steps[-1].get("type") != "ByteLevel" or steps[-1].get("add_prefix_space"):
        return None
    patterns = [(r"\p{N}" if p.get("individual_digits") else r"\p{N}+") if p.get("type") == "Digits"
                else p.get("pattern", {}).get("Regex") for p in steps[:-1]
                if p.get("type") == "Digits"
                or (p.get("type") == "Split" and p.get("behavior") == "Isolated" and not p.get("invert"))]
    if len(patterns) != len(steps) - 1 or None in patterns:
        return None
    if steps[-1].get("use_regex"):
        patterns.append(_GPT2)
    compiled = [_ascii_pattern(p) for p in patterns]
    if not compiled or None in compiled:
        return None
    return [(c, p == _GPT2) for c, p in zip(compiled, patterns)]  # GPT-2's pattern matches every character


def counter(hf: Any, call_args: dict[str, Any], watch: int | None = None
            ) -> Callable[[list[str]], list[tuple[int, bool]]] | None:
    """count(texts) -> [(tokens, whether token `watch` is among them)] of `hf(texts, **call_args)`.

    For a byte-level BPE tokenizer (no normalizer, no dropout, added tokens matched as they are)
    a text of printable ASCII is counted without encoding it: the tokenizer cuts the text at its
    added tokens, its pre-tokenizer cuts the rest into pieces by a regular expression, and the
    model tokenizes each piece on its own; here the same cuts are made in Python and each
    distinct piece is tokenized once by the model itself (`tokenizer.model.tokenize`) and its count
    remembered (and the recent texts between added tokens: a prompt counted again inside its
    chat). Any other text, or tokenizer, is encoded by `encoder`. None where `encoder` is.
    """
    import json

    encode = encoder(hf, call_args)
    if encode is None:
        return None

    def encoded(texts: list[str]) -> list[tuple[int, bool]]:
        return [(len(e), watch in e.ids) for e in encode(texts)]

    backend = hf._tokenizer
    hf("", **call_args)
    pre_tokenizer = backend.pre_tokenizer
    patterns = _piece_patterns(json.loads(pre_tokenizer.__getstate__())) if pre_tokenizer is not None else None
    added = backend.get_added_tokens_decoder()
    if (patterns is None or backend.normalizer is not None or type(backend.model).__name__ != "BPE"
            or backend.model.dropout or backend.encode_special_tokens
            or type(backend.post_processor).__name__ not in ("NoneType", "ByteLevel", "TemplateProcessing")
            or any(a.single_word or a.lstrip or a.rstrip for a in added.values())
            or len({a.normalized for a in added.values()}) > 1):  # matched in one pass, as here
        return encoded
    from tokenizers import pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    added_ids = {a.content: i for i, a in added.items()}
    longest_first = sorted(added_ids, key=len, reverse=True)  # leftmost-longest, as tokenizers matches them
    cut = re.compile("(" + "|".join(map(re.escape, longest_first)) + ")") if added_ids else None
    extra = encode([""])[0]  # what the post-processor adds (BOS with add_special_tokens)
    base = (len(extra), watch in extra.ids)
    memo: dict[str, int] = {}  # piece -> its token count
    watched: set[str] = set()  # pieces whose tokens include `watch`
    recent: dict[str, tuple[int, bool]] = {}  # segment -> count: a prompt counted again inside its chat

    def pieces(segment: str) -> list[str]:
        parts = [segment]
        for pattern, covers in patterns:
            split = []
            for part in parts:
                if covers:
                    split += pattern.findall(part)
                    continue
                at = 0
                for m in pattern.finditer(part):  # the text between matches is a piece too
                    if m.start() == m.end():  # Rust's regex and Python's step over empty matches differently
                        raise _EmptyMatch
                    split += [p for p in (part[at:m.start()], m.group()) if p]
                    at = m.end()
                split += [part[at:]] if part[at:] else []
            parts = split
        return parts

    def learn(found: list[str]) -> None:
        for text in found:
            if text not in memo:
                ((mapped, _),) = byte_level.pre_tokenize_str(text)
                ids = [t.id for t in backend.model.tokenize(mapped)]
                memo[text] = len(ids)
                if watch in ids:
                    watched.add(text)

    def count(text: str) -> tuple[int, bool]:
        if len(memo) >= MEMO:
            memo.clear()
            watched.clear()
        n, seen = base
        segments = cut.split(text) if cut else [text]
        for token in segments[1::2]:  # the added tokens
            n, seen = n + 1, seen or added_ids[token] == watch
        for segment in segments[::2]:
            if segment:
                m, s = recent.get(segment) or segment_count(segment)
                n, seen = n + m, seen or s
        return n, seen

    def segment_count(segment: str) -> tuple[int, bool]:
        if len(recent) >= RECENT:
            recent.clear()
        found = pieces(segment)
        try:
            n = sum(map(memo.__getitem__, found))
        except KeyError:
            learn(found)
            n = sum(map(memo.__getitem__, found))
        recent[segment] = n, bool(watched and not watched.isdisjoint(found))
        return recent[segment]

    def counts(texts: list[str]) -> list[tuple[int, bool]]:
        out = []
        for text in texts:
            try:
                out.append(None if _NOT_PLAIN.search(text) else count(text))
            except _EmptyMatch:
                out.append(None)
        rest = iter(encoded([t for t, c in zip(texts, out) if c is None]))
        return [c if c is not None else next(rest) for c in out]

    return counts
