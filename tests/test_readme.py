"""The README's Python examples run as written."""

from __future__ import annotations

import doctest
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.rst"


def test_readme_examples():
    result = doctest.testfile(str(README), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20
    assert result.failed == 0


def test_readme_never_says_pip_install_celery_beatx_without_sql():
    text = README.read_text()
    assert "pip install celery-beatx " not in text and "pip install celery-beatx\n" not in text
    assert "make demo" in text and "make test" in text
