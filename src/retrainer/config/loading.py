"""Reading retrainer.yaml: `${VAR}` expansion, validation, and one-line errors.

`parse` validates a mapping; `load` reads the file and resolves the tracking and registry
stores. Every mistake becomes a `UserError` naming the key (and a near-miss suggestion).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from retrainer.config.names import did_you_mean
from retrainer.config.schema import DEFAULT_CONFIG, Config
from retrainer.config.uris import resolve_registry_uri, resolve_tracking_uri
from retrainer.errors import UserError

log = logging.getLogger("retrainer")


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, where: str = "") -> Any:
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise UserError(f"config {where or 'value'}: environment variable "
                            f"${{{name}}} is not set")

        return _ENV.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _model_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at `loc` (to suggest a known key)."""
    model: Any = Config
    free_key = False  # the previous part was a dict[str, Model]: this part is a free key
    for part in loc[:-1]:
        if free_key:
            free_key = False
            continue
        if model is None:
            return None
        if isinstance(part, int):
            continue  # an index into a list of models (gate.slices.0)
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        if getattr(ann, "__origin__", None) is dict:
            free_key = True
        model = next((c for c in (ann, *args)
                      if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    path = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        model = _model_for(loc)
        keys = [f.alias or n for n, f in model.model_fields.items() if n != "base_dir"] \
            if model else []
        hint = did_you_mean(str(loc[-1]), keys) if keys else ""
        return f"{source}: unknown key '{path}'{hint}"
    if first["type"] == "missing":
        return f"{source}: missing required key '{path}'"
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {path}: {msg}{more}"


def parse(raw: dict[str, Any], base_dir: Path, source: str = DEFAULT_CONFIG) -> Config:
    """Validate a config mapping; errors become one-line `UserError`s."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of keys at the top level")
    raw = _expand_env(raw)
    try:
        return Config.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as err:
        raise UserError(_format_error(err, source)) from None


def load(path: str | os.PathLike[str] | None = None, tracking_uri: str | None = None) -> Config:
    """Read and validate `path` (default ./retrainer.yaml).

    The tracking URI is, in order: the `tracking_uri` argument (the CLI flag), the config
    key, `MLFLOW_TRACKING_URI`, then an embedded sqlite store beside the config.
    """
    import yaml

    file = Path(path or DEFAULT_CONFIG)
    if not file.is_file():
        hint = " (create one with `retrainer init --example diabetes`)" if path is None else ""
        raise UserError(f"config file not found: {file}{hint}")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise UserError(f"{file}:{where} cannot parse YAML: {problem}") from None
    cfg = parse(raw, file.resolve().parent, str(file))
    named_by = ("--tracking-uri" if tracking_uri else str(file) if cfg.tracking_uri else None)
    cfg.tracking_uri = resolve_tracking_uri(cfg, tracking_uri)
    cfg.registry_uri, ignored = resolve_registry_uri(cfg, named_by)
    if ignored:
        from retrainer.redact import redact

        where = f"{named_by} names" if named_by else "retrainer uses the embedded"
        log.warning("ignoring MLFLOW_REGISTRY_URI=%s: %s tracking store %s and the registry "
                    "goes with it (set registry_uri in %s for a separate registry)",
                    redact(ignored), where, redact(cfg.tracking_uri), file)
    return cfg
