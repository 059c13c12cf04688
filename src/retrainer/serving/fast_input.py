"""The fast path's input side: a request straight to a numpy array in signature order.

Built from an all-numeric signature (named required columns, or one unnamed 2-D tensor).
Each converter either returns the 2-D float array the estimator will see, raises
:class:`BadInput` naming the first bad cell, or raises :class:`UseGeneralPath` for a
payload shape it does not handle, which MLflow's own parser then judges. Whether the fast
path is used at all is decided at load time (see ``model.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from retrainer.serving.protocol import DF_RECORDS, DF_SPLIT, INPUTS, INSTANCES, BadInput, short

# Signature types the fast path converts to float64 without changing what the model sees
# (the value says whether the column must hold integers).
FAST_TYPES = {"double": False, "float": False, "long": True, "integer": True}


class UseGeneralPath(Exception):
    """The fast converter does not handle this payload shape; MLflow's parser will."""


@dataclass(frozen=True)
class NumericInput:
    """An all-numeric signature and how a request becomes a 2-D array in its order."""

    columns: tuple[str, ...] | None = None  # named numeric signature, in order
    col_dtypes: tuple[str, ...] = ()
    int_columns: tuple[int, ...] = ()
    tensor_width: int | None = None  # unnamed 2-D tensor signature (-1, k)
    tensor_dtype: Any = None

    @classmethod
    def from_schema(cls, schema: Any) -> NumericInput | None:
        """The plan for a signature, or None when the fast path cannot take it."""
        if schema is None:
            return None
        from mlflow.types.schema import ColSpec, DataType, TensorSpec

        inputs = schema.inputs
        if schema.has_input_names() and all(isinstance(s, ColSpec) for s in inputs):
            kinds = []
            for spec in inputs:
                if not isinstance(spec.type, DataType) or spec.type.name not in FAST_TYPES:
                    return None
                if not spec.required:
                    return None  # optional columns: MLflow's enforcement decides absence
                kinds.append(spec.type.name)
            return cls(
                columns=tuple(schema.input_names()),
                col_dtypes=tuple(kinds),
                int_columns=tuple(i for i, k in enumerate(kinds) if FAST_TYPES[k]),
            )
        if (
            not schema.has_input_names()
            and len(inputs) == 1
            and isinstance(inputs[0], TensorSpec)
            and len(inputs[0].shape) == 2
            and inputs[0].shape[1] > 0
            and inputs[0].type.kind in "fiu"
        ):
            return cls(tensor_width=int(inputs[0].shape[1]), tensor_dtype=inputs[0].type)
        return None

    # -- request -> array ------------------------------------------------------------

    def convert(self, fmt: str, value: Any) -> np.ndarray:
        """Request payload -> 2-D array in signature order; raises BadInput/UseGeneralPath."""
        if self.columns is not None:
            if fmt == DF_SPLIT:
                return self._from_split(value)
            if fmt == DF_RECORDS or (fmt in (INSTANCES, INPUTS) and _is_records(value)):
                return self._from_records(value, fmt)
            if fmt == INPUTS and isinstance(value, dict):
                return self._from_columns(value)
            raise UseGeneralPath
        if self.tensor_width is not None:
            if fmt in (INSTANCES, INPUTS) and isinstance(value, list):
                return self._tensor(value)
            if fmt == DF_SPLIT and isinstance(value, dict) and "columns" not in value:
                _check_split_keys(value)
                return self._tensor(value.get("data"))
        raise UseGeneralPath

    def frame_to_array(self, df: Any) -> np.ndarray:
        """A pandas DataFrame (CSV/Parquet body, batch chunk) -> array in signature order."""
        assert self.columns is not None
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise BadInput(f"missing column(s): {', '.join(missing)}")
        try:
            x = df[list(self.columns)].to_numpy(dtype=np.float64)
        except (ValueError, TypeError):
            import pandas as pd

            for c, t in zip(self.columns, self.col_dtypes, strict=True):
                try:
                    pd.to_numeric(df[c], errors="raise")
                except (ValueError, TypeError) as exc:
                    raise BadInput(f"column '{c}' expects {t}: {exc}") from None
            raise BadInput("input columns are not numeric") from None
        return self._finish(x)

    def arrow_to_array(self, batch: Any) -> np.ndarray | None:
        """An Arrow record batch (batch scoring) -> array in signature order, one copy.

        Skips pandas: converting each chunk to a DataFrame first and then to an array
        costs two copies and more than the predict of a small model. None when a
        column is not an Arrow number (the DataFrame path then names the bad value).
        """
        import pyarrow.types as pat

        assert self.columns is not None
        names = batch.schema.names
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise BadInput(f"missing column(s): {', '.join(missing)}")
        x = np.empty((batch.num_rows, len(self.columns)), dtype=np.float64)
        for j, name in enumerate(self.columns):
            column = batch.column(names.index(name))
            if not (pat.is_floating(column.type) or pat.is_integer(column.type)):
                return None
            # Nulls become NaN, as in the DataFrame path; the model judges them.
            x[:, j] = column.to_numpy(zero_copy_only=False)
        return self._finish(x)

    def _finish(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[0] == 0:
            raise BadInput("input has no rows")
        if self.int_columns:
            part = x[:, self.int_columns]
            bad = ~np.isfinite(part) | (part != np.trunc(part))
            if bad.any():
                row, j = (int(i) for i in np.argwhere(bad)[0])
                name = self.columns[self.int_columns[j]]  # type: ignore[index]
                raise BadInput(
                    f"column '{name}' expects an integer; row {row} has {part[row, j]!r}"
                )
        return x

    def _from_split(self, value: Any) -> np.ndarray:
        if not isinstance(value, dict):
            raise BadInput(f"{DF_SPLIT} must be an object with 'columns' and 'data'")
        _check_split_keys(value)
        cols, data = value.get("columns"), value["data"]
        if cols is None:
            raise UseGeneralPath  # positional columns: MLflow decides (it rejects them)
        if not isinstance(cols, list) or not isinstance(data, list):
            raise BadInput(f"{DF_SPLIT}: 'columns' and 'data' must be lists")
        assert self.columns is not None
        if cols == list(self.columns):
            try:
                x = np.array(data, dtype=np.float64)
            except (ValueError, TypeError, OverflowError):
                raise BadInput(self._explain_rows(data, range(len(cols)))) from None
            if x.ndim == 2 and x.shape[1] != len(cols):
                raise BadInput(f"rows have {x.shape[1]} values, expected {len(cols)}")
            if x.ndim == 1 and len(data):
                raise BadInput(self._explain_rows(data, range(len(cols))))
            return self._finish(x if x.ndim == 2 else x.reshape(0, len(cols)))
        index: dict[Any, int] = {}
        for i, c in enumerate(cols):
            if not isinstance(c, (str, int, float, bool)) and c is not None:
                raise BadInput(f"{DF_SPLIT}: column names must be strings, got {short(c)}")
            index.setdefault(c, i)
        missing = [c for c in self.columns if c not in index]
        if missing:
            raise BadInput(f"missing column(s): {', '.join(missing)}")
        pos = [index[c] for c in self.columns]
        for r, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(cols):
                raise BadInput(f"row {r} has {_len(row)} values, expected {len(cols)}")
        try:
            x = np.array([[row[p] for p in pos] for row in data], dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise BadInput(self._explain_rows(data, pos)) from None
        return self._finish(x if x.ndim == 2 else x.reshape(0, len(pos)))

    def _from_records(self, records: Any, fmt: str) -> np.ndarray:
        if not isinstance(records, list):
            raise BadInput(f"{fmt} must be a list of records (objects)")
        assert self.columns is not None
        cols = self.columns
        try:
            x = np.array([[rec.get(c) for c in cols] for rec in records], dtype=np.float64)
        except AttributeError:
            bad = next(i for i, rec in enumerate(records) if not isinstance(rec, dict))
            raise BadInput(f"{fmt}: record {bad} is not an object") from None
        except (ValueError, TypeError, OverflowError):
            rows = [[rec.get(c) for c in cols] for rec in records]
            raise BadInput(self._explain_rows(rows, range(len(cols)))) from None
        if x.ndim != 2:
            x = x.reshape(0, len(cols))
        if x.size and np.isnan(x).any():
            # A key absent from every record is a missing column, as MLflow reports it;
            # absent from some records only, it is a missing value the model judges.
            missing = [
                c
                for j, c in enumerate(cols)
                if np.isnan(x[:, j]).all() and not any(c in rec for rec in records)
            ]
            if missing:
                raise BadInput(f"missing column(s): {', '.join(missing)}")
        return self._finish(x)

    def _from_columns(self, value: dict[str, Any]) -> np.ndarray:
        assert self.columns is not None
        missing = [c for c in self.columns if c not in value]
        if missing:
            raise BadInput(f"missing column(s): {', '.join(missing)}")
        vals = [value[c] for c in self.columns]
        lists = [isinstance(v, list) for v in vals]
        if all(lists):
            lengths = {len(v) for v in vals}
            if len(lengths) > 1:
                raise BadInput(f"{INPUTS}: columns have different lengths {sorted(lengths)}")
            rows: list[Any] = list(zip(*vals, strict=True))
        elif not any(lists):
            rows = [vals]  # one value per column: one row
        else:
            raise UseGeneralPath
        try:
            x = np.array(rows, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise BadInput(self._explain_rows(rows, range(len(self.columns)))) from None
        return self._finish(x if x.ndim == 2 else x.reshape(0, len(self.columns)))

    def _tensor(self, data: Any) -> np.ndarray:
        try:
            x = np.array(data, dtype=self.tensor_dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise BadInput(f"input is not a numeric 2-D array: {exc}") from None
        if x.ndim != 2 or x.shape[1] != self.tensor_width:
            raise BadInput(
                f"input must be a 2-D array of rows with {self.tensor_width} values, "
                f"got shape {list(x.shape)}"
            )
        if x.shape[0] == 0:
            raise BadInput("input has no rows")
        return x

    def _explain_rows(self, rows: Any, positions: Any) -> str:
        """Name the first cell that does not convert (the slow path of an error)."""
        cols = self.columns or ()
        width = len(cols)
        positions = list(positions)
        for r, row in enumerate(rows):
            if not isinstance(row, (list, tuple)):
                return f"row {r} is not a list of values"
            if len(row) < (max(positions) + 1 if positions else width):
                return f"row {r} has {len(row)} values, expected {width}"
            for j, p in enumerate(positions):
                v = row[p]
                if v is None or isinstance(v, bool):
                    continue
                try:
                    if isinstance(v, (list, dict)):
                        raise TypeError
                    float(v)
                except (TypeError, ValueError, OverflowError):
                    return (
                        f"column '{cols[j]}' expects {self.col_dtypes[j]}; row {r} has {short(v)}"
                    )
        return "input values do not form a table of numbers"


def _len(row: Any) -> str:
    return str(len(row)) if isinstance(row, list) else "no list of"


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def _check_split_keys(value: dict[str, Any]) -> None:
    keys = set(value)
    if "data" not in keys or keys - {"columns", "data", "index"}:
        raise BadInput(
            f"{DF_SPLIT} must have a 'data' field and optionally 'columns' and 'index'; "
            f"got {sorted(map(str, keys))}"
        )
