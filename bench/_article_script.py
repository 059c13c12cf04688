"""The source article's code, as published, on a local store (the baseline of bench/cycle.py).

Step 1 deploys the initial model (trained on all diabetes rows but the last 20) to the
Production stage; step 2 is the retraining notebook: retrain on all rows, compare the
runs' logged metrics, promote and archive. Only the store URI and the Databricks-specific
model path are adapted. Prints the timings as JSON.

With a second argument (a Parquet file of feature columns and `target`, as bench/cycle.py
--rows writes) the same code runs on those rows with HistGradientBoostingRegressor
(max_iter 20) instead of Ridge; the rows are read before the clock starts, as the
article's `load_diabetes()` is. The features go in as a numpy array, as the article's do.

On MLflow 3 the article's `runs:/<run_id>/model` source registers a version without the
model's files (autolog now logs a LoggedModel); the timing is unaffected, and nothing
here loads the registered versions.
"""

import json
import sys
import time
import warnings
from math import sqrt

warnings.filterwarnings("ignore")
t_import = time.perf_counter()
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.client import MlflowClient  # noqa: E402
from sklearn import datasets, ensemble, linear_model  # noqa: E402
from sklearn.metrics import mean_squared_error, r2_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

imports = time.perf_counter() - t_import
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("diabetes_regression_lab")
client = MlflowClient()
name = "DiabetesRegressionLab"
diabetes = datasets.load_diabetes()
if len(sys.argv) > 2:  # bench/cycle.py --rows: the same steps on synthetic rows
    frame = pd.read_parquet(sys.argv[2])
    diabetes.data = frame.drop(columns="target").to_numpy()
    diabetes.target = frame["target"].to_numpy()
    name = "SyntheticRegressionLab"
    del frame


def train(diabetes_X, diabetes_y):
    mlflow.end_run()
    with mlflow.start_run() as run:
        mlflow.autolog(log_models=True)
        diabetes_X_train, diabetes_X_test, diabetes_y_train, diabetes_y_test = train_test_split(
            diabetes_X, diabetes_y, test_size=0.25, random_state=42)
        alpha = 1
        solver = "cholesky"
        regr = (linear_model.Ridge(alpha=alpha, solver=solver) if len(sys.argv) <= 2
                else ensemble.HistGradientBoostingRegressor(max_iter=20))
        regr.fit(diabetes_X_train, diabetes_y_train)
        diabetes_y_pred = regr.predict(diabetes_X_test)
        mlflow.log_metric("mse", mean_squared_error(diabetes_y_test, diabetes_y_pred))
        mlflow.log_metric("rmse", sqrt(mean_squared_error(diabetes_y_test, diabetes_y_pred)))
        mlflow.log_metric("r2", r2_score(diabetes_y_test, diabetes_y_pred))
    return run


# Step 1: "Deploy the initial model to production" (a week ago: all rows but the last 20).
t0 = time.perf_counter()
run = train(diabetes.data[:-20], diabetes.target[:-20])
model_uri = f"runs:/{run.info.run_id}/model"
client.create_registered_model(name)  # the article's workspace had it already
client.create_model_version(name, model_uri, run.info.run_id, description="Initial model")
version = client.search_model_versions(f"run_id='{run.info.run_id}'")[0].version
client.transition_model_version_stage(name, version, "Production")
step1 = time.perf_counter() - t0

# Step 2: the retraining notebook.
t0 = time.perf_counter()
run = train(diabetes.data, diabetes.target)
new_run_id = run.info.run_id
new_metrics = client.get_run(new_run_id).data.metrics
prod_run_id = client.get_latest_versions(name, stages=["Production"])[0].run_id
prod_metrics = client.get_run(prod_run_id).data.metrics
columns = ["version", "mse", "r2", "rmse"]
new_vals = ["new"] + [new_metrics[m] for m in sorted(new_metrics) if m in columns]
prod_vals = ["prod"] + [prod_metrics[m] for m in sorted(prod_metrics) if m in columns]
metrics_df = pd.DataFrame([new_vals, prod_vals], columns=columns)
new_mse, new_rmse, new_r2 = (metrics_df[metrics_df["version"] == "new"][c].values[0]
                             for c in ("mse", "rmse", "r2"))
prod_mse, prod_rmse, prod_r2 = (metrics_df[metrics_df["version"] == "prod"][c].values[0]
                                for c in ("mse", "rmse", "r2"))
promoted = False
if (new_mse < prod_mse) and (new_rmse < prod_rmse) and (new_r2 > prod_r2):
    model_uri = f"runs:/{new_run_id}/model"
    client.create_model_version(name, model_uri, new_run_id,
                                description="This model uses Ridge Regression to predict diabetes.")
    to_prod_version = client.search_model_versions(f"run_id='{new_run_id}'")[0].version
    to_archive_version = client.search_model_versions(f"run_id='{prod_run_id}'")[0].version
    client.transition_model_version_stage(name, to_prod_version, "Production")
    new_prod_version = client.get_model_version(name, to_prod_version)
    while new_prod_version.current_stage != "Production":
        new_prod_version = client.get_model_version(name, to_prod_version)
        time.sleep(1)
    client.transition_model_version_stage(name, to_archive_version, "Archived")
    promoted = True
step2 = time.perf_counter() - t0
print(json.dumps({"imports": imports, "initial_deploy": step1, "retrain_cycle": step2,
                  "promoted": promoted, "new_mse": float(new_mse), "prod_mse": float(prod_mse)}))
