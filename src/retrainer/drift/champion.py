"""`retrainer drift`: current data against the champion's reference profile.

The one drift module that reaches up: it finds the champion in the registry, reads its
logged profile (or rebuilds one from its run's training rows), scores current data
with the champion for prediction drift, and calls `statistics.compare`. When the
champion the registry names is the one an earlier check kept (`champion_cache`), its
profile and model come from there and MLflow is not imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from retrainer import data as data_mod
from retrainer.drift import champion_cache
from retrainer.drift.profile import PROFILE_ARTIFACT, as_float, build_profile, describe
from retrainer.drift.statistics import DriftReport, cell, compare, explain
from retrainer.errors import UserError

if TYPE_CHECKING:
    from retrainer.config import Config

# `retrainer drift` is a short command whose start-up is most of its time: the registry,
# evaluation and training (MLflow, scikit-learn) are imported inside the functions that
# use them, and only when they do (e.g. no model is loaded when prediction drift is off).

#: Prediction drift scores at most this many rows of the current data, a uniform sample
#: beyond it: predicting every row of a large batch cost more than all the column
#: statistics together (1.6 s of a 1M-row run), while the threshold, calibrated for the
#: rows scored (drift/thresholds.py), is already the practical floor (PSI 0.02) at this
#: size for any reference of a few thousand rows or more.
PREDICTION_SAMPLE_ROWS = 100_000
#: The sample is seeded: the same data gives the same verdict.
PREDICTION_SAMPLE_SEED = 0


@dataclass
class ChampionDrift:
    """`retrainer drift`: the report, what it was computed from, and how."""

    report: DriftReport
    profile: dict
    current: pd.DataFrame  # on Spark: the bounded sample scored for prediction drift
    version: str
    profile_source: str  # "artifact", "rebuilt from <source>" or "built from the … rows …"
    notes: list[str] = field(default_factory=list)
    rows: int | None = None  # set on Spark, where `current` is a sample
    digest: str | None = None  # set on Spark: the rows' content digest, computed there

    @property
    def current_rows(self) -> int:
        return self.rows if self.rows is not None else len(self.current)


def champion_drift(
    cfg: Config, data: str | None = None, *, prediction_sample: int = PREDICTION_SAMPLE_ROWS
) -> ChampionDrift:
    """Current data against the champion's reference profile, with prediction drift.

    `data` (a path or any data source form) defaults to ``triggers.drift.data``. The
    profile is the champion run's ``reference_profile.json``; a version logged without
    one gets it rebuilt from its run's logged training input (training rows picked by
    their fingerprints). Prediction drift is measured on at most `prediction_sample`
    rows (a seeded uniform sample; the report says so). Reads only: nothing is written
    to the tracking store.
    """
    if prediction_sample < 1:
        raise UserError(f"the prediction sample must be at least 1 row, not {prediction_sample}")
    source = data or (cfg.triggers.drift.data if cfg.triggers.drift else None)
    if not source:
        raise UserError("no current data: pass --data PATH or set triggers.drift.data")
    query = cfg.triggers.drift.query if (cfg.triggers.drift and not data) else cfg.data.query
    base = Path.cwd() if data else cfg.base_dir
    # data.engine spark: the rows stay in Spark (drift.spark_source), read after the profile.
    in_spark = source.startswith("spark:") and cfg.data.engine == "spark"
    if not in_spark:
        current = _read_current(cfg, source, base, query)

    cached = None if in_spark else champion_cache.lookup(cfg)
    if cached is not None and cached.model is None and cached.profile.get("prediction"):
        cached = None  # a model retrainer does not pickle: loaded through MLflow
    if cached is not None:
        # The champion the registry names now, as kept by an earlier check: no MLflow.
        version, profile = cached.key.version, cached.profile
        profile_source = describe(profile) or "artifact"

        def load() -> Any:
            return cached
    else:
        from retrainer import registry

        client = registry.connect(cfg)
        found = registry.current_champion(client, cfg.model, cfg.promote.alias)
        if found is None:
            raise UserError(f"model {cfg.model!r} has no champion yet: run `retrainer run` first")
        mv, how = found
        version = str(mv.version)
        profile, profile_source, logged = _champion_profile(cfg, client, mv)
        load = _loader(cfg, client, mv, how, profile if logged and how == "alias" else None)

    if in_spark:
        from retrainer.drift.spark_source import spark_drift

        got = spark_drift(cfg, source, base, profile, lambda frame: _champion_predictions(
            cfg, load, frame, profile))
        if got.report.prediction is not None and len(got.sample) < got.rows:
            # As on pandas: the sample in the JSON and the verdict, not only in a note.
            got.report.prediction.stats.update(sample_rows=len(got.sample),
                                               sample_of_rows=got.rows)
        return ChampionDrift(got.report, profile, got.sample, version, profile_source,
                             got.notes, rows=got.rows, digest=got.digest)
    notes: list[str] = []
    predictions = None
    sample = None
    if profile.get("prediction") is not None:
        scored = current
        if len(current) > prediction_sample:
            sample = _uniform_sample(len(current), prediction_sample)
            scored = current.iloc[sample]
        predictions, why = _champion_predictions(cfg, load, scored, profile)
        if why:
            notes.append(why)
    features = current.drop(columns=[cfg.data.target], errors="ignore")
    report = compare(
        profile,
        features,
        predictions,
        share=cfg.drift.share,
        key_columns=cfg.drift.key_columns,
        thresholds=cfg.drift.thresholds or None,
        on_prediction=cfg.drift.on_prediction,
    )
    if sample is not None and report.prediction is not None:
        # Said in the JSON (the prediction's sample_rows / sample_of_rows) and the verdict.
        report.prediction.stats.update(sample_rows=len(sample), sample_of_rows=len(current))
        notes.append(
            f"prediction drift on a uniform sample of {len(sample):,} of the "
            f"{len(current):,} rows (seed {PREDICTION_SAMPLE_SEED}); its threshold is "
            "calibrated for the sample's size")
    return ChampionDrift(report, profile, current, version, profile_source, notes)


def _uniform_sample(rows: int, size: int) -> np.ndarray:
    """`size` distinct row positions out of `rows`, uniformly, in row order."""
    rng = np.random.default_rng(PREDICTION_SAMPLE_SEED)
    return np.sort(rng.choice(rows, size=size, replace=False))


def _read_current(cfg: Config, source: str, base: Path, query: str | None) -> pd.DataFrame:
    try:
        current = data_mod.read_source(source, base, query, cfg)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - a corrupt file is the user's input
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot read current data {source!r}: {first}") from None
    if current is None or len(current) == 0:
        raise UserError(f"current data {source!r} has no rows")
    current.columns = [str(c) for c in current.columns]
    return current


def _champion_profile(cfg: Config, client: Any, mv: Any) -> tuple[dict, str, bool]:
    """The version's logged profile, or one rebuilt from its logged training input;
    and whether it was logged (only a logged profile is kept by the cache)."""
    from retrainer.reference import logged_profile

    profile = logged_profile(client, mv)
    if profile is not None:
        return profile, describe(profile) or "artifact", True
    return (*_rebuild_profile(cfg, client, mv), False)


def _loader(cfg: Config, client: Any, mv: Any, how: str,
            keep_profile: dict | None) -> Callable[[], Any]:
    """Loads the champion when prediction drift needs it, and, when its profile was
    logged, keeps both in the local cache (even if the model cannot be loaded)."""

    def load() -> Any:
        from retrainer import evaluation

        champion = None
        try:
            champion = evaluation.load_version(cfg, client, str(mv.version), how)
            return champion
        finally:
            if keep_profile is not None:
                champion_cache.save(cfg, str(mv.version), mv.creation_timestamp,
                                    (mv.tags or {}).get(champion_cache.PROFILE_TAG, ""),
                                    keep_profile, champion)

    return load


def _rebuild_profile(cfg: Config, client: Any, mv: Any) -> tuple[dict, str]:
    """Profile of a version's training rows, from the dataset input its run logged."""
    no_profile = f"champion version {mv.version} has no {PROFILE_ARTIFACT}" + (
        " and no run" if not mv.run_id else ""
    )
    if not mv.run_id:
        raise UserError(f"{no_profile}; retrain it with `retrainer run` to get one")
    from retrainer.training import load_fingerprints, load_training_info

    run = client.get_run(mv.run_id)
    uri = None
    for ds_input in getattr(run.inputs, "dataset_inputs", None) or []:
        try:
            src = json.loads(ds_input.dataset.source or "{}")
        except ValueError:
            continue
        uri = src.get("uri") or src.get("url") or src.get("path")
        if uri:
            break
    if not uri:
        raise UserError(
            f"{no_profile} and its run logged no readable training data; "
            "retrain it with `retrainer run` to get one"
        )
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    try:
        frame = data_mod.read_source(uri, Path(cfg.base_dir), cfg.data.query, cfg)
    except UserError as err:
        raise UserError(f"{no_profile}; rebuilding it from {uri!r} failed: {err}") from None
    frame.columns = [str(c) for c in frame.columns]
    info = load_training_info(client, mv.run_id)
    target = info.get("target") or cfg.data.target
    features = info.get("features") or [c for c in frame.columns if c != target]
    missing = [c for c in [*features, target] if c not in frame.columns]
    if missing:
        raise UserError(f"{no_profile}; {uri!r} lacks column {missing[0]!r} to rebuild it")
    # Keep the rows the version trained on when the run recorded their fingerprints.
    fps = load_fingerprints(client, mv.run_id)
    if fps is not None:
        ds = data_mod.Dataset(frame, target, list(features), uri)
        mask = np.isin(data_mod.fingerprints(ds), fps)
        if mask.any():
            frame = frame.loc[mask]
    return build_profile(frame[list(features)], bins=cfg.drift.bins), f"rebuilt from {uri}"


