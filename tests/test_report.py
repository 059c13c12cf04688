"""The cycle report: logged with every judgement, complete, self-contained, and it renders.

One article scenario (version 1 a week ago, version 2 today) on a real embedded store is
shared by the module; the pages are checked structurally and in headless Chromium.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from browser_helpers import assert_self_contained, ink, near, needs_chromium, pixels, screenshot
from conftest import Result, copy_project, run_cli
from drift_helpers import ref_frame
from retrainer.config import load
from retrainer.cycle import run_cycle


@pytest.fixture(scope="module")
def article(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> dict[str, Any]:
    """The article's two cycles; both records and the pages logged with them."""
    import pandas as pd

    from retrainer.project import write_example

    folder = tmp_path_factory.mktemp("article")
    write_example(folder, "diabetes")
    shutil.copyfile(store_template, folder / "mlflow.db")
    full = pd.read_csv(folder / "data" / "diabetes.csv")
    full.iloc[:-20].to_csv(folder / "data" / "week_ago.csv", index=False)
    cfg = load(folder / "retrainer.yaml")
    first = run_cycle(cfg, data=str(folder / "data" / "week_ago.csv"))
    second = run_cycle(cfg)
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    pages = [_logged_page(client, rec, folder / f"logged-{i}") for i, rec in
             enumerate((first, second))]
    return {"folder": folder, "records": [first, second], "pages": pages}


def _logged_page(client: MlflowClient, record: dict[str, Any], dst: Path) -> str:
    run_id = record["challenger"]["run_id"]
    assert record["report"] == f"runs:/{run_id}/report.html"
    dst.mkdir()
    return Path(client.download_artifacts(run_id, "report.html", str(dst))).read_text()


def _section(page: str, heading: str) -> str:
    """The page from an <h2> starting with `heading` to the next <h2>."""
    start = page.index(f"<h2>{heading}")
    end = page.find("<h2>", start + 4)
    return page[start:end if end > 0 else None]


def test_the_page_holds_the_decision_both_tables_every_check_and_the_charts(
        article: dict[str, Any]) -> None:
    record, page = article["records"][1], article["pages"][1]
    assert_self_contained(page)
    banner = re.findall(r"<p class='verdict (\w+)' id='decision'>([^<]*)</p>", page)
    assert banner == [("pass", "promoted: version 2")]
    # The article's table beside the fair one, with the article's numbers.
    cards = dict(re.findall(r"<div class='card comparison ([\w-]+)'>(.*?)</table></div>", page))
    assert set(cards) == {"as-logged", "naive", "fair"}
    assert "3442.99" in cards["as-logged"] and "3105.47" in cards["as-logged"]
    assert "3185.98" in cards["fair"] and "3171.03" in cards["fair"]
    assert "excluded: 44 rows champion trained on" in page
    # Every gate check, passed or not, with its own line.
    checks = re.findall(r"<li class='check (pass|fail)'>", page)
    assert len(checks) == len(record["checks"]) >= 5
    for check in record["checks"]:
        assert html.escape(check["detail"]) in page, check["name"]
    # Intervals around zero: one row per metric, a zero line.
    intervals = _section(page, "Challenger minus champion")
    assert intervals.count("<circle") == 3 and "stroke-dasharray" in intervals
    # Predicted vs actual and residuals, both models.
    predictions = _section(page, "Predictions on the clean holdout")
    assert "predicted vs actual" in predictions and "residuals" in predictions
    assert predictions.count("<svg") == 2 and predictions.count("<title>champion</title>") == 2
    # Importance side by side: one grey and one blue bar per feature, and the shift line.
    importance = _section(page, "What the models rely on")
    features = list(record["importance"]["challenger"])
    permutation = importance.split("<figure class='chart importance'>")[1].split("</figure>")[0]
    assert permutation.count("<rect") == 2 * len(features) == 20
    assert "nDCG <b>" in importance and "moved most" in importance
    # The metric across decisions: both decisions, each promotion ringed.
    timeline = _section(page, "mse across decisions")
    assert timeline.count("class='promotion'") == 2
    labels = re.findall(r"<text [^>]*transform='rotate\(-40[^>]*>([^<]*)</text>", timeline)
    assert [label.split()[0] for label in labels] == ["v1", "v2"]
    # The training data against the previous champion's profile.
    drift = _section(page, "Drift of the training data against champion version 1")
    assert "no dataset drift" in drift and drift.count("<tr>") == 1 + len(features)


