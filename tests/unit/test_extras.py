"""A core-only install: a command whose feature needs an extra says which, in one line (issue 23, items 6, 9)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from cruijff.cli import main, quiet_known_noise


def run(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out + captured.err


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"train": [{"input": "a", "output": "A"}], "test": [{"input": "a", "output": "A"}]}))
    (tmp_path / "model").mkdir()
    return tmp_path


@pytest.mark.parametrize("argv, missing, extra", [
    (["tiny-model", "{tmp}/tiny"], ("torch", "transformers"), "train"),
    (["embed", "{tmp}/d.json", "--model", "{tmp}/model", "--out", "{tmp}/e.h5"], ("torch", "transformers"), "train,kit"),
    (["logits", "{tmp}/d.json", "--model", "{tmp}/model", "--out", "{tmp}/l.h5", "--answers", "A,B"],
     ("torch", "transformers"), "train,kit"),
    (["check-finetuned", "{tmp}/model", "--base", "{tmp}/model"], ("torch", "transformers"), "train,kit"),
    (["data", "convert", "{tmp}/d.json", "{tmp}/p", "--to", "parquet"], ("pyarrow",), "kit"),
])
def test_a_missing_extra_is_one_line_with_its_install_command(argv, missing, extra, data, capsys, monkeypatch):
    for root in missing:  # `import torch` fails as where it is not installed
        for name in [m for m in sys.modules if m == root or m.startswith(root + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, root, None)
    code, out = run([a.format(tmp=data) for a in argv], capsys)
    assert code == 1, out
    assert "Traceback" not in out and f"pip install 'cruijff[{extra}]'" in out and any(m in out for m in missing)
    assert len(out.strip().splitlines()) == 1, out


def test_torchaos_cpp_extension_warning_is_dropped_and_nothing_else(caplog):
    quiet_known_noise()
    logger = logging.getLogger("torchao")
    with caplog.at_level(logging.WARNING):
        logger.warning("Skipping import of cpp extensions due to incompatible torch version 2.6.0")
        logger.warning("another torchao warning")
    assert [r.getMessage() for r in caplog.records] == ["another torchao warning"]
