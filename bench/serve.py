"""REST serving, side by side: `mlflow models serve` vs `retrainer serve`.

Same model (diabetes Ridge, alpha=1, solver=cholesky, trained on a DataFrame with named
columns, registered as the champion on a fresh sqlite store), same machine, same load
generator (wrk from Debian's packages, installed with apt-get when absent), one uvicorn
worker each, both servers on 127.0.0.1 only. For each of a one-row and a 1,000-row
``dataframe_split`` body: wrk -t1 -c8 for a bounded duration after a short warm-up, runs
alternating between the two servers. A last run loads retrainer while the champion
alias moves between two versions every second, counting failed requests during swaps.

The canary run: one `retrainer serve` in `rollout.mode: canary` (so writing the inference
log, which canary mode requires), one-row load, alternating between no canary and a
canary at 10% (the `canary` alias set and removed between runs), several runs of each;
and the same app driven in-process (ASGI calls, no network, no load generator),
alternating the two states in small blocks: what the routing costs per request, against
the target of under 5%.

    .venv/bin/python bench/serve.py [--duration 10] [--warmup 2] [--connections 8]
                                    [--only-canary] [--canary-rounds 3]

Prints a table and writes bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "serve.json"
MODEL = "bench-diabetes"
TARGETS = {"one_row": 5.0, "rows_1000": 3.0}
CANARY_COST_TARGET = 0.05  # a 10% canary costs under 5% of throughput

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("%(body)s", "rb"))
wrk.body = f:read("*all")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "mean_us": %%.1f, "non_2xx": %%d, "connect_errors": %%d, ' ..
    '"read_errors": %%d, "write_errors": %%d, "timeouts": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.status, e.connect, e.read, e.write,
    e.timeout))
end
"""


def ensure_wrk() -> str:
    """wrk from Debian's packages; installed (as root) when absent."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing Debian's package", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "wrk"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("could not install wrk")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_store(root: Path) -> tuple[str, list[str], Any, Any]:
    """A sqlite store with the diabetes Ridge as champion (v1) and an alpha=2 twin (v2)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    models = []
    for alpha in (1.0, 2.0):
        model = Ridge(alpha=alpha, solver="cholesky").fit(X, y)
        with mlflow.start_run(experiment_id=exp):
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X)),
                input_example=X.head(5),
                pip_requirements=["scikit-learn", "skops"],
                registered_model_name=MODEL,
            )
        models.append(model)
    client.set_registered_model_alias(MODEL, "champion", "1")
    return uri, ["1", "2"], X, models