def _champion_predictions(
    cfg: Config, load: Callable[[], Any], current: pd.DataFrame, profile: dict
) -> tuple[np.ndarray | None, str | None]:
    """Champion predictions on current data, and a note when not every row was scored.

    `load` gives the champion (a registry version or a cached one): its `model` and how
    it takes its inputs. Rows the model cannot take (missing or non-numeric inputs) are
    what the column findings report; prediction drift is then measured on the rows it can
    score.
    """
    features = [c for c in profile["columns"] if c in current.columns]
    if len(features) < len(profile["columns"]):
        return None, "prediction drift skipped: the current data lacks model input columns"
    try:
        champion = load()
    except UserError as err:
        return None, f"prediction drift skipped: {err}"
    from retrainer.evaluation import champion_inputs

    def predict(frame: pd.DataFrame) -> np.ndarray:
        ds = data_mod.Dataset(frame, cfg.data.target, features, "current")
        return np.asarray(champion.model.predict(champion_inputs(champion, ds)))

    try:
        return predict(current), None
    except Exception as err:  # noqa: BLE001 - retried on the rows it can take
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
    usable = current
    for name in features:
        if profile["columns"][name]["kind"] == "numeric":
            x, _, _ = as_float(usable[name])
            usable = usable.loc[~np.isnan(x)]
        else:
            usable = usable.loc[usable[name].notna()]
    if len(usable) == 0 or len(usable) == len(current):
        return None, f"prediction drift skipped: the champion cannot score the data ({first})"
    try:
        pred = predict(usable)
    except Exception:  # noqa: BLE001
        return None, f"prediction drift skipped: the champion cannot score the data ({first})"
    return pred, (
        f"prediction drift on the {len(usable)} of {len(current)} rows the champion can "
        "score (the others have missing or non-numeric inputs)"
    )


