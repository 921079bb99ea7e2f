"""Prometheus metrics and the health check (``METRICS_PORT``): see ``collect`` for what is
measured and how, ``routes`` for Discord's request labels, ``server`` for the HTTP side."""

from bot.metrics.collect import GatewayState, Metrics, Sources
from bot.metrics.server import MetricsServer, MetricsUnavailable

__all__ = ["GatewayState", "Metrics", "MetricsServer", "MetricsUnavailable", "Sources"]