class Server:
    """A server process in its own process group; stopped with its group."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str]) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.launched = time.monotonic()
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 180) -> float:
        """Seconds from launch until /ping answers 200."""
        start = self.launched
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                self.log.seek(0)
                sys.exit(f"{self.name} exited:\n{self.log.read().decode(errors='replace')}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/ping", timeout=2) as r,
            ):
                if r.status == 200:
                    return time.monotonic() - start
            time.sleep(0.2)
        self.stop()
        sys.exit(f"{self.name} not ready in {timeout}s")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()


def post(url: str, body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
    req = urllib.request.Request(
        url + "/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read()), dict(r.headers)


def run_wrk(wrk: str, url: str, script: Path, seconds: float, connections: int) -> dict:
    cmd = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds only
        "--timeout",
        "10s",
        "-s",
        str(script),
        url + "/invocations",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"wrk gave no result: {proc.stdout}{proc.stderr}")
    res = json.loads(line[len("RESULT ") :])
    secs = res["duration_us"] / 1e6
    return {
        "requests": res["requests"],
        "req_per_s": round(res["requests"] / secs, 1),
        "p50_ms": round(res["p50_us"] / 1000, 2),
        "p90_ms": round(res["p90_us"] / 1000, 2),
        "p99_ms": round(res["p99_us"] / 1000, 2),
        "max_ms": round(res["max_us"] / 1000, 2),
        "non_2xx": res["non_2xx"],
        "socket_errors": res["connect_errors"]
        + res["read_errors"]
        + res["write_errors"]
        + res["timeouts"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10, help="seconds of load per run")
    ap.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load first")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--only-canary", action="store_true", help="only the canary run")
    ap.add_argument("--canary-rounds", type=int, default=8, help="runs per canary state")
    ap.add_argument("--canary-duration", type=float, default=5,
                    help="seconds of load per canary run (short runs, many rounds: the "
                         "paired ratios see less of the machine's drift)")
    args = ap.parse_args()
    wrk = ensure_wrk()

    import numpy as np
    import pandas as pd

    root = Path(tempfile.mkdtemp(prefix="retrainer-bench-serve-"))
    servers: list[Server] = []
    try:
        uri, versions, X, models = build_store(root)
        big = pd.concat([X] * 3).iloc[:1000]
        payloads = {"one_row": X.iloc[:1], "rows_1000": big}
        scripts, bodies = {}, {}
        for name, frame in payloads.items():
            body = json.dumps(
                {
                    "dataframe_split": {
                        "columns": list(frame.columns),
                        "data": frame.to_numpy().tolist(),
                    }
                }
            ).encode()
            (root / f"{name}.json").write_bytes(body)
            (root / f"{name}.lua").write_text(LUA % {"body": root / f"{name}.json"})
            scripts[name], bodies[name] = root / f"{name}.lua", body

        # `mlflow models serve` execs uvicorn from PATH: put this interpreter's bin first.
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
        p1, p2 = free_port(), free_port()
        mlflow_cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{MODEL}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(p1),
            "-w",
            "1",
        ]
        config = root / "retrainer.yaml"  # what a team's config says, reduced to serving
        config.write_text(
            f"model: {MODEL}\ntracking_uri: {uri}\ndata: {{source: unused.csv}}\n"
            "train: {estimator: sklearn.linear_model.Ridge}\nserve: {poll_seconds: 1.0}\n"
        )
        retrainer_cmd = [
            sys.executable,
            "-m",
            "retrainer",
            "serve",
            "-c",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(p2),
            "--workers",
            "1",
        ]
        if args.only_canary:
            canary = canary_cost(wrk, root, uri, scripts["one_row"], env, args)
            report = {"command": "python bench/serve.py " + " ".join(sys.argv[1:]),
                      "canary": canary}
            print_canary(canary)
            out = RESULTS.with_name("serve_canary.json")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2) + "\n")
            print(f"\nwritten: {out.relative_to(HERE.parent)}")
            return
        servers = [
            Server("mlflow models serve", mlflow_cmd, p1, env),
            Server("retrainer serve", retrainer_cmd, p2, env),
        ]
        startup = {s.name: round(s.wait_ready(), 1) for s in servers}

        # Same answers first: a benchmark of wrong answers would be worthless.
        for name, body in bodies.items():
            want = models[0].predict(payloads[name])
            for s in servers:
                status, doc, _ = post(s.url, body)
                assert status == 200, (s.name, status)
                np.testing.assert_allclose(doc["predictions"], want, rtol=1e-9)

        results: dict[str, Any] = {}
        for name in payloads:
            results[name] = {}
            for s in servers:  # alternate: each payload runs both servers back to back
                run_wrk(wrk, s.url, scripts[name], args.warmup, args.connections)
                results[name][s.name] = run_wrk(
                    wrk, s.url, scripts[name], args.duration, args.connections
                )
                r = results[name][s.name]
                print(
                    f"{name:9s} {s.name:20s} {r['req_per_s']:9.1f} req/s  p50 {r['p50_ms']}ms"
                    f"  p99 {r['p99_ms']}ms  non-2xx {r['non_2xx']}",
                    file=sys.stderr,
                )

        swaps = swap_under_load(wrk, servers[1], scripts["one_row"], uri, versions, args)
        for s in servers:  # the canary run has the machine to itself
            s.stop()
        servers = []
        canary = canary_cost(wrk, root, uri, scripts["one_row"], env, args)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(root, ignore_errors=True)

    report = summarise(results, swaps, startup, args)
    report["canary"] = canary
    report["targets_met"] = report["targets_met"] and canary["met"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwritten: {RESULTS.relative_to(HERE.parent)}")


def swap_under_load(
    wrk: str, server: Server, script: Path, uri: str, versions: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """wrk on retrainer while the champion alias moves every second."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    moves: list[str] = []
    stop = threading.Event()

    def mover() -> None:
        i = 0
        while not stop.wait(1.0):
            i += 1
            version = versions[i % 2]
            with contextlib.suppress(Exception):  # sqlite busy: the next second moves it
                client.set_registered_model_alias(MODEL, "champion", version)
                moves.append(version)

    def swaps_total() -> int:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("retrainer_serving_model_swaps_total"):
                    return int(float(line.split()[-1]))
        return 0

    before = swaps_total()
    t = threading.Thread(target=mover)
    t.start()
    try:
        res = run_wrk(wrk, server.url, script, args.duration, args.connections)
    finally:
        stop.set()
        t.join()
    res["alias_moves"] = len(moves)
    res["swaps"] = swaps_total() - before
    return res