def test_mean_abs_shap_of_both_ridges_ranks_inputs_as_coefficient_times_spread(
        article: dict[str, Any], tmp_path: Path) -> None:
    """Linear SHAP of input j is coef_j * (x_j - its background mean): the mean |SHAP|
    ranking must be the ranking of |coef_j| * spread of x_j, for both registered models."""
    import mlflow
    import pandas as pd
    from scipy.stats import spearmanr

    from retrainer import shap_values

    pytest.importorskip("shap")  # `make test` installs the explain extra; CI fails a skip
    record, page = article["records"][1], article["pages"][1]
    section = record["importance"]["shap"]
    clean = record["holdout"]["clean_rows"]
    assert section["explainer"] == {"challenger": "linear", "champion": "linear"}
    assert section["rows"] == clean == 67 and section["skipped"] is None
    assert section["rows_explained"] == {"challenger": clean, "champion": clean}
    # The permutation keys are still there, unchanged.
    assert record["importance"]["method"] == "permutation" and record["importance"]["shift"]
    data = pd.read_csv(article["folder"] / "data" / "diabetes.csv").drop(columns="target")
    cfg = load(article["folder"] / "retrainer.yaml")
    for who in ("champion", "challenger"):
        version = record[who]["version"]
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{cfg.model}/{version}", dst_path=str(tmp_path / who),
            tracking_uri=cfg.tracking_uri)
        # Loaded as MLflow's generic pyfunc, as a hand-registered version may be: unwrapped.
        ridge, steps = shap_values.unwrap(mlflow.pyfunc.load_model(local))
        assert type(ridge).__name__ == "Ridge" and steps == []
        expected = {f: abs(c) * data[f].std() for f, c in zip(data.columns, ridge.coef_)}
        got = section[who]
        assert list(got) == list(data.columns)
        rho = spearmanr([expected[f] for f in got], list(got.values())).statistic
        assert rho > 0.9, (who, expected, got)
        top = sorted(got, key=got.get, reverse=True)[:2]
        assert top == sorted(expected, key=expected.get, reverse=True)[:2] == ["bmi", "s5"]
    # On the page beside permutation importance: both models' bars, the explainer named.
    shap_part = _section(page, "What the models rely on").split("<h3 id='shap'>")[1]
    figure = shap_part.split("<figure class='chart shap'>")[1].split("</figure>")[0]
    assert figure.count("<rect") == 2 * len(data.columns)
    assert html.escape("(shap's linear explainer)") in shap_part
    assert "on 67 clean rows (cap 1000" in shap_part


def test_a_first_champion_page_says_so_and_has_no_champion_parts(
        article: dict[str, Any]) -> None:
    page = article["pages"][0]
    assert_self_contained(page)
    assert "first_champion: version 1" in page and "none yet (first champion)" in page
    assert "card comparison fair" in page and "as-logged" not in page
    assert "Drift of the training data" not in page  # no champion profile to compare with


def test_judging_a_registered_version_logs_its_page_beside_that_versions_own(
        article: dict[str, Any], tmp_path: Path) -> None:
    # A copy of the store, used through the CLI: MLflow caches artifact locations by run
    # id per process, and the copy has the same run ids as the module's store.
    folder = copy_project(article["folder"], tmp_path / "copy")
    judged = run_cli("promote", "1", "--reason", "is the old one better?", "--json",
                     cwd=folder)
    assert judged.code == 0, judged.stderr
    record = judged.json()
    assert record["decision"] == "kept_champion"
    run_id = record["challenger"]["run_id"]
    assert run_id == article["records"][0]["challenger"]["run_id"]
    # Version 1's run keeps its own cycle's report.html; this judgement's page goes beside.
    assert record["report"] == f"runs:/{run_id}/reports/{record['cycle_id']}.html"
    artifacts = next(folder.glob(f"mlartifacts/**/{run_id}/artifacts"))
    assert (artifacts / "report.html").read_text() == article["pages"][0]
    logged = (artifacts / "reports" / f"{record['cycle_id']}.html").read_text()
    assert "kept_champion: version 1" in logged and "is the old one better?" in logged
    assert_self_contained(logged)
    # `report --version 1` now finds this newest decision about version 1, and its page.
    out = tmp_path / "v1.html"
    found = run_cli("report", "--version", "1", "-o", str(out), "--json", cwd=folder)
    assert found.code == 0, found.stderr
    assert found.json()["cycle_id"] == record["cycle_id"] and out.read_text() == logged


def test_report_command_writes_the_logged_page_and_refuses_bad_arguments(
        article: dict[str, Any], tmp_path: Path) -> None:
    folder = article["folder"]
    out = tmp_path / "pages" / "v1.html"
    done = run_cli("report", "--version", "1", "--output", str(out), "--json", cwd=folder)
    assert done.code == 0, done.stderr
    doc = done.json()
    assert (doc["decision"], doc["version"], doc["output"]) == ("first_champion", "1", str(out))
    assert out.read_text() == article["pages"][0]
    both = run_cli("report", "--version", "1", "--run", "abc", cwd=folder)
    _one_line_error(both, "--version or --run")
    _one_line_error(run_cli("report", "--version", "7", cwd=folder),
                    "no decision recorded for version 7")


