"""Slices: the safe `where` grammar, definitions refused with exit 2, and a slice that flips
the decision on a real embedded store (promoted without slices, kept with them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import edit_config, registry_snapshot, run_cli
from retrainer.config import load, parse
from retrainer.cycle import judge_version, run_cycle
from retrainer.errors import UserError
from retrainer.where import WhereError, parse_where

FRAME = pd.DataFrame({"region": ["DE", "US", "FR", None], "age": [20, 40, 60, np.nan],
                      "age group": ["a", "b", "a", "b"]})


@pytest.mark.parametrize(("text", "expected"), [
    ("region in ['DE', 'FR']", [True, False, True, False]),
    ("region not in ['DE', 'FR']", [False, True, False, True]),
    ("age >= 30 and not region == 'US'", [False, False, True, False]),
    ("0 <= age < 50", [True, True, False, False]),
    ("`age group` == 'a' or age > 55", [True, False, True, False]),
    ("age > -1", [True, True, True, False]),
])
def test_where_selects_rows(text: str, expected: list[bool]) -> None:
    assert parse_where(text).mask(FRAME).tolist() == expected


@pytest.mark.parametrize(("text", "fragment"), [
    ("__import__('pathlib').Path('pwned').touch()", "calling a function is not allowed"),
    ("age.real > 1", "attribute access is not allowed"),
    ("region[0] == 'D'", "subscripting is not allowed"),
    ("age + 1 > 2", "arithmetic is not allowed"),
    ("region in ['DE', age.real]", "lists may hold only constants"),
    ("__builtins__ == 1", "name '__builtins__' is not allowed"),
    ("region in x", "`in` needs a list"),
    ("1 < 2", "names no column"),
    ("age >", "not a valid expression"),
])
def test_where_refuses_anything_but_the_grammar(text: str, fragment: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WhereError, match=fragment.replace("[", r"\[")):
        parse_where(text).mask(FRAME)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(("slices", "fragment"), [
    ([{"where": "region in ['DE'"}], "gate.slices.0: where \"region in ['DE'\": not a valid"),
    ([{"where": "__import__('os').system('true')"}], "calling a function is not allowed"),
    ([{"column": "sex", "where": "age > 3"}], "exactly one of column"),
    ([{"column": "age", "bins": [50, 30]}], "increasing edges"),
    ([{"where": "age > 1", "bins": [1, 2]}], "bins go with column"),
    ([{"column": "sex"}, {"column": "sex"}], "two slice definitions are named 'sex'"),
    ([{"colum": "sex"}], "unknown key 'gate.slices.0.colum' (did you mean 'column'?)"),
])
def test_bad_slice_definitions_fail_at_config_load(slices: list, fragment: str) -> None:
    with pytest.raises(UserError) as err:
        parse({"model": "m", "data": {"source": "x.csv"}, "train": {"estimator": "a.B"},
               "gate": {"slices": slices}}, Path("."))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("slices", "fragment"), [
    ([{"column": "regoin"}], "unknown column 'regoin'"),
    ([{"name": "eu", "where": "regoin in ['DE']"}], "gate.slices[0] (eu): unknown column "
                                                    "'regoin' (did you mean 'region'?)"),
    ([{"column": "region", "bins": [0, 1]}], "bins need a numeric column"),
    ([{"column": "bmi"}], "distinct values (more than 50): give bins"),
    ([{"where": "region > 3"}], "cannot compare 'region' with 3"),
])
def test_slices_the_data_cannot_hold_exit_2_before_anything_is_written(
        project: Path, slices: list, fragment: str) -> None:
    frame = pd.read_csv(project / "data" / "diabetes.csv")
    frame["region"] = np.where(frame.index % 2 == 0, "DE", "US")
    frame.to_csv(project / "data" / "diabetes.csv", index=False)
    edit_config(project, data={"drop": ["region"]}, gate={"slices": slices})
    with pytest.raises(UserError) as err:
        run_cycle(load(project / "retrainer.yaml"))
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert registry_snapshot(project) == {}
    runs = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}").search_runs(
        [e.experiment_id for e in MlflowClient(
            tracking_uri=f"sqlite:///{project / 'mlflow.db'}").search_experiments()])
    assert runs == [], "nothing trained or logged"


def test_bad_where_through_the_cli_is_exit_2_one_line(project: Path) -> None:
    run_cycle(load(project / "retrainer.yaml"))
    before = registry_snapshot(project)
    edit_config(project, gate={"slices": [{"where": "sex.__class__ == 1"}]})
    result = run_cli("run", "--json", cwd=project, timeout=120)
    assert result.code == 2, result.stderr
    assert result.stdout == ""
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "attribute access is not allowed" in lines[0]
    assert registry_snapshot(project) == before


def _segment_data(project: Path) -> tuple[str, str]:
    """Old rows: one slope everywhere. New rows: segments A and B change slope, C does not.

    The training code fits one slope for all segments (segment is not a feature), so the
    retrained model is much better on A and B on average, and clearly worse on C.
    """
    rng = np.random.default_rng(7)

    def rows(n: int, new: bool) -> pd.DataFrame:
        x, x2 = rng.normal(size=n), rng.normal(size=n)
        seg = rng.choice(["A", "B", "C"], size=n, p=[0.375, 0.375, 0.25])
        slope = np.where(new & (seg != "C"), 16.0, 10.0)
        y = slope * x + 5 * x2 + rng.normal(scale=3.0, size=n)
        return pd.DataFrame({"x": x, "x2": x2, "segment": seg, "target": y})

    old = rows(800, False)
    current = pd.concat([old, rows(1200, True)], ignore_index=True)
    old_path, cur_path = project / "data" / "old.csv", project / "data" / "segments.csv"
    old.to_csv(old_path, index=False)
    current.to_csv(cur_path, index=False)
    return str(old_path), str(cur_path)


SLICES = [{"column": "segment"}, {"column": "x2", "bins": [-10, 0, 10]},
          {"name": "extreme", "where": "x > 2.8"}]


def test_a_worse_slice_keeps_the_champion_that_the_average_would_replace(
        project: Path) -> None:
    old, current = _segment_data(project)
    edit_config(project, data={"source": "data/segments.csv", "target": "target",
                               "drop": ["segment"]},
                train={"estimator": "sklearn.linear_model.LinearRegression", "params": {}},
                gate={"slices": SLICES, "slice_min_rows": 30, "max_slice_degradation": 0.05,
                      "thresholds": {}, "all_metrics_improve": True},
                metrics=["mse", "rmse", "r2"], replace=("train",))
    cfg = load(project / "retrainer.yaml")
    assert run_cycle(cfg, data=old)["decision"] == "first_champion"

    kept = run_cycle(cfg)
    assert kept["decision"] == "kept_champion", kept["reason"]
    by_name = {s["slice"]: s for s in kept["slices"]}
    assert {"segment=A", "segment=B", "segment=C", "x2=[-10, 0)", "x2=[0, 10]",
            "extreme"} <= set(by_name)
    c = by_name["segment=C"]
    assert c["status"] == "judged" and c["passed"] is False
    assert c["challenger"] > c["champion"] * 1.05
    assert c["relative_interval"][0] > 0.05  # the interval's better end is past the limit
    line = next(ch["detail"] for ch in kept["checks"] if ch["name"] == "slices")
    assert line.startswith("slice segment=C: mse ")
    assert "vs champion" in line and line.endswith("> 5% allowed")
    assert "slice segment=C: mse" in kept["reason"]
    assert by_name["segment=A"]["passed"] is True and by_name["segment=A"]["relative"] < 0
    # The small slice is listed as such, not dropped, and not judged.
    assert by_name["extreme"]["status"] == "too_small" and by_name["extreme"]["passed"] is None
    assert by_name["extreme"]["rows"] < 30
    # On average the challenger is better: only the slice kept the champion.
    assert kept["challenger"]["metrics"]["mse"] < kept["champion"]["metrics"]["mse"]
    assert [c["name"] for c in kept["checks"] if not c["passed"]] == ["slices"]
    assert registry_snapshot(project)["aliases"]["champion"] == "1"

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    md = Path(client.download_artifacts(kept["challenger"]["run_id"], "decision.md")).read_text()
    assert "## Slices" in md and "| segment=C |" in md and "too small to judge" in md
    logged = json.loads(Path(client.download_artifacts(kept["challenger"]["run_id"],
                                                       "decision.json")).read_text())
    assert logged["slices"] == kept["slices"]

    # The same challenger without slices: the average alone promotes it.
    edit_config(project, gate={"slices": []})
    promoted = judge_version(load(project / "retrainer.yaml"), "2")
    assert promoted["decision"] == "promoted", promoted["reason"]
    assert promoted["slices"] == []
    assert registry_snapshot(project)["aliases"]["champion"] == "2"