def table_view(result: ChampionDrift) -> tuple[str, list[str], list[list[str]], list[str]]:
    """What `retrainer drift` shows: (title, header, rows, closing lines), rich markup.

    The CLI prints it (only cli.py prints); the numbers are the report's.
    """
    report = result.report
    title = (
        f"Drift against champion version {result.version} "
        f"(reference {report.rows_reference:,} rows, current {report.rows_current:,})"
    )
    header = ["column", "weight", "statistic", "value", "threshold", "drifted", "missing Δ",
              "note"]
    rows = []
    for r in list(report.columns) + ([report.prediction] if report.prediction else []):
        rows.append(
            [
                r.column,
                "-" if r.weight is None else f"{r.weight:.0%}",
                r.statistic or "-",
                cell(r.value),
                cell(r.threshold),
                "[red]yes[/red]" if r.drifted else "no",
                cell(r.missing_rate_change, pct=True),
                explain(r),
            ]
        )
    lines = []
    if result.profile_source != "artifact":
        lines.append(f"reference profile {result.profile_source}")
    weighting = report.weighting
    if weighting is not None and weighting.method == "equal":
        lines.append(f"columns weigh equally: {weighting.note}")
    elif weighting is not None:
        lines.append(f"weight: the column's share of the champion's permutation importance "
                     f"({weighting.metric}, {weighting.rows} holdout rows)")
    lines += [f"note: {note}" for note in result.notes]
    verdict = (
        f"[bold red]dataset drift[/bold red] (rule: {', '.join(report.rules)})"
        if report.dataset_drift
        else "[bold green]no dataset drift[/bold green]"
    )
    lines.append(f"{verdict}: {report.verdict}")
    return title, header, rows, lines
