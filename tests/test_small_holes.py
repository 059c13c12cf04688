"""Issue 10's smaller holes: model names, credentials in URLs, the drift docs, dependencies."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

import retrainer
from conftest import edit_config, registry_snapshot, run_cli
from mlflow_server import free_port
from retrainer.config import load
from retrainer.errors import UserError
from retrainer.redact import redact, redact_all

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(retrainer.__file__).resolve().parent
SECRET = "s3cr3t-Pa55"

# ----------------------------------------------------------------------- model names

MINIMAL = "data: {source: x.csv}\ntrain: {estimator: sklearn.linear_model.Ridge}\n"


@pytest.mark.parametrize(("name", "expected"), [
    ('""', "the registered model name is empty"),
    ("'   '", "the registered model name is empty"),
    ("' padded'", "starts or ends with white space"),
    ("team/model", "contains '/'"),
    ("'a:b'", "contains ':'"),
    ("'50%'", "contains '%'"),
    ('"tab\\tname"', "contains '\\t'"),
    ("'..'", "not a usable registered model name"),
])
def test_names_the_registry_refuses_are_config_errors(tmp_path: Path, name: str,
                                                      expected: str) -> None:
    (tmp_path / "retrainer.yaml").write_text(f"model: {name}\n{MINIMAL}")
    with pytest.raises(UserError) as err:
        load(tmp_path / "retrainer.yaml")
    assert str(err.value).startswith(f"{tmp_path / 'retrainer.yaml'}: model: ")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_names_the_registry_takes_load(tmp_path: Path) -> None:
    for name in ("diabetes-ridge", "main.ml.diabetes_ridge", "Ridge v2"):
        (tmp_path / "retrainer.yaml").write_text(f"model: {name}\n{MINIMAL}")
        assert load(tmp_path / "retrainer.yaml").model == name


def test_empty_model_name_exits_2_and_writes_nothing(project: Path) -> None:
    edit_config(project, model="")
    before = registry_snapshot(project)
    result = run_cli("run", cwd=project)
    assert result.code == 2, result.stderr
    assert result.stderr.strip() == \
        "error: retrainer.yaml: model: the registered model name is empty"
    assert result.stdout == ""
    assert registry_snapshot(project) == before


# ----------------------------------------------------------------------- credentials


def test_redact_blanks_user_info_and_secret_parameters() -> None:
    assert redact(f"http://alice:{SECRET}@mlflow.internal:5000") == \
        "http://***@mlflow.internal:5000"
    assert redact(f"postgresql+psycopg2://app:{SECRET}@db/mlflow?sslmode=require") == \
        "postgresql+psycopg2://***@db/mlflow?sslmode=require"
    assert redact(f"cannot reach https://{SECRET}@host/x: refused") == \
        "cannot reach https://***@host/x: refused"
    assert redact(f"https://host/api?token={SECRET}&page=2") == "https://host/api?token=***&page=2"
    assert redact(f"http://u:p@{SECRET}@host/") == "http://***@host/"  # an unencoded '@'
    for clean in ("sqlite:////tmp/mlflow.db", "models:/m@champion", "a=b", None, ""):
        assert redact(clean) == clean
    assert redact_all({"a": [f"http://u:{SECRET}@h"], "n": 1}) == {"a": ["http://***@h"], "n": 1}


def test_credentials_never_come_back_in_errors_or_warnings(project: Path) -> None:
    url = f"http://alice:${{RT_SECRET}}@127.0.0.1:{free_port()}"
    env = {"RT_SECRET": SECRET}
    edit_config(project, tracking_uri=url)
    for args in (["status"], ["history", "--json"], ["run"],
                 ["drift", "--data", "data/diabetes.csv"]):
        result = run_cli(*args, cwd=project, env=env)
        assert result.code == 2, (args, result.stderr)
        assert SECRET not in result.stderr + result.stdout, args
        assert "cannot reach the MLflow tracking server at http://***@127.0.0.1:" \
            in result.stderr, args
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)

    # An ignored environment registry is named in its warning without its credentials.
    edit_config(project, tracking_uri="sqlite:///mlflow.db")
    result = run_cli("status", cwd=project,
                     env={"MLFLOW_REGISTRY_URI": f"http://bob:{SECRET}@10.0.0.1:5000"})
    assert result.code == 0, result.stderr
    assert "ignoring MLFLOW_REGISTRY_URI=http://***@10.0.0.1:5000" in result.stderr
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.postgres
def test_credentials_stay_out_of_outputs_records_and_the_store(
        project: Path, mlflow_server, pg_database: str, tmp_path: Path) -> None:
    """A team server and a database source, both with ${ENV} credentials: not one copy of
    the secret in any output, decision record, history entry, tag, input or artifact."""
    import pandas as pd
    import sqlalchemy

    engine = sqlalchemy.create_engine(pg_database)
    pd.read_csv(project / "data" / "diabetes.csv").to_sql("diabetes", engine, index=False)
    engine.dispose()
    server = mlflow_server.url.replace("http://", "http://alice:${RT_SECRET}@")
    # Trust authentication accepts any password: the URL carries one all the same.
    source = pg_database.replace("postgres@", "postgres:${RT_SECRET}@")
    model = f"redacted-{tmp_path.name[-12:]}".replace("_", "-")
    edit_config(project, tracking_uri=server, model=model, experiment=model,
                data={"source": source, "query": "SELECT * FROM diabetes"},
                triggers={"schedule": {"cron": "0 3 * * 1", "timezone": "UTC"}})
    env = {"RT_SECRET": SECRET, "RETRAINER_VERBOSE": "1", "COLUMNS": "300"}

    outputs = []
    for args in (["run", "--json"], ["run"], ["status"], ["status", "--json"], ["history"],
                 ["history", "--json"],
                 ["watch", "--once", "--json", "--now", "2024-01-01T02:00:00+00:00"],
                 ["watch", "--once", "--json", "--now", "2024-01-01T03:00:00+00:00"]):
        result = run_cli(*args, cwd=project, env=env)
        assert result.code == 0, (args, result.stderr)
        outputs.append(result)
    everything = "\n".join(r.stdout + r.stderr for r in outputs)
    assert SECRET not in everything
    assert "http://***@127.0.0.1" in outputs[2].stdout  # status names the store, redacted
    status = outputs[3].json()
    assert status["tracking_uri"] == mlflow_server.url.replace("http://", "http://***@")
    record = outputs[0].json()
    assert record["data"]["source"].startswith("postgresql+psycopg2://***@127.0.0.1:5432/")

    # The tracking store itself (the server's database) and its artifacts.
    engine = sqlalchemy.create_engine(mlflow_server.db_url)
    with engine.connect() as conn:
        tables = sqlalchemy.inspect(conn).get_table_names()
        stored = [str(row) for t in tables
                  for row in conn.execute(sqlalchemy.text(f'SELECT * FROM "{t}"'))]
    engine.dispose()
    assert any(model in row for row in stored)  # the runs are there...
    assert not [row for row in stored if SECRET in row]  # ...without the secret
    leaked = [p for p in mlflow_server.artifacts.rglob("*")
              if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaked


# ----------------------------------------------------------------------- drift docs


def _doc_json() -> dict:
    text = (ROOT / "docs" / "drift.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def test_the_documented_drift_json_is_what_drift_prints() -> None:
    """docs/drift.md shows a real `drift --json` document: same keys, every one of them."""
    import numpy as np

    from drift_helpers import ref_frame
    from retrainer.drift.profile import build_profile
    from retrainer.drift.statistics import compare

    rng = np.random.default_rng(1)
    profile = build_profile(ref_frame(), rng.normal(size=2000), importance={
        "method": "permutation", "metric": "mse", "rows": 500,
        "values": {"age": 1.0, "bmi": 2.0, "city": 0.0}})
    cur = ref_frame(seed=2)
    cur["bmi"] += 4
    real = json.loads(compare(profile, cur, rng.normal(1, 1, 2000)).to_json())
    doc = _doc_json()
    assert set(doc) == set(real)
    assert set(doc["weighting"]) == set(real["weighting"])
    [column] = doc["columns"]
    bmi = next(c for c in real["columns"] if c["column"] == "bmi")
    assert set(column) == set(bmi)  # a numeric column: every key, no other
    assert set(doc["prediction"]) <= set(real["prediction"])
    assert set(doc["rows"]) == set(real["rows"])
    # The names the text uses for the statistics are the JSON's.
    text = (ROOT / "docs" / "drift.md").read_text()
    for key in ("js_distance", "wasserstein_norm", "ks", "weighted_share_drifted"):
        assert f"`{key}`" in text and key in json.dumps(real)


# ----------------------------------------------------------------------- dependencies


def _optional_imports(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside `try: ... except ImportError` (optional ones)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                               "ModuleNotFoundError")
                for h in node.handlers):
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt)
                      if isinstance(n, ast.Import | ast.ImportFrom)}
    return lines


def test_dependencies_are_what_the_code_imports() -> None:
    import importlib.metadata as md

    # (tomllib is 3.11+; the package supports 3.10: read the two lists directly.)
    text = (ROOT / "pyproject.toml").read_text()
    core = re.search(r"^dependencies = \[(.*?)^\]", text, flags=re.S | re.M)
    extras = re.search(r"^\[project\.optional-dependencies\]\n(.*?)(?=^\[|\Z)", text,
                       flags=re.S | re.M)
    assert core and extras
    declared_core = re.findall(r'"([^"]+)"', core.group(1))
    declared = declared_core + re.findall(r'"([^"]+)"', extras.group(1))

    def norm(req: str) -> str:
        return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")

    names = {norm(r) for r in declared}
    dists = md.packages_distributions()
    missing = set()
    for path in SRC.rglob("*.py"):
        if "examples" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        optional = _optional_imports(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            if node.lineno in optional:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in ("retrainer", "__future__"):
                    continue
                if not {norm(d) for d in dists.get(top, [top])} & names:
                    missing.add(f"{top} ({path.relative_to(SRC)})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
    # Starlette is what the webhook receiver uses; FastAPI is not used at all.
    assert "starlette" in {norm(r) for r in declared_core}
    assert "fastapi" not in names