def canary_cost(
    wrk: str, root: Path, uri: str, script: Path, env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """One retrainer server in canary mode, alternating no canary / a canary at 10%."""
    import statistics

    from mlflow import MlflowClient

    config = root / "retrainer-canary.yaml"
    config.write_text(
        f"model: {MODEL}\ntracking_uri: {uri}\ndata: {{source: unused.csv}}\n"
        "train: {estimator: sklearn.linear_model.Ridge}\n"
        f"serve: {{poll_seconds: 0.5, inference_log: {root / 'inference-log'}}}\n"
        "rollout: {mode: canary, canary_share: 0.1}\n"
    )
    port = free_port()
    cmd = [sys.executable, "-m", "retrainer", "serve", "-c", str(config), "--host",
           "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = Server("retrainer serve (canary mode)", cmd, port, env)
    client = MlflowClient(tracking_uri=uri)
    runs: dict[str, list[dict[str, Any]]] = {"no_canary": [], "canary_10pct": []}
    try:
        server.wait_ready()

        def canary_version() -> str | None:
            with urllib.request.urlopen(server.url + "/health", timeout=10) as r:
                return json.loads(r.read()).get("canary", {}).get("version")

        def state(on: bool) -> None:
            if on:
                client.set_registered_model_alias(MODEL, "canary", "2")
            else:
                with contextlib.suppress(Exception):
                    client.delete_registered_model_alias(MODEL, "canary")
            deadline = time.monotonic() + 60
            while (canary_version() == "2") != on:
                if time.monotonic() > deadline:
                    sys.exit("the server did not follow the canary alias")
                time.sleep(0.2)

        by_role = {"champion": 0, "canary": 0}  # answers during the canary runs
        for _ in range(args.canary_rounds):
            for name, on in (("no_canary", False), ("canary_10pct", True)):
                state(on)
                run_wrk(wrk, server.url, script, args.warmup, args.connections)
                before = roles(server.url)
                r = run_wrk(wrk, server.url, script, args.canary_duration, args.connections)
                if on:
                    after = roles(server.url)
                    for role in by_role:
                        by_role[role] += after[role] - before[role]
                runs[name].append(r)
                print(f"canary    {name:13s} {r['req_per_s']:9.1f} req/s  p99 {r['p99_ms']}ms"
                      f"  non-2xx {r['non_2xx']}", file=sys.stderr)
    finally:
        server.stop()
    in_process = routing_in_process(config, script.with_suffix(".json"), uri)
    med = {
        name: {
            "req_per_s": statistics.median(r["req_per_s"] for r in rs),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in rs), 2),
            "non_2xx": sum(r["non_2xx"] for r in rs),
            "runs": rs,
        }
        for name, rs in runs.items()
    }
    base, canary = med["no_canary"], med["canary_10pct"]
    cost = 1 - canary["req_per_s"] / base["req_per_s"]
    # Each canary run against the no-canary run just before it: the machine's slow drift
    # (other work on a shared host) cancels out of each ratio.
    paired = sorted(k["req_per_s"] / n["req_per_s"]
                    for n, k in zip(runs["no_canary"], runs["canary_10pct"], strict=True))
    total = sum(by_role.values())
    return {
        "load": f"wrk -t1 -c{args.connections} -d{round(args.canary_duration)}s one-row, "
        f"{args.canary_rounds} alternating runs per state, medians",
        "no_canary": base,
        "canary_10pct": canary,
        "throughput_cost": round(cost, 4),
        "paired_cost_median": round(1 - statistics.median(paired), 4),
        "paired_ratios": [round(x, 3) for x in paired],
        "p99_ratio": round(canary["p99_ms"] / base["p99_ms"], 3) if base["p99_ms"] else None,
        "canary_share_observed": round(by_role["canary"] / total, 4) if total else None,
        "in_process": in_process,
        "target_cost": CANARY_COST_TARGET,
        # Judged on the in-process figure (the routing's own cost); the wrk figures on a
        # shared two-core machine are reported beside it, noise included.
        "met": in_process["cost"] < CANARY_COST_TARGET and canary["non_2xx"] == 0
        and base["non_2xx"] == 0,
    }


