"""Prometheus counters of one worker process (each uvicorn worker exposes its own)."""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import TYPE_CHECKING

from retrainer.serving.protocol import MODEL_ERROR

if TYPE_CHECKING:
    from retrainer.serving.model import LoadedModel

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PREFIX = "retrainer_serving"


class Histogram:
    """Latency buckets (not cumulative until rendered), their sum and count."""

    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def add(self, bucket: int, seconds: float) -> None:
        self.counts[bucket] += 1
        self.sum += seconds
        self.count += 1

    def render(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, cumulative = [], 0
        for bound, n in zip((*BUCKETS, math.inf), self.counts, strict=True):
            cumulative += n
            le = "+Inf" if bound == math.inf else repr(bound)
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {cumulative}')
        suffix = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{suffix} {self.sum}", f"{name}_count{suffix} {self.count}"]
        return out


class Metrics:
    """Request, latency, swap, log and shadow counters; /invocations also by version and outcome.

    Outcomes: ``ok``, ``client_error`` (rejected by parsing or the signature),
    ``model_error`` (the model raised on valid input) and ``server_error`` (nothing loaded,
    or a fault of ours).
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency = Histogram()  # every /invocations, as before the split by version
        self.by_version: dict[tuple[str, str, str], Histogram] = {}  # (version, role, outcome)
        self.rows = 0
        self.model_errors = 0
        self.swaps = 0
        self.swap_failures = 0
        self.log_rows = 0
        self.log_requests = 0
        self.log_dropped = 0
        self.log_errors = 0
        self.shadow_rows = 0
        self.shadow_errors = 0
        self.shadow_abs_diff = 0.0

    def observe(self, path: str, status: int) -> None:
        key = (path, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def observe_invocation(
        self, status: int, seconds: float, rows: int, version: str, role: str, outcome: str
    ) -> None:
        """One answered POST /invocations (called on the event loop: no lock needed)."""
        self.observe("/invocations", status)
        bucket = bisect_left(BUCKETS, seconds)
        self.latency.add(bucket, seconds)
        key = (version, role, outcome)
        hist = self.by_version.get(key)
        if hist is None:
            hist = self.by_version[key] = Histogram()
        hist.add(bucket, seconds)
        self.rows += rows
        if outcome == MODEL_ERROR:
            self.model_errors += 1

    def render(
        self,
        model: LoadedModel | None,
        challenger: LoadedModel | None,
        canary: LoadedModel | None = None,
        canary_share: float = 0.0,
    ) -> str:
        p = PREFIX
        out = [
            f"# HELP {p}_requests_total HTTP requests by path and status code.",
            f"# TYPE {p}_requests_total counter",
        ]
        for (path, status), n in sorted(self.requests.items()):
            out.append(f'{p}_requests_total{{path="{path}",code="{status}"}} {n}')
        errors = sum(n for (_, s), n in self.requests.items() if s >= 400)
        out += [
            f"# HELP {p}_errors_total Responses with a 4xx or 5xx status.",
            f"# TYPE {p}_errors_total counter",
            f"{p}_errors_total {errors}",
            f"# HELP {p}_model_errors_total POST /invocations that passed validation but the "
            "model raised on (answered 400, as mlflow models serve does).",
            f"# TYPE {p}_model_errors_total counter",
            f"{p}_model_errors_total {self.model_errors}",
            f"# HELP {p}_request_duration_seconds Time to answer POST /invocations.",
            f"# TYPE {p}_request_duration_seconds histogram",
            *self.latency.render(f"{p}_request_duration_seconds", ""),
            f"# HELP {p}_invocations_total POST /invocations by served version, role (champion "
            "or canary) and outcome (ok, client_error, model_error, server_error).",
            f"# TYPE {p}_invocations_total counter",
        ]
        labelled = [
            (f'version="{v}",role="{r}",outcome="{o}"', hist)
            for (v, r, o), hist in sorted(self.by_version.items())
        ]
        out += [f"{p}_invocations_total{{{labels}}} {hist.count}" for labels, hist in labelled]
        name = f"{p}_invocation_duration_seconds"
        out += [
            f"# HELP {name} Time to answer POST /invocations by version, role and outcome.",
            f"# TYPE {name} histogram",
        ]
        for labels, hist in labelled:
            out += hist.render(name, labels)
        out += [
            f"# HELP {p}_rows_scored_total Rows scored by the served model.",
            f"# TYPE {p}_rows_scored_total counter",
            f"{p}_rows_scored_total {self.rows}",
            f"# HELP {p}_model_version The registered version being served (value 1).",
            f"# TYPE {p}_model_version gauge",
        ]
        if model is not None:
            out.append(
                f'{p}_model_version{{model="{model.name}",version="{model.version}",'
                f'path="{model.mode}"}} 1'
            )
        out += [
            f"# HELP {p}_model_swaps_total Hot swaps to a new version.",
            f"# TYPE {p}_model_swaps_total counter",
            f"{p}_model_swaps_total {self.swaps}",
            f"# HELP {p}_model_swap_failures_total New versions that failed their check.",
            f"# TYPE {p}_model_swap_failures_total counter",
            f"{p}_model_swap_failures_total {self.swap_failures}",
            f"# TYPE {p}_inference_log_rows_total counter",
            f"{p}_inference_log_rows_total {self.log_rows}",
            f"# TYPE {p}_inference_log_requests_total counter",
            f"{p}_inference_log_requests_total {self.log_requests}",
            f"# TYPE {p}_inference_log_dropped_total counter",
            f"{p}_inference_log_dropped_total {self.log_dropped}",
            f"# TYPE {p}_inference_log_errors_total counter",
            f"{p}_inference_log_errors_total {self.log_errors}",
            f"# TYPE {p}_shadow_rows_total counter",
            f"{p}_shadow_rows_total {self.shadow_rows}",
            f"# TYPE {p}_shadow_errors_total counter",
            f"{p}_shadow_errors_total {self.shadow_errors}",
            f"# HELP {p}_shadow_abs_diff_sum Sum of |challenger - champion| over shadow rows.",
            f"# TYPE {p}_shadow_abs_diff_sum counter",
            f"{p}_shadow_abs_diff_sum {self.shadow_abs_diff}",
        ]
        if canary is not None:
            out += [
                f"# HELP {p}_canary_version The canary version answering a share of requests.",
                f"# TYPE {p}_canary_version gauge",
                f'{p}_canary_version{{model="{canary.name}",version="{canary.version}",'
                f'share="{canary_share:g}"}} 1',
            ]
        if challenger is not None:
            out += [
                f"# TYPE {p}_challenger_version gauge",
                f'{p}_challenger_version{{model="{challenger.name}",'
                f'version="{challenger.version}"}} 1',
            ]
        return "\n".join(out) + "\n"
