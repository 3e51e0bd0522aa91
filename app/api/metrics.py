"""GET /metrics: every worker's metrics, in Prometheus's text format (app/observing/metrics.py)."""

from __future__ import annotations

from flask import Response, current_app

from app.api import METRICS_KEY
from app.observing.metrics import CONTENT_TYPE


def scrape() -> Response:
    """The metrics, as Prometheus scrapes them (the route exists only when they are on)."""
    return Response(current_app.extensions[METRICS_KEY].exposition(), content_type=CONTENT_TYPE)
