"""Prometheus metrics for `/metrics`, in fluxbot's own registry."""
from __future__ import annotations

import platform
import time
from importlib import metadata
from typing import Any, Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client import (CollectorRegistry, Counter, GCCollector, Gauge, Histogram, Info,
                               PlatformCollector, ProcessCollector)

REGISTRY = CollectorRegistry()


def _version() -> str:
    try:
        return metadata.version("fluxbot")
    except metadata.PackageNotFoundError:
        return "unknown"

COMMANDS = Counter("fluxbot_commands_total", "Chat commands by verb and outcome.", ["verb", "outcome"], registry=REGISTRY)
PRS_OPENED = Counter("fluxbot_prs_opened_total", "Pull requests opened, by kind.", ["kind"], registry=REGISTRY)
GATE_DECISIONS = Counter("fluxbot_gate_decisions_total", "Change gate verdicts and decisions, by state.", ["state"],
                         registry=REGISTRY)
SLACK_RESPONSE = Histogram(
    "fluxbot_slack_ack_seconds", "Time from a Slack request's arrival to fluxbot's HTTP answer (the ack).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0), registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram("fluxbot_reconcile_duration_seconds", "From a merge to Flux's verdict, by outcome.",
                              ["outcome"], buckets=(10, 30, 60, 120, 300, 600, 1200, 3600), registry=REGISTRY)
RECONCILES = Counter("fluxbot_reconciles_total", "Followed reconciles by outcome (applied, failed, timeout).",
                     ["outcome"], registry=REGISTRY)

# The process and the interpreter (CPU, memory, open files, GC), as the default registry has them.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

BUILD_INFO = Info("fluxbot_build", "fluxbot's version and the Python running it.", registry=REGISTRY)
BUILD_INFO.info({"version": _version(), "python": platform.python_version()})
DEPENDENCY_UP = Gauge("fluxbot_dependency_up", "Whether a dependency answered its last readiness check (1) or not (0).",
                      ["dependency"], registry=REGISTRY)
HTTP_REFUSED = Counter("fluxbot_http_refused_total", "HTTP requests refused before any handler, by reason.",
                       ["reason"], registry=REGISTRY)
COMMAND_SECONDS = Histogram("fluxbot_command_duration_seconds", "Time to answer a chat command, by verb and outcome.",
                            ["verb", "outcome"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                            registry=REGISTRY)
JOURNAL_GIVEN_UP = Counter("fluxbot_journal_given_up_total", "Journalled requests given up after the last retry.",
                           registry=REGISTRY)
RETENTION_DELETED = Counter("fluxbot_retention_deleted_total", "Store rows deleted by retention, by table.",
                            ["table"], registry=REGISTRY)
# A rising rate is the first sign of an expired token, missing RBAC or an outage, before users notice.
API_ERRORS = Counter("fluxbot_api_errors_total", "Errors from the Slack, GitHub and Kubernetes APIs, by API and "
                     "reason (an HTTP status, Slack's error code, `unreachable`, `rate_limited`).", ["api", "reason"],
                     registry=REGISTRY)
RENDERS = Counter("fluxbot_renders_total", "kubectl kustomize renders asked for, by how they were answered: `cached`, "
                  "`shared` (with a render of the same trees in flight), `rendered`, `failed` (or refused).", ["result"],
                  registry=REGISTRY)
RENDER_SECONDS = Histogram("fluxbot_render_duration_seconds", "Time of one kubectl kustomize run (renders not cached).",
                           buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter("fluxbot_webhook_deliveries_total", "GitHub webhook deliveries by event and result.",
                             ["event", "result"], registry=REGISTRY)


class StoreCollector:
    """Gauges read from the store at scrape time: the journal and the change gates waiting."""

    def __init__(self, store: Any, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        journal = self._store.query("SELECT count(*) AS n FROM requests WHERE state = 'running'")[0]["n"]
        yield GaugeMetricFamily("fluxbot_journal_requests", "Journalled chat requests not answered yet.", value=journal)
        gates = self._store.query("SELECT count(*) AS n, min(created) AS oldest FROM gates WHERE state = 'pending'")[0]
        yield GaugeMetricFamily("fluxbot_gates_pending", "Change gates waiting for a decision.", value=gates["n"])
        waited = self._clock() - gates["oldest"] if gates["oldest"] else 0.0
        yield GaugeMetricFamily("fluxbot_gate_oldest_wait_seconds", "How long the oldest pending gate has waited.",
                                value=waited)


class RateLimitCollector:
    """GitHub's primary rate limit as the forge's last answer reported it (no request of its own)."""

    def __init__(self, read: Callable[[], tuple[int, int] | None]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        known = self.read()
        if known is None:  # no answer from GitHub yet
            return
        remaining, limit = known
        yield GaugeMetricFamily("fluxbot_github_rate_limit_remaining", "GitHub API requests left in this window.",
                                value=remaining)
        yield GaugeMetricFamily("fluxbot_github_rate_limit", "GitHub API requests allowed per window.", value=limit)
