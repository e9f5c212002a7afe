"""A --template typed on the command line means what the manifest's prompt.template means (issue 23, item 7)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cruijff.cli import cli


def _data(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"train": [{"input": "abc", "output": "ABC"}]}))
    return path


def test_template_file_holds_the_manifests_line_break_and_a_literal_backslash_n_warns(tmp_path):
    data = _data(tmp_path)
    (tmp_path / "t.txt").write_text("Word: {input}\nCapitalized:\n")
    res = CliRunner().invoke(cli, ["data", "convert", str(data), str(tmp_path / "a"), "--to", "chat_json",
                                   "--template-file", str(tmp_path / "t.txt")])
    assert res.exit_code == 0, res.output
    chat = json.loads((tmp_path / "a").with_suffix(".json").read_text() if (tmp_path / "a.json").exists()
                      else next((tmp_path / "a").rglob("*.json")).read_text() if (tmp_path / "a").is_dir()
                      else (tmp_path / "a").read_text())
    text = json.dumps(chat)
    assert "Word: abc\\nCapitalized:" in text  # a real line break, as in the manifest
    res = CliRunner().invoke(cli, ["data", "convert", str(data), str(tmp_path / "b"), "--to", "chat_json",
                                   "--template", "Word: {input}\\nCapitalized:"])
    assert res.exit_code == 0 and "backslash followed by n" in res.stderr


def test_template_and_template_file_together_are_refused(tmp_path):
    (tmp_path / "t.txt").write_text("{input}")
    res = CliRunner().invoke(cli, ["data", "convert", str(_data(tmp_path)), str(tmp_path / "c"), "--to", "chat_json",
                                   "--template", "{input}", "--template-file", str(tmp_path / "t.txt")])
    from cruijff.errors import UsageError

    assert isinstance(res.exception, UsageError) and "not both" in str(res.exception)  # main: exit 2


def test_every_prompt_command_offers_template_file():
    for command in (["data", "stats"], ["data", "convert"], ["embed"], ["logits"]):
        res = CliRunner().invoke(cli, [*command, "--help"])
        assert "--template-file" in res.output, command
