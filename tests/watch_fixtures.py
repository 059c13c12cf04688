"""Fixtures of the watch tests (a plugin of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import copy_project
from watch_helpers import make_champion_project


@pytest.fixture(scope="session")
def watch_champion(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> Path:
    """The article's version 1 as champion, made once per session (per xdist worker);
    each test works on its own copy (`proj`), so this one never changes."""
    return make_champion_project(tmp_path_factory.mktemp("watch-champion"), store_template)


@pytest.fixture
def proj(watch_champion: Path, tmp_path: Path) -> Path:
    """A private copy of the champion project and its store."""
    return copy_project(watch_champion, tmp_path / "proj")