def test_history_html_draws_the_timeline_and_lists_every_entry(
        article: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "history.html"
    done = run_cli("history", "--html", str(out), "--json", cwd=article["folder"])
    assert done.code == 0, done.stderr
    entries = done.json()["entries"]  # stdout stays one JSON document
    page = out.read_text()
    assert_self_contained(page)
    rows = re.findall(r"<tr class='(\w+)'>", page)
    assert len(rows) == len(entries) == 2 and rows == ["moved", "moved"]
    assert page.count("class='promotion'") == 2
    for record in article["records"]:
        assert f"{record['challenger']['metrics']['mse']:.2f}" in page


def test_classification_page_has_confusion_matrices_and_roc_curves(
        tmp_path: Path, fresh_store: Any) -> None:
    fresh_store(tmp_path)
    (tmp_path / "retrainer.yaml").write_text(
        "model: cancer\n"
        "data: {source: 'sklearn:breast_cancer', target: target}\n"
        "train:\n"
        "  estimator: sklearn.ensemble.RandomForestClassifier\n"
        "  params: {n_estimators: 15, random_state: 0}\n"
        "metrics: [roc_auc, accuracy]\n"
        "gate: {all_metrics_improve: false}\n")
    cfg = load(tmp_path / "retrainer.yaml")
    run_cycle(cfg)
    record = run_cycle(cfg)
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    page = _logged_page(client, record, tmp_path / "logged")
    assert_self_contained(page)
    predictions = _section(page, "Predictions on the clean holdout")
    for who in ("champion", "challenger"):
        assert f"<figcaption>{who} confusion matrix</figcaption>" in predictions
    # Two classes: a 2 x 2 matrix each, cells summing to the clean rows.
    cells = [int(v) for v in re.findall(r"predicted \d: (\d+)</title>", predictions)]
    assert len(cells) == 8 and sum(cells) == 2 * record["holdout"]["clean_rows"]
    assert predictions.count("<polyline") == 2 and "(AUC 0." in predictions


def test_run_piped_prints_its_steps_as_plain_lines_and_status_is_a_panel(
        article: dict[str, Any], tmp_path: Path) -> None:
    folder = copy_project(article["folder"], tmp_path / "copy")
    done = run_cli("run", cwd=folder, env={"COLUMNS": "200"})
    assert done.code == 0, done.stderr
    steps = [line.rsplit(" (", 1)[0] for line in done.stderr.splitlines()
             if re.search(r" \(\d+\.\d s\)$", line)]
    assert steps[:3] == ["connecting to the tracking store", "loading data",
                         "training on 331 rows"]
    for step in ("scoring on the holdout", "bootstrapping intervals", "permutation importance",
                 "writing the report"):
        assert any(s.startswith(step) for s in steps), (step, steps)
    assert "\x1b[" not in done.stderr + done.stdout  # no colour codes when piped
    assert "importance shift: nDCG" in done.stdout and "report: runs:/" in done.stdout
    status = run_cli("status", cwd=folder, env={"COLUMNS": "200"})
    assert status.code == 0, status.stderr
    top, bottom = status.stdout.splitlines()[0], status.stdout.strip().splitlines()[-1]
    assert top.startswith("╭─ diabetes-ridge champion 2") and bottom.startswith("╰")


def _one_line_error(result: Result, text: str) -> None:
    assert result.code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.stderr


@needs_chromium
def test_chromium_renders_the_report_and_the_drift_page(
        article: dict[str, Any], tmp_path: Path) -> None:
    from retrainer.drift.html import render_html
    from retrainer.drift.profile import build_profile
    from retrainer.drift.statistics import compare

    report = tmp_path / "report.html"
    report.write_text(article["pages"][1])
    size, colours = pixels(screenshot(report, tmp_path / "report.png", 1280, 2000))
    assert size == (1280, 2000)
    assert ink(colours) > 0.03 and len(colours) > 200  # text, tables and charts, not blank
    assert near(colours, "#027a48") > 2000  # the green decision banner and check badges
    assert near(colours, "#1570ef") > 100  # the challenger's marks in the charts

    rng = np.random.default_rng(0)
    reference, current = ref_frame(), ref_frame(seed=1)
    current["age"] += 10
    profile = build_profile(reference, predictions=rng.normal(size=len(reference)))
    drift = tmp_path / "drift.html"
    drift.write_text(render_html(compare(profile, current, rng.normal(size=len(current))),
                                 profile, current))
    size, colours = pixels(screenshot(drift, tmp_path / "drift.png", 1024, 900))
    assert size == (1024, 900)
    assert ink(colours) > 0.03 and len(colours) > 100
    assert near(colours, "#1570ef") > 500  # current bars
    assert near(colours, "#98a2b3") > 500  # reference bars
