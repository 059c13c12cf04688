"""MLflow's scoring protocol at the edge: content types, JSON and table bodies, answers.

Every answer that is not a 200 is an :class:`HttpError` whose class says whose fault it
is: :class:`BadInput` (the client's: parsing, the signature, auth, size, media type),
:class:`ModelError` (the model raised on a request that passed validation) or
:class:`Unavailable` (nothing to serve yet). The status codes are those of
``mlflow models serve``, whose clients rely on them; the class only decides how the
request is counted in /metrics and marked in the request log.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import orjson

DF_SPLIT = "dataframe_split"
DF_RECORDS = "dataframe_records"
INSTANCES = "instances"
INPUTS = "inputs"
FORMATS = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)
CT_JSON = "application/json"
CT_CSV = "text/csv"
CT_PARQUET = "application/vnd.apache.parquet"

OK = "ok"
CLIENT_ERROR = "client_error"
MODEL_ERROR = "model_error"
SERVER_ERROR = "server_error"


class HttpError(Exception):
    """An answer other than 200: ``status``, an MLflow-style ``code`` and the message."""

    outcome = CLIENT_ERROR

    def __init__(self, message: str, status: int = 400, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class BadInput(HttpError):
    """A client mistake: answered with ``status`` and the message, never a 5xx."""


class ModelError(HttpError):
    """The model raised on a request that passed parsing and the signature.

    Still a 400, as ``mlflow models serve`` answers it, but counted as the model's fault.
    """

    outcome = MODEL_ERROR

    @classmethod
    def of(cls, exc: Exception) -> ModelError:
        return cls(
            f"the model could not score this input: {type(exc).__name__}: {first_line(str(exc))}"
        )


class Unavailable(HttpError):
    """No version is loaded yet: a 503 that is neither the client's nor a model's fault."""

    outcome = SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message, 503, "SERVICE_UNAVAILABLE")


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_line(text: str, limit: int = 500) -> str:
    """A short message: MLflow's errors quote the whole input before the real reason."""
    text = text.strip() if text else ""
    if "Error: " in text:
        text = text.rsplit("Error: ", 1)[1]
    text = " ".join(text.splitlines()[:3])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def rows_of(predictions: Any) -> int:
    try:
        return len(predictions)
    except TypeError:
        return 1


# --------------------------------------------------------------------------- requests


def parse_content_type(raw: str) -> str:
    """The MIME type of a Content-Type header; any charset but UTF-8 is refused, as MLflow."""
    parts = [p.strip() for p in raw.split(";")]
    mime = parts[0].lower()
    params = {}
    for part in parts[1:]:
        if part:
            key, _, value = part.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
    charset = params.pop("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise BadInput("the scoring server only supports UTF-8", 415, "UNSUPPORTED_MEDIA_TYPE")
    if params:
        raise BadInput(
            f"unrecognized content type parameters: {', '.join(params)}",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        )
    return mime


def unsupported(mime: str) -> BadInput:
    return BadInput(
        f"unsupported content type '{mime or '(none)'}'; use {CT_JSON}, {CT_CSV} or {CT_PARQUET}",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )


def loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # MLflow's parser (stdlib json) also takes NaN/Infinity and big integers.
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise BadInput(f"malformed JSON: {exc}") from None


def json_payload(body: bytes) -> tuple[dict[str, Any], list[str]]:
    """The JSON object and which of the four format keys it has."""
    payload = loads(body)
    if not isinstance(payload, dict):
        raise BadInput(
            "the body must be a JSON object with exactly one of "
            f"{', '.join(FORMATS)}; got a {type(payload).__name__}"
        )
    return payload, [k for k in FORMATS if k in payload]


def read_table(body: bytes, mime: str, schema: Any) -> Any:
    """A CSV or Parquet body as a DataFrame; with a schema, CSV is read as MLflow reads it."""
    import pandas as pd

    try:
        if mime == CT_PARQUET:
            return pd.read_parquet(io.BytesIO(body))
        text = body.decode("utf-8")
        if schema is not None and schema.has_input_names():
            from mlflow.pyfunc.scoring_server import parse_csv_input

            return parse_csv_input(io.StringIO(text), schema=schema)
        return pd.read_csv(io.StringIO(text))
    except UnicodeDecodeError as exc:
        raise BadInput(f"the CSV body is not UTF-8: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any parser error is the body's fault
        msg = getattr(exc, "message", None) or str(exc)
        raise BadInput(f"could not read the {mime} body: {msg.splitlines()[0]}") from None


# --------------------------------------------------------------------------- answers


def jsonable(predictions: Any) -> Any:
    """MLflow's conversion of model output for JSON (records for frames)."""
    from mlflow.utils.proto_json_utils import _get_jsonable_obj

    return _get_jsonable_obj(predictions, pandas_orient="records")


def orjson_default(obj: Any) -> Any:
    import pandas as pd

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        return jsonable(obj)
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        import base64

        return base64.encodebytes(obj).decode("ascii")
    raise TypeError(f"cannot serialise {type(obj).__name__}")


DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dump_predictions(predictions: Any) -> bytes:
    """``{"predictions": ...}`` as MLflow writes it, serialised with orjson."""
    if not isinstance(predictions, np.ndarray):
        predictions = jsonable(predictions)
    elif not predictions.flags.c_contiguous:
        predictions = np.ascontiguousarray(predictions)
    return orjson.dumps({"predictions": predictions}, default=orjson_default, option=DUMP_OPTS)


def dump_unwrapped(predictions: Any) -> bytes:
    """The predictions alone, as MLflow answers a unified LLM input."""
    return orjson.dumps(jsonable(predictions), default=orjson_default, option=DUMP_OPTS)


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error_code": code, "message": message})
