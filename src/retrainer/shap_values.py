"""Mean |SHAP| per input feature, when the optional `shap` package is installed.

Permutation importance (`importance.py`) works for every model; SHAP adds, for the models
it can explain exactly and cheaply, how much each input moves the prediction on average.
It is optional (`pip install 'retrainer[explain]'`): `shap` pulls numba and llvmlite, and
imports in ~3 s, so it is imported here, lazily, only when a judgement asks for it.

Which models: the estimator inside the model (an MLflow pyfunc unwrapped; a scikit-learn
Pipeline's last step, its earlier steps transforming the rows first) when shap's
`TreeExplainer` takes it (scikit-learn trees, forests and gradient boosting, xgboost,
lightgbm) or it is linear (`coef_` and `intercept_`: `LinearExplainer` with a background
sample). Anything else, or any shap failure, means no SHAP for that model and the record
says why: an add-on never fails a judgement.

Cost is bounded like permutation importance: a seeded sample of at most `MAX_ROWS` clean
rows; for trees, fewer rows when the ensemble is large (TreeSHAP costs about nodes x depth
per row), so one model's SHAP is estimated to take at most `TREE_BUDGET_SECONDS`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from retrainer.importance import seeded_rows

#: Rows explained at most (a seeded sample of the clean holdout beyond that).
MAX_ROWS = 1_000
#: Rows of that sample the linear explainer takes as its background (the mean input).
BACKGROUND = 100
#: Estimated seconds of TreeSHAP per model at most: a large forest explains fewer rows.
TREE_BUDGET_SECONDS = 20.0
#: Seconds per tree node x tree depth per row (measured: 1.3e-8 to 2.9e-8 on a busy 2-core
#: machine for forests and gradient boosting; the high end, so the budget holds).
TREE_COST = 3e-8
#: Fewer rows than this would be noise: the model is not explained.
MIN_ROWS = 100
METHOD = "mean_abs_shap"
TREE, LINEAR = "tree", "linear"
NOT_INSTALLED = "shap is not installed (pip install 'retrainer[explain]')"
TURNED_OFF = "explain.shap is off"


class NotExplained(Exception):
    """Why a model gets no SHAP values (said in the record)."""


def load_shap() -> Any | None:
    """The shap module, or None when it is not installed or does not import."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its plotting module's deprecation notices
            import shap
    except Exception:  # noqa: BLE001 - a broken install (numba vs numpy) is "not installed"
        return None
    return shap


def shap_section(models: Mapping[str, tuple[Any, Any] | None], columns: Sequence[str], *,
                 seed: int) -> dict[str, Any]:
    """The record's `importance.shap`: each model's mean |SHAP| per input, or why not.

    `models` maps "challenger" / "champion" to (model, clean rows) or None (no champion).
    Never raises.
    """
    shap = load_shap()
    if shap is None:
        return {"skipped": NOT_INSTALLED}
    section: dict[str, Any] = {
        "method": METHOD, "rows": None, "max_rows": MAX_ROWS, "seed": int(seed),
        "challenger": None, "champion": None, "explainer": {}, "rows_explained": {},
        "notes": [], "skipped": None}
    for name, entry in models.items():
        if entry is None:
            continue
        model, X = entry
        section["rows"] = int(min(len(X), MAX_ROWS))
        try:
            values, kind, rows = mean_abs_shap(shap, model, X, columns, seed=seed)
        except NotExplained as why:
            section["notes"].append(f"{name}: no SHAP values: {why}")
            continue
        except Exception as err:  # noqa: BLE001 - the judgement stands without it
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            section["notes"].append(f"{name}: no SHAP values: shap failed: {first}")
            continue
        section[name], section["explainer"][name] = values, kind
        section["rows_explained"][name] = rows
        if rows < (section["rows"] or 0):
            section["notes"].append(
                f"{name}: explained on {rows:,} of the {section['rows']:,} sampled rows "
                f"(a large tree ensemble; TreeSHAP budget {TREE_BUDGET_SECONDS:g} s)")
    if not section["explainer"]:
        section["skipped"] = "; ".join(section["notes"]) or "no model to explain"
    return section