def roles(url: str) -> dict[str, int]:
    """/invocations answered so far, by role (from /metrics)."""
    out = {"champion": 0, "canary": 0}
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("retrainer_serving_invocations_total{"):
                for role in out:
                    if f'role="{role}"' in line:
                        out[role] += int(float(line.split()[-1]))
    return out


def routing_in_process(config: Path, body_file: Path, uri: str, blocks: int = 40,
                       per_block: int = 500) -> dict[str, Any]:
    """The app `retrainer serve` builds, called directly (ASGI, no network): microseconds
    per one-row request with no canary and with a canary at 10%, alternating in blocks."""
    import asyncio
    import statistics

    from mlflow import MlflowClient

    from retrainer.config import load
    from retrainer.serving.server import create_app

    cfg = load(config)
    app = create_app(cfg.tracking_uri, cfg.model, poll_seconds=3600,
                     inference_log=cfg.resolve_path(cfg.serve.inference_log),
                     canary_share=cfg.rollout.canary_share)
    client = MlflowClient(tracking_uri=uri)
    client.set_registered_model_alias(MODEL, "canary", "2")
    body = body_file.read_bytes()
    scope = {"type": "http", "method": "POST", "path": "/invocations",
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(_message: dict[str, Any]) -> None:
        return None

    async def block(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await app(scope, receive, send)
        return (time.perf_counter() - start) / n * 1e6

    try:
        app.start()  # loads the champion and the canary
        assert app.canary is not None and app.canary.model is not None
        canary_model = app.canary.model
        loop = asyncio.new_event_loop()
        loop.run_until_complete(block(2000))  # warm-up
        times: dict[str, list[float]] = {"no_canary": [], "canary_10pct": []}
        for _ in range(blocks):
            for name in times:
                app.canary.model = canary_model if name == "canary_10pct" else None
                times[name].append(loop.run_until_complete(block(per_block)))
        loop.close()
    finally:
        app.stop()
        client.delete_registered_model_alias(MODEL, "canary")
    base = statistics.median(times["no_canary"])
    with_canary = statistics.median(times["canary_10pct"])
    return {"method": f"{blocks} alternating blocks of {per_block} ASGI calls per state, "
                      "median microseconds per one-row request (inference log on)",
            "no_canary_us": round(base, 1), "canary_10pct_us": round(with_canary, 1),
            "cost": round(with_canary / base - 1, 4)}


def print_canary(c: dict[str, Any]) -> None:
    b, k = c["no_canary"], c["canary_10pct"]
    print(f"\ncanary routing ({c['load']}):")
    print("| run | req/s | p99 ms | non-2xx |")
    print("|---|---:|---:|---:|")
    print(f"| no canary | {b['req_per_s']:.0f} | {b['p99_ms']} | {b['non_2xx']} |")
    print(f"| canary at 10% | {k['req_per_s']:.0f} | {k['p99_ms']} | {k['non_2xx']} |")
    print(f"end to end: throughput cost {c['throughput_cost']:.1%} (medians), "
          f"{c['paired_cost_median']:.1%} (median of paired runs; ratios "
          f"{c['paired_ratios']}), p99 ratio "
          f"{c['p99_ratio']}, canary share observed {c['canary_share_observed']:.1%}")
    p = c["in_process"]
    print(f"in process ({p['method']}): {p['no_canary_us']} us without, "
          f"{p['canary_10pct_us']} us with a 10% canary: cost {p['cost']:.1%} "
          f"(target < {c['target_cost']:.0%}): {'met' if c['met'] else 'NOT met'}")


def summarise(
    results: dict[str, Any],
    swaps: dict[str, Any],
    startup: dict[str, float],
    args: argparse.Namespace,
) -> dict[str, Any]:
    import mlflow
    import sklearn

    import retrainer

    out: dict[str, Any] = {
        "command": "python bench/serve.py " + " ".join(sys.argv[1:]),
        "load": f"wrk -t1 -c{args.connections} -d{round(args.duration)}s "
        f"(after {round(args.warmup)}s warm-up)",
        "model": "diabetes Ridge(alpha=1, solver=cholesky), dataframe_split bodies",
        "workers": 1,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "versions": {
            "mlflow": mlflow.__version__,
            "retrainer": retrainer.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "startup_seconds": startup,
        "results": {},
        "swap_under_load": swaps,
    }
    met = True
    for name, by_server in results.items():
        base, ours = by_server["mlflow models serve"], by_server["retrainer serve"]
        ratio = ours["req_per_s"] / base["req_per_s"] if base["req_per_s"] else float("inf")
        p99_lower = ours["p99_ms"] < base["p99_ms"]
        ok = ratio >= TARGETS[name] and p99_lower and ours["non_2xx"] == 0
        met &= ok
        out["results"][name] = {
            "mlflow models serve": base,
            "retrainer serve": ours,
            "throughput_ratio": round(ratio, 2),
            "p99_ratio": round(base["p99_ms"] / ours["p99_ms"], 2) if ours["p99_ms"] else None,
            "target_ratio": TARGETS[name],
            "met": ok,
        }
    met &= swaps["non_2xx"] == 0 and swaps["socket_errors"] == 0
    out["targets_met"] = met
    return out


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{report['load']}, {report['workers']} worker each, {report['model']}\n")
    print("| payload | server | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---:|---:|---:|---:|")
    for name, r in report["results"].items():
        for server in ("mlflow models serve", "retrainer serve"):
            x = r[server]
            print(
                f"| {name} | {server} | {x['req_per_s']:.0f} | {x['p50_ms']} | {x['p99_ms']} "
                f"| {x['non_2xx']} |"
            )
    print("\n| payload | throughput ratio | target | p99 lower | met |")
    print("|---|---:|---:|---|---|")
    for name, r in report["results"].items():
        lower = r["retrainer serve"]["p99_ms"] < r["mlflow models serve"]["p99_ms"]
        print(
            f"| {name} | {r['throughput_ratio']}x | >= {r['target_ratio']}x | "
            f"{'yes' if lower else 'no'} ({r['p99_ratio']}x) | {'yes' if r['met'] else 'NO'} |"
        )
    s = report["swap_under_load"]
    print(
        f"\nretrainer under one-row load while the alias moved {s['alias_moves']} times "
        f"({s['swaps']} swaps): {s['req_per_s']:.0f} req/s, p99 {s['p99_ms']} ms, "
        f"non-2xx {s['non_2xx']}, socket errors {s['socket_errors']}"
    )
    print_canary(report["canary"])
    print(f"targets met: {report['targets_met']}")


if __name__ == "__main__":
    main()
