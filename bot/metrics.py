"""Prometheus metrics for `/metrics`, in fluxbot's own registry."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()

COMMANDS = Counter("fluxbot_commands_total", "Chat commands by verb and outcome.", ["verb", "outcome"], registry=REGISTRY)
PRS_OPENED = Counter("fluxbot_prs_opened_total", "Pull requests opened, by kind.", ["kind"], registry=REGISTRY)
GATE_DECISIONS = Counter("fluxbot_gate_decisions_total", "Change gate verdicts and decisions, by state.", ["state"],
                         registry=REGISTRY)
SLACK_RESPONSE = Histogram(
    "fluxbot_slack_ack_seconds", "Time from a Slack request's arrival to fluxbot's HTTP answer (the ack).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0), registry=REGISTRY,
)
RECONCILES = Counter("fluxbot_reconciles_total", "Followed reconciles by outcome (applied, failed, timeout).",
                     ["outcome"], registry=REGISTRY)
