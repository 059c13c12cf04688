"""The champion's profile and model kept on local disk, so a drift check skips MLflow.

`retrainer drift` runs from cron or CI every few minutes; most of its time used to be
start-up: importing MLflow and its database store, then skops and scipy to load the
champion (about 4 s of a 1M-row check that computes its statistics in under 1 s). The
champion changes rarely, so the second check onwards reads the champion's identity
straight from the registry (one SQL query on an embedded sqlite store, one REST call on
an MLflow server) and, when it is the version cached here, loads its profile (JSON) and
model (pickled by retrainer after the first check loaded it from the registry) without
importing MLflow. Anything else (another store, a legacy stage, a cache miss, any error)
takes the full path through MLflow, which then fills the cache.

A cached entry is keyed by the registry, the model name, the version, the version's
creation time (a registry recreated at the same place is not mistaken for the old one)
and the version's profile tag. `RETRAINER_CACHE_DIR` sets the folder (default
``$XDG_CACHE_HOME/retrainer`` or ``~/.cache/retrainer``); ``off`` turns the cache off.
The folder is the user's own (mode 0700): its pickles are loaded only by this user.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retrainer.config import Config

#: Where the reference profile's location is tagged on a version (reference.PROFILE_TAG).
PROFILE_TAG = "retrainer.reference_profile"
#: Bumped when an entry's layout changes: older entries are then ignored.
LAYOUT = 1


@dataclass(frozen=True)
class ChampionKey:
    """Who the champion is, as the registry says it now."""

    registry: str
    model: str
    version: str
    created_ms: int | None
    profile_tag: str

    def digest(self) -> str:
        text = json.dumps([LAYOUT, self.registry, self.model, self.version, self.created_ms,
                           self.profile_tag])
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class CachedChampion:
    """A cached champion: its profile, and its model with how it takes its inputs."""

    key: ChampionKey
    profile: dict
    model: Any | None  # None: the profile only (a model retrainer does not pickle)
    input_columns: list[str] | None
    tensor_input: bool

    @property
    def version(self) -> str:
        return self.key.version


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is off."""
    chosen = os.environ.get("RETRAINER_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "false", "no") \
            else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "retrainer"


def lookup(cfg: Config) -> CachedChampion | None:
    """The cached champion when the registry names the version cached, else None."""
    folder = cache_dir()
    if folder is None:
        return None
    key = peek(cfg)
    if key is None:
        return None
    return load(folder, key)


def peek(cfg: Config) -> ChampionKey | None:
    """The champion's key read without MLflow, or None when that cannot be done surely."""
    registry = _registry_uri(cfg)
    try:
        if registry.startswith("sqlite:///"):
            return _peek_sqlite(registry, cfg.model, cfg.promote.alias)
        if registry.startswith(("http://", "https://")):
            return _peek_rest(registry, cfg.model, cfg.promote.alias)
    except (OSError, sqlite3.Error, ValueError, KeyError, TypeError):
        return None  # the full path says what is wrong, if anything is
    return None


def load(folder: Path, key: ChampionKey) -> CachedChampion | None:
    entry = folder / "champions" / key.digest()
    try:
        meta = json.loads((entry / "entry.json").read_text())
        if meta.get("key") != _key_doc(key):
            return None
        model = None
        if meta.get("model"):
            import cloudpickle  # MLflow's own dependency; scikit-learn loads as unpickled

            with open(entry / "model.pkl", "rb") as f:
                model = cloudpickle.load(f)
    except Exception:  # noqa: BLE001 - a missing, partial or stale entry is a miss
        return None
    return CachedChampion(key, meta["profile"], model, meta.get("input_columns"),
                          bool(meta.get("tensor_input")))


def save(cfg: Config, version: str, created_ms: int | None, profile_tag: str, profile: dict,
         champion: Any | None) -> None:
    """Keep the champion for the next check; never fails the command that calls it."""
    folder = cache_dir()
    if folder is None:
        return
    key = ChampionKey(_registry_uri(cfg), cfg.model, str(version),
                      int(created_ms) if created_ms is not None else None, profile_tag or "")
    with contextlib.suppress(Exception):
        _write(folder, key, profile, champion)


def _write(folder: Path, key: ChampionKey, profile: dict, champion: Any | None) -> None:
    root = folder / "champions"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)
    final = root / key.digest()
    if (final / "entry.json").exists():
        return
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        meta: dict[str, Any] = {"key": _key_doc(key), "profile": profile, "model": False}
        if champion is not None and _picklable_flavor(champion.model):
            import cloudpickle

            with open(tmp / "model.pkl", "wb") as f:
                cloudpickle.dump(champion.model, f)
            meta.update(model=True, input_columns=champion.input_columns,
                        tensor_input=bool(champion.tensor_input))
        (tmp / "entry.json").write_text(json.dumps(meta))
        # Atomic: a concurrent check sees all of an entry or none (or wrote it first).
        with contextlib.suppress(OSError):
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _picklable_flavor(model: Any) -> bool:
    """scikit-learn models (what `mlflow.sklearn.load_model` returns) are pickled; MLflow's
    pyfunc wrappers are not (they may hold files, sessions or servers)."""
    return not type(model).__module__.startswith("mlflow")


def _key_doc(key: ChampionKey) -> list[Any]:
    return [LAYOUT, key.registry, key.model, key.version, key.created_ms, key.profile_tag]


def _registry_uri(cfg: Config) -> str:
    from retrainer.config.uris import default_registry_uri

    tracking = cfg.tracking_uri or ""
    return cfg.registry_uri or default_registry_uri(tracking)


def _peek_sqlite(uri: str, model: str, alias: str) -> ChampionKey | None:
    """One read-only query on MLflow's own tables (default workspace only)."""
    if os.environ.get("MLFLOW_WORKSPACE"):
        return None
    path = uri.removeprefix("sqlite:///")
    if not os.path.isfile(path):
        return None
    con = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute(
            "SELECT v.version, v.creation_time, "
            "(SELECT t.value FROM model_version_tags t WHERE t.workspace = v.workspace "
            " AND t.name = v.name AND t.version = v.version AND t.key = ?) "
            "FROM registered_model_aliases a JOIN model_versions v "
            "ON v.workspace = a.workspace AND v.name = a.name AND v.version = a.version "
            "WHERE a.workspace = 'default' AND a.name = ? AND a.alias = ?",
            (PROFILE_TAG, model, alias)).fetchone()
    finally:
        con.close()
    if row is None:
        return None
    return ChampionKey(uri, model, str(row[0]), row[1], row[2] or "")


def _peek_rest(uri: str, model: str, alias: str) -> ChampionKey | None:
    """MLflow's REST API: GET registered-models/alias, with MLflow's auth variables."""
    parts = urllib.parse.urlsplit(uri)
    headers = {}
    user, password = parts.username, parts.password
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    else:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", user and urllib.parse.unquote(user))
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD",
                                  password and urllib.parse.unquote(password))
        if user:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    query = urllib.parse.urlencode({"name": model, "alias": alias})
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/registered-models/alias?{query}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - the user's server
        doc = json.loads(resp.read())
    mv = doc["model_version"]
    tags = {t["key"]: t.get("value", "") for t in mv.get("tags", [])}
    created = mv.get("creation_timestamp")
    return ChampionKey(uri, model, str(mv["version"]),
                       int(created) if created is not None else None,
                       tags.get(PROFILE_TAG, ""))
