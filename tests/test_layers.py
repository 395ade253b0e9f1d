"""The import layering of STYLE §1, as the contracts in pyproject.toml's
[tool.importlinter] state it: features <- models <- training; serving imports training
only in serving/jobs/; nothing imports bench. A new import against them fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_imports_keep_the_layers(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "0 broken" in report
