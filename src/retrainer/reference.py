"""A registered version's reference profile: where it is, and attaching one that is missing.

A version retrainer trained logged `reference_profile.json` with its run at training time.
A version registered with plain MLflow (the "deploy model" pattern, the article's third
trigger) has none, and its run often logged no training data either, so drift could
never be measured against it. When retrainer judges such a version (`promote`, `watch`'s
new-version trigger) it has the holdout in hand: it builds the profile from those rows,
the version's predictions on them and its permutation importance there, says so in the
profile's `source`, and logs it on the version's run (or, when the version has no run or
its run refuses the write, on a run of its own in the model's experiment). The version
tag `retrainer.reference_profile` names the artifact; `logged_profile` reads it back.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

from retrainer import registry, stamp
from retrainer.drift.profile import JUDGED_ROWS, PROFILE_ARTIFACT, load_profile
from retrainer.redact import redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from retrainer.config import Config
    from retrainer.data import Dataset
    from retrainer.training import TrainedModel

log = logging.getLogger("retrainer")

#: Version tag (under ``retrainer.``): ``runs:/<run_id>/reference_profile.json``.
PROFILE_TAG = "reference_profile"


def logged_profile(client: MlflowClient, mv: Any) -> dict | None:
    """The version's profile: where its tag points, else on its run; None when it has none."""
    where = (mv.tags or {}).get(f"{registry.PREFIX}{PROFILE_TAG}", "")
    places = []
    if where.startswith("runs:/"):
        run_id, _, path = where.removeprefix("runs:/").partition("/")
        places.append((run_id, path or PROFILE_ARTIFACT))
    if mv.run_id:
        places.append((mv.run_id, PROFILE_ARTIFACT))
    for run_id, path in places:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = client.download_artifacts(run_id, path, tmp)
            except Exception:  # noqa: BLE001 - not logged there (or the run is gone)
                continue
            if os.path.exists(local):
                return load_profile(local)
    return None


def attach_if_missing(cfg: Config, client: MlflowClient, version: str,
                      model: TrainedModel, inputs: Any, holdout: Dataset, *,
                      decision_id: str) -> str | None:
    """Build and log a profile for a judged version that has none; where it went, or None.

    Monitoring is an add-on to the judgement: a failure here is a warning, never a
    failed promotion.
    """
    try:
        mv = registry.get_version(client, cfg.model, version)
        if logged_profile(client, mv) is not None:
            return None
        profile = judged_profile(cfg, version, model, inputs, holdout, decision_id)
        where = _log(cfg, client, mv, profile)
        registry.tag_version(client, cfg.model, version, {PROFILE_TAG: where})
    except Exception as err:  # noqa: BLE001
        log.warning("could not attach a reference profile to version %s: %s", version,
                    redact(str(err).splitlines()[0] if str(err) else type(err).__name__))
        return None
    log.info("version %s had no reference profile: built one from the %d holdout rows it "
             "was judged on (%s)", version, len(holdout), where)
    return where


def judged_profile(cfg: Config, version: str, model: TrainedModel, inputs: Any,
                   holdout: Dataset, decision_id: str) -> dict:
    """The holdout's inputs as the version sees them, its predictions and importance there."""
    import pandas as pd

    from retrainer.drift.profile import build_profile
    from retrainer.importance import importance_record
    from retrainer.training import predict

    view = holdout.X if inputs is None else inputs
    # A tensor-input model takes the holdout's feature columns positionally.
    frame = view if isinstance(view, pd.DataFrame) else holdout.X
    pred, _ = predict(model.model, view, model.task)
    importance = importance_record(model.model, view, holdout.y, cfg.primary_metric,
                                   labels=model.labels, columns=list(frame.columns))
    source = {"kind": JUDGED_ROWS, "version": str(version), "rows": len(holdout),
              "data": redact(holdout.source), "decision_id": decision_id,
              "at": stamp.now_iso(),
              "note": "built when retrainer judged this version: it was registered without "
                      "a reference profile, so the holdout rows it was judged on stand in "
                      "for its training rows"}
    return build_profile(frame, pred, bins=cfg.drift.bins, importance=importance,
                         source=source)


def _log(cfg: Config, client: MlflowClient, mv: Any, profile: dict) -> str:
    """On the version's run when it takes the write, else on a run of its own."""
    if mv.run_id:
        try:
            client.log_dict(mv.run_id, profile, PROFILE_ARTIFACT)
            return f"runs:/{mv.run_id}/{PROFILE_ARTIFACT}"
        except Exception as err:  # noqa: BLE001 - e.g. a read-only artifact store
            log.info("cannot log on version %s's run (%s): using a run of its own",
                     mv.version, redact(str(err).splitlines()[0] if str(err) else "error"))
    run = client.create_run(
        registry.experiment_id(cfg),
        tags={f"{registry.PREFIX}model": cfg.model,
              f"{registry.PREFIX}kind": "reference_profile",
              f"{registry.PREFIX}version": str(mv.version),
              "mlflow.runName": f"reference-profile-{cfg.model}-v{mv.version}"})
    client.log_dict(run.info.run_id, profile, PROFILE_ARTIFACT)
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/{PROFILE_ARTIFACT}"
