"""docs/manifest.md is generated from the schema; this keeps them in step."""

from pathlib import Path

from cruijff.compiler.docgen import render
from cruijff.compiler.schema import load_schema

REPO = Path(__file__).resolve().parents[2]


def test_manifest_reference_is_up_to_date():
    assert (REPO / "docs" / "manifest.md").read_text() == render(), \
        "run: python -m cruijff.compiler.docgen > docs/manifest.md"


def _walk(node, path):
    if isinstance(node, dict):
        for key, sub in node.get("properties", {}).items():
            yield f"{path}.{key}", sub
            yield from _walk(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from _walk(node[key], f"{path}.{key}")
        for key, sub in node.get("$defs", {}).items():
            yield from _walk(sub, f"$defs.{key}")


def _described(sub, schema):
    if "description" in sub:
        return True
    if "$ref" in sub:
        node = schema
        for part in sub["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return "description" in node
    return False


def test_every_property_has_a_description():
    schema = load_schema()
    missing = [p for p, sub in _walk(schema, "") if not _described(sub, schema)]
    assert not missing, missing


# --- what the docs show and what messages point to (issue 23, item 12) ------------------------

import re  # noqa: E402

import click  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from cruijff.cli import cli  # noqa: E402

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    return [m.group(1) for m in re.finditer(r"^#+ (.+)$", text, re.M)]


def _shown_commands() -> list[tuple[str, list[str]]]:
    """(doc, argv) of every `cruijff ...` line in a code block of the docs, comments dropped."""
    found = []
    for doc in DOCS:
        for block in FENCE.findall(doc.read_text()):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("cruijff ") and "|" not in line.split("cruijff ", 1)[1].split()[0]:
                    found.append((str(doc.relative_to(REPO)), line.split()[1:]))
    return found


def _command_path(argv: list[str]) -> list[str]:
    group, path = cli, []
    for word in argv:
        sub = group.get_command(click.Context(group), word) if isinstance(group, click.Group) else None
        if sub is None:
            break
        path.append(word)
        group = sub
    return path


def test_every_command_the_docs_show_exists_with_the_options_they_show():
    shown = _shown_commands()
    assert len(shown) > 15
    helps: dict[tuple, str] = {}
    bad = []
    for doc, argv in shown:
        path = _command_path(argv)
        if not path:
            bad.append(f"{doc}: `cruijff {' '.join(argv)}`: no such command")
            continue
        if tuple(path) not in helps:
            res = CliRunner().invoke(cli, [*path, "--help"])
            assert res.exit_code == 0, (path, res.output)
            helps[tuple(path)] = res.output
        for option in (w.strip("[]").split("=")[0] for w in argv if w.strip("[").startswith("--")):
            if option not in helps[tuple(path)]:
                bad.append(f"{doc}: `cruijff {' '.join(argv)}`: {' '.join(path)} has no {option}")
    assert not bad, "\n".join(bad)


def test_every_docs_place_a_message_names_exists():
    """`docs/x.md`, `docs/x.md#anchor` and `docs/x.md, 'Section'` in cruijff's messages and comments."""
    bad = []
    for source in sorted((REPO / "cruijff").rglob("*.py")):
        text = source.read_text()
        for m in re.finditer(r"docs/([\w/]+\.md)(?:#([\w-]+)|, '([^']+)'|, ([a-z][a-z ]+)\))?", text):
            doc = REPO / "docs" / m.group(1)
            where = f"{source.relative_to(REPO)}: {m.group(0)}"
            if not doc.is_file():
                bad.append(f"{where}: no such file")
            elif m.group(2) and m.group(2) not in {_slug(h) for h in _headings(doc)}:
                bad.append(f"{where}: no such anchor")
            elif (m.group(3) or m.group(4)) and not any(h.lower().startswith((m.group(3) or m.group(4)).lower())
                                                        for h in _headings(doc)):
                bad.append(f"{where}: no such section")
    assert not bad, "\n".join(bad)


def test_the_tutorials_example_error_is_what_validate_says(tmp_path):
    """docs/tutorial.md shows the error of a misspelt grid key in experiments/tiny.yaml: same place, same text."""
    shown = next(line for line in (REPO / "docs" / "tutorial.md").read_text().splitlines()
                 if line.startswith("experiments/tiny.yaml:") and "lora_rnak" in line)
    text = (REPO / "experiments" / "tiny.yaml").read_text()
    assert text.count("\n  lora_rank: ") == 1
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(text.replace("\n  lora_rank: ", "\n  lora_rnak: "))
    res = CliRunner().invoke(cli, ["validate", str(manifest)])
    assert res.exit_code == 2
    said = next(line for line in res.stderr.splitlines() if "lora_rnak" in line)
    assert said.replace(str(manifest), "experiments/tiny.yaml").startswith(shown.removesuffix("...)"))
