"""The promotion re-check, made deterministic: the champion moves between judging and
promoting, by hand, and the re-check's verdict against the new champion decides.

(The 8-process concurrency test exercises the same path by timing; this one cannot miss.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from registry_helpers import load_cfg, week_ago_champion


def _register_by_hand(cfg: Any, estimator: Any, rows: Any) -> str:
    """A version registered with plain MLflow (no retrainer fingerprints)."""
    import mlflow
    from mlflow.models import infer_signature

    from retrainer import registry

    model = estimator.fit(rows.X, rows.y)
    with mlflow.start_run(experiment_id=registry.experiment_id(cfg)):
        # Explicit requirements: inferring them spawns a subprocess (~3 s) for nothing here.
        info = mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(rows.X, model.predict(rows.X)),
            pip_requirements=["scikit-learn"])
    return str(mlflow.register_model(info.model_uri, cfg.model).version)


def _judged_then_champion_moved(project: Path, rival_estimator: Any) -> dict[str, Any]:
    """Judge a fresh challenger against v1, move `champion` to a rival, then promote."""
    from retrainer import cycle, registry, training
    from retrainer import data as data_mod

    week_ago_champion(project)  # v1 is the champion
    cfg = load_cfg(project)
    client = registry.connect(cfg)
    rows = data_mod.load(cfg)
    train_rows, holdout = data_mod.split(rows, cfg.split)
    champion = cycle.load_champion(cfg, client)
    assert champion is not None and champion.version == "1"
    trained = training.fit_and_log(cfg, train_rows, holdout, cycle_id="recheck",
                                   trigger="test")
    candidate = cycle.Candidate(trained, fingerprints=data_mod.fingerprints(train_rows),
                                train_rows=train_rows)
    judged = cycle.judge(cfg, candidate, champion, holdout)
    assert judged.verdict.promotes  # against v1 it passes (the article's outcome)

    rival = _register_by_hand(cfg, rival_estimator, rows)
    client.set_registered_model_alias(cfg.model, "champion", rival)

    record = cycle.promote_and_record(cfg, client, candidate, judged, rows, holdout,
                                      decision_id="recheck", trigger="test", reason=None,
                                      kind=None)
    aliases = {a: str(v) for a, v in client.get_registered_model(cfg.model).aliases.items()}
    return {"record": record, "rival": rival, "aliases": aliases}


def test_a_stronger_champion_appearing_while_judging_keeps_it(project: Path) -> None:
    from sklearn.linear_model import Ridge

    # Trained on every row, holdout included: on the holdout it beats any honest challenger.
    out = _judged_then_champion_moved(project, Ridge(alpha=0.001))
    record, rival = out["record"], out["rival"]
    assert record["decision"] == "kept_champion"
    assert record["reason"] == (f"champion changed to version {rival} while judging; the "
                                "re-check against it rejected this challenger")
    assert record["champion"]["version"] == rival  # the record shows the re-judged contest
    assert record["move"] is None
    assert out["aliases"]["champion"] == rival


def test_a_weaker_champion_appearing_while_judging_is_displaced(project: Path) -> None:
    from sklearn.dummy import DummyRegressor

    out = _judged_then_champion_moved(project, DummyRegressor())
    record, rival = out["record"], out["rival"]
    assert record["decision"] == "promoted"
    assert record["champion"]["version"] == rival  # re-judged against the dummy, not v1
    assert record["champion"]["metrics"]["mse"] > record["challenger"]["metrics"]["mse"]
    challenger = record["challenger"]["version"]
    assert record["move"] == pytest.approx({"champion": challenger, "previous": rival,
                                            "kind": "promoted", "at": record["move"]["at"]})
    assert out["aliases"]["champion"] == challenger
    assert out["aliases"]["previous"] == rival