def mean_abs_shap(shap: Any, model: Any, X: Any, columns: Sequence[str], *,
                  seed: int = 0, max_rows: int = MAX_ROWS) -> tuple[dict[str, float], str, int]:
    """Mean |SHAP| per input column of `model` on (a seeded sample of) `X`.

    Returns the values, the explainer ("tree" or "linear") and the rows explained.
    Raises NotExplained when shap cannot explain this model.
    """
    import numpy as np
    import pandas as pd
    from threadpoolctl import threadpool_limits

    names = [str(c) for c in (X.columns if isinstance(X, pd.DataFrame) else columns)]
    if len(names) != np.shape(X)[1]:
        raise NotExplained("the rows have no name per input column")
    n = len(X)
    if n < 2:
        raise NotExplained(f"{n} clean rows")
    X, _ = seeded_rows(X, max_rows, seed)  # the same sample permutation importance draws
    estimator, steps = unwrap(model)
    # One thread, as for permutation importance: small calls on a shared machine.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # feature-name and convergence chatter, per call
        Xt, groups = _transform(steps, X, names)
        explainer, kind, rows = _explainer(shap, estimator, Xt, seed)
        Xt = Xt[:rows]
        if kind == TREE:
            raw = explainer.shap_values(Xt, check_additivity=False)
        else:
            raw = explainer.shap_values(Xt)
    # Classifiers: one output per class (a list in older shap, a last axis in newer).
    values = np.stack(raw, axis=-1) if isinstance(raw, list) else np.asarray(raw)
    if values.ndim == 2:
        values = values[:, :, None]
    if values.shape[:2] != Xt.shape:
        raise NotExplained(f"shap returned shape {values.shape} for {Xt.shape} rows")
    # An input one-hot encoded into several columns: its SHAP value is their sum
    # (additivity), then |.| averaged over rows and over the classes' outputs.
    result = {}
    for feature, idx in groups.items():
        per_row = values[:, idx, :].sum(axis=1)
        result[feature] = float(np.mean(np.abs(per_row)))
    bad = [k for k, v in result.items() if not math.isfinite(v)]
    if bad:
        raise NotExplained(f"a non-finite SHAP value for {bad[0]!r}")
    return result, kind, rows


def unwrap(model: Any) -> tuple[Any, list[Any]]:
    """The estimator inside `model` and the fitted steps that transform rows before it."""
    if hasattr(model, "get_raw_model") and hasattr(model, "unwrap_python_model"):
        # An MLflow PyFuncModel: the sklearn flavour hands back the fitted estimator.
        try:
            model = model.get_raw_model()
        except Exception:  # noqa: BLE001 - a custom python_model has no raw model
            loader = getattr(getattr(model, "metadata", None), "flavors", {}) or {}
            kinds = ", ".join(sorted(loader)) or "unknown"
            raise NotExplained(f"an MLflow pyfunc model ({kinds}) with no underlying "
                               "estimator to explain") from None
    steps: list[Any] = []
    while hasattr(model, "steps") and isinstance(model.steps, list) and model.steps:
        steps += [s for _, s in model.steps[:-1] if s not in (None, "passthrough")]
        model = model.steps[-1][1]
    return model, steps


