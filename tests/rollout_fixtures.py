"""Fixtures of the rollout tests (a plugin of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import copy_project
from rollout_helpers import canary_config, load_cfg, running_canary


@pytest.fixture(scope="session")
def canary_session(watch_champion: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The article's version 1 as champion and version 2 (retrained on every row, passing
    the gate) as the canary at 30%: a real `run` in `rollout.mode: canary`, once per
    session; tests work on copies (`canary_proj`)."""
    from retrainer.cycle import run_cycle

    project = copy_project(watch_champion, tmp_path_factory.mktemp("canary") / "proj")
    canary_config(project)
    record = run_cycle(load_cfg(project), trigger="setup")
    assert record["decision"] == "canary_started", record["reason"]
    canary = running_canary(project)
    assert canary is not None and canary["version"] == "2" and canary["champion"] == "1"
    return project


@pytest.fixture
def canary_proj(canary_session: Path, tmp_path: Path) -> Path:
    return copy_project(canary_session, tmp_path / "proj")
