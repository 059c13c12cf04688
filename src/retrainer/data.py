"""Data sources, validation at the boundary, the train/holdout split and row fingerprints.

Sources (``data.source``):
- a CSV or Parquet file, a glob of them, or a folder of Parquet files
- a SQLAlchemy URL with ``data.query`` (``sqlite:///x.db``, ``postgresql+psycopg2://…``)
- ``python:module:function`` or ``python:path/to/file.py:function`` returning a DataFrame
- ``sklearn:<dataset>`` for scikit-learn's bundled datasets (diabetes, iris, wine, …)
- ``spark:<table>`` or ``spark:<path>`` read by Spark (the ``spark`` extra; `spark_data`):
  at most ``data.max_rows`` rows come to this process
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from retrainer.config import Config, DataConfig, SplitConfig

SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle",
               "duckdb", "snowflake", "redshift")
SKLEARN_DATASETS = ("diabetes", "iris", "wine", "breast_cancer", "digits", "linnerud")


@dataclass
class Dataset:
    """Validated rows: features `X`, target `y`, and where they came from."""

    frame: pd.DataFrame
    target: str
    features: list[str]
    source: str
    # Set when a uniform sample of a larger spark: source stands for it (data.sample).
    sample_note: str | None = None

    @property
    def X(self) -> pd.DataFrame:  # noqa: N802 - the scikit-learn name
        return self.frame[self.features]

    @property
    def y(self) -> pd.Series:
        return self.frame[self.target]

    def __len__(self) -> int:
        return len(self.frame)


def read_source(source: str, base_dir: Path, query: str | None = None,
                cfg: Config | None = None) -> pd.DataFrame:
    """Read any supported source into a DataFrame; one-line `UserError` on failure.

    `cfg` gives a spark: source its session (``spark:``) and its row limit (``data.max_rows``,
    ``data.sample``); without it the defaults apply. A sample says so in
    ``frame.attrs["sample_note"]``.
    """
    import pandas as pd

    if source.startswith("sklearn:"):
        return _read_sklearn(source.removeprefix("sklearn:"))
    if source.startswith("python:"):
        return _read_python(source.removeprefix("python:"), base_dir)
    if source.startswith("spark:"):
        return _read_spark(source, base_dir, cfg)
    scheme = source.split("://", 1)[0].split("+", 1)[0] if "://" in source else ""
    if scheme in SQL_SCHEMES:
        return _read_sql(source, query, base_dir)
    if scheme:
        raise UserError(f"data source {source!r}: unsupported URL scheme {scheme!r}")

    path = source if os.path.isabs(source) else str(base_dir / source)
    if any(ch in path for ch in "*?["):
        files = sorted(glob.glob(path))
        if not files:
            raise UserError(f"data source {source!r}: no file matches the pattern")
        return pd.concat([_read_file(Path(f)) for f in files], ignore_index=True)
    p = Path(path)
    if p.is_dir():
        files = sorted([*p.glob("*.parquet"), *p.glob("*.csv")])
        if not files:
            raise UserError(f"data source {source!r}: folder holds no .parquet or .csv files")
        return pd.concat([_read_file(f) for f in files], ignore_index=True)
    if not p.exists():
        raise UserError(f"data file not found: {p}")
    return _read_file(p)


def _read_file(path: Path) -> pd.DataFrame:
    import pandas as pd

    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".csv.gz", ".txt"):
            return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"data file is empty: {path}") from None
    except Exception as err:  # noqa: BLE001 - any reader failure is the file's fault
        raise UserError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    raise UserError(f"data file {path}: unsupported format {suffix!r} (use .csv or .parquet)")


def _read_sklearn(name: str) -> pd.DataFrame:
    from sklearn import datasets

    if name not in SKLEARN_DATASETS:
        raise UserError(f"unknown sklearn dataset {name!r}; choose one of "
                        f"{', '.join(SKLEARN_DATASETS)}")
    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    if "target" not in frame.columns:  # linnerud has several targets
        frame["target"] = bunch.target.iloc[:, 0]
    return frame


def _read_python(spec: str, base_dir: Path) -> pd.DataFrame:
    import pandas as pd

    module_name, _, func_name = spec.rpartition(":")
    if not module_name or not func_name:
        raise UserError(f"python data source {spec!r}: expected python:module:function")
    func = load_callable(module_name, func_name, base_dir, what="data source")
    try:
        frame = func()
    except Exception as err:  # noqa: BLE001 - the team's code: show its message
        raise UserError(f"data source python:{spec} raised {type(err).__name__}: {err}") from None
    if not isinstance(frame, pd.DataFrame):
        raise UserError(f"data source python:{spec} returned {type(frame).__name__}, "
                        "expected a pandas DataFrame")
    return frame


def load_callable(module_name: str, func_name: str, base_dir: Path, what: str) -> Any:
    """Import `func_name` from a module name or a ``.py`` file (relative to `base_dir`)."""
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_absolute():
                file = base_dir / file
            if not file.is_file():
                raise UserError(f"{what}: file not found: {file}")
            mod_name = f"retrainer_user_{file.stem}"
            spec = importlib.util.spec_from_file_location(mod_name, file)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        else:
            if str(base_dir) not in sys.path:
                sys.path.insert(0, str(base_dir))
            module = importlib.import_module(module_name)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001
        raise UserError(f"{what}: cannot import {module_name}: {type(err).__name__}: {err}") \
            from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UserError(f"{what}: {module_name} has no function {func_name!r}")
    return func


def _read_sql(url: str, query: str | None, base_dir: Path) -> pd.DataFrame:
    import pandas as pd
    import sqlalchemy

    if not query:
        raise UserError("data source is a database URL: set data.query to the SELECT to run")
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{base_dir / url.removeprefix('sqlite:///')}"
    try:
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                return pd.read_sql_query(sqlalchemy.text(query), conn)
        finally:
            engine.dispose()
    except Exception as err:  # noqa: BLE001 - driver errors are the user's URL or query
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"SQL data source failed: {first}") from None


def _read_spark(source: str, base_dir: Path, cfg: Config | None) -> pd.DataFrame:
    from retrainer.config import DataConfig
    from retrainer.spark_data import collect, read_spark

    limits = cfg.data if cfg is not None else DataConfig(source=source)
    sdf = read_spark(source, cfg.spark if cfg is not None else None, base_dir)
    got = collect(sdf, source, limits.max_rows, limits.sample,
                  seed=cfg.split.seed if cfg is not None else 0)
    if got.sample_note:
        got.frame.attrs["sample_note"] = got.sample_note
    return got.frame


def load(cfg: Config, override: str | None = None) -> Dataset:
    """Read the configured source (or `override`, a path/URL) and validate it."""
    source = override or cfg.data.source
    base = Path.cwd() if override else cfg.base_dir
    frame = read_source(source, base, cfg.data.query, cfg)
    note = frame.attrs.get("sample_note")
    if "://" not in source and ":" not in source.split("/")[0] and not os.path.isabs(source):
        source = str((base / source).resolve())  # where the rows came from, for lineage
    data = validate(frame, cfg.data, source, min_rows=_min_rows(cfg.split))
    data.sample_note = note
    return data


def _min_rows(split: SplitConfig) -> int:
    # Both sides of the split need at least two rows to fit and to score.
    return max(4, int(2 / min(split.test_size, 1 - split.test_size)) + 1)


def validate(frame: pd.DataFrame, cfg: DataConfig, source: str, min_rows: int = 4) -> Dataset:
    """Check the rows at the boundary: target present and complete, usable features."""
    import pandas as pd

    if frame.empty or len(frame.columns) == 0:
        raise UserError(f"data source {source!r} has no rows")
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    if cfg.target not in frame.columns:
        raise UserError(f"target column {cfg.target!r} not found in {source!r}; columns: "
                        f"{', '.join(frame.columns[:12])}")
    missing = int(frame[cfg.target].isna().sum())
    if missing:
        raise UserError(f"target column {cfg.target!r} has {missing} missing values in {source!r};"
                        " drop or fill them first")
    if cfg.features:
        absent = [c for c in cfg.features if c not in frame.columns]
        if absent:
            raise UserError(f"feature column {absent[0]!r} not found in {source!r}")
        features = list(cfg.features)
    else:
        features = [c for c in frame.columns if c != cfg.target and c not in cfg.drop]
    if not features:
        raise UserError(f"data source {source!r} has no feature columns besides the target")
    for col in features:
        dtype = frame[col].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
                or isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype)
                or pd.api.types.is_datetime64_any_dtype(dtype)):
            raise UserError(f"feature column {col!r} has unsupported type {dtype}")
    if len(frame) < min_rows:
        raise UserError(f"data source {source!r} has {len(frame)} rows; the split needs at least "
                        f"{min_rows}")
    frame = frame.reset_index(drop=True)
    return Dataset(frame, cfg.target, features, source)


def split(data: Dataset, cfg: SplitConfig) -> tuple[Dataset, Dataset]:
    """Train rows and holdout rows.

    random: scikit-learn's ``train_test_split`` (reproduces the article exactly);
    time: the newest ``test_size`` share by ``column`` is the holdout;
    hash: a stable hash of the id column (or the whole row) decides, so a row keeps its
    side as data grows and a champion never meets its own training rows in the holdout.
    """
    import numpy as np

    n = len(data)
    if cfg.method == "random":
        from sklearn.model_selection import train_test_split

        train_idx, test_idx = train_test_split(np.arange(n), test_size=cfg.test_size,
                                               random_state=cfg.seed)
    elif cfg.method == "time":
        col = cfg.column or ""
        if col not in data.frame.columns:
            raise UserError(f"split.column {col!r} (time) not found in the data")
        order = np.argsort(data.frame[col].to_numpy(), kind="stable")
        n_test = max(1, int(round(n * cfg.test_size)))
        train_idx, test_idx = order[: n - n_test], order[n - n_test:]
    else:
        in_holdout = hash_holdout_mask(data.frame, cfg, data.features + [data.target])
        test_idx, train_idx = np.flatnonzero(in_holdout), np.flatnonzero(~in_holdout)
    if len(train_idx) < 2 or len(test_idx) < 2:
        raise UserError(f"the {cfg.method} split left {len(train_idx)} training and "
                        f"{len(test_idx)} holdout rows; more data or another test_size needed")
    frame = data.frame
    return (Dataset(frame.iloc[train_idx], data.target, data.features, data.source),
            Dataset(frame.iloc[test_idx], data.target, data.features, data.source))


def split_label(cfg: SplitConfig) -> str:
    """How a run records its split, so a later cycle can tell whether it was the same."""
    return f"{cfg.method}:seed={cfg.seed},test_size={cfg.test_size},column={cfg.column}"


_HASH_BUCKETS = 1_000_000


def hash_holdout_mask(frame: pd.DataFrame, cfg: SplitConfig, row_columns: list[str]) -> np.ndarray:
    """True where a row belongs to the holdout under ``split: hash``."""
    import pandas as pd

    if cfg.column:
        if cfg.column not in frame.columns:
            raise UserError(f"split.column {cfg.column!r} (id) not found in the data")
        hashed = pd.util.hash_pandas_object(frame[cfg.column], index=False,
                                            hash_key=_hash_key(cfg.seed))
    else:
        hashed = pd.util.hash_pandas_object(_columns(frame, sorted(row_columns)), index=False,
                                            hash_key=_hash_key(cfg.seed))
    return (hashed.to_numpy() % _HASH_BUCKETS) < cfg.test_size * _HASH_BUCKETS


def _hash_key(seed: int) -> str:
    return f"rtr{seed:013d}"[-16:]


def fingerprints(data: Dataset) -> np.ndarray:
    """One uint64 per row over the target and features (sorted by name): row identity."""
    import pandas as pd

    cols = sorted(data.features + [data.target])
    return pd.util.hash_pandas_object(_columns(data.frame, cols), index=False).to_numpy()


def _columns(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """`frame[names]` without copying the rows: selecting columns out of their stored
    order copies the whole table (0.6 s for 1M x 21 floats, twice a cycle); a frame of
    the columns themselves hashes the same (pandas hashes column by column)."""
    import pandas as pd

    return pd.concat([frame[name] for name in names], axis=1)