def _transform(steps: Sequence[Any], X: Any, names: list[str]) -> tuple[Any, dict[str, list[int]]]:
    """The rows as the estimator sees them, and which of its columns each input became."""
    import numpy as np

    Xt = X
    out = list(names)
    for step in steps:
        Xt = step.transform(Xt)
        try:
            out = [str(c) for c in step.get_feature_names_out(out)]
        except Exception:  # noqa: BLE001 - no names out: the columns cannot be traced
            raise NotExplained(f"the pipeline step {type(step).__name__} does not say which "
                               "input each of its output columns comes from") from None
    if hasattr(Xt, "toarray"):
        Xt = Xt.toarray()  # sparse one-hot output; the sample is small
    Xt = np.asarray(Xt, dtype=float)
    groups: dict[str, list[int]] = {n: [] for n in names}
    for j, col in enumerate(out):
        source = _source(col, names)
        if source is None:
            raise NotExplained(f"the pipeline's column {col!r} cannot be traced back to one "
                               "input column")
        groups[source].append(j)
    return Xt, {k: v for k, v in groups.items() if v}


def _source(column: str, names: Sequence[str]) -> str | None:
    """The input a transformed column comes from, by scikit-learn's naming.

    `x` (one-to-one steps), `prefix__x` (ColumnTransformer), `x_value` (OneHotEncoder):
    the exact name first, then the longest input that `x_…` starts with.
    """
    for candidate in (column, column.split("__", 1)[1] if "__" in column else None):
        if candidate is None:
            continue
        if candidate in names:
            return candidate
        prefixed = [n for n in names if candidate.startswith(f"{n}_")]
        if prefixed:
            return max(prefixed, key=len)
    return None


def _explainer(shap: Any, estimator: Any, Xt: Any, seed: int) -> tuple[Any, str, int]:
    """shap's explainer for `estimator`, which kind, and how many rows it may explain."""
    import numpy as np

    n = len(Xt)
    # A scikit-learn forest's size is known before shap copies every node of it (a deep
    # forest of a million rows: gigabytes): refuse one that is over the budget anyway.
    _check_budget(estimator, _sklearn_tree_size(estimator), n)
    try:
        tree = shap.TreeExplainer(estimator)
    except Exception:  # noqa: BLE001 - shap's InvalidModelError: not a tree model
        tree = None
    if tree is not None:
        return tree, TREE, _check_budget(estimator, _tree_size(tree), n)
    if hasattr(estimator, "coef_") and hasattr(estimator, "intercept_"):
        pick = np.random.default_rng(seed).choice(n, size=min(n, BACKGROUND), replace=False)
        return shap.LinearExplainer(estimator, Xt[np.sort(pick)]), LINEAR, n
    raise NotExplained(f"{type(estimator).__name__} is neither tree-based nor linear "
                       "(shap's TreeExplainer and LinearExplainer only)")


def _check_budget(estimator: Any, size: float, n: int) -> int:
    """Rows of `n` a tree model of `size` (nodes x depth) may explain within the budget."""
    per_row = TREE_COST * size
    rows = min(n, int(TREE_BUDGET_SECONDS / per_row) if per_row > 0 else n)
    if rows < min(n, MIN_ROWS):
        raise NotExplained(
            f"{type(estimator).__name__} is too large to explain within the budget "
            f"(about {per_row:.2g} s per row, {TREE_BUDGET_SECONDS:g} s at most)")
    return rows


def _sklearn_tree_size(estimator: Any) -> float:
    """Nodes x depth of a scikit-learn tree or tree ensemble (0 for anything else)."""
    import numpy as np

    members = getattr(estimator, "estimators_", None)  # gradient boosting's is 2-D
    trees = [estimator] if members is None else np.ravel(np.asarray(members, dtype=object))
    total = 0.0
    for t in trees:
        inner = getattr(t, "tree_", None)
        if inner is not None:
            total += inner.node_count * max(int(inner.max_depth), 1)
    return total


def _tree_size(explainer: Any) -> float:
    """Nodes x depth summed over the trees: TreeSHAP's cost per row, up to a constant."""
    trees = getattr(getattr(explainer, "model", None), "trees", None) or []
    total = 0.0
    for t in trees:
        nodes = len(getattr(t, "children_left", ()))
        total += nodes * max(int(getattr(t, "max_depth", 1) or 1), 1)
    return total
