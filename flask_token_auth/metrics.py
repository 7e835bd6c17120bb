"""Prometheus counters and histograms of the security events, when `prometheus-client` is
installed (the `metrics` extra); without it every function here does nothing.

The host serves them: `prometheus_client.generate_latest()` (the reference service at
/metrics). Labels are event types, reasons and error codes, never a user, a token or an IP.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

try:
    import prometheus_client
except ImportError:  # pragma: no cover (the extra is not installed)
    prometheus_client = None  # type: ignore[assignment]

if prometheus_client is not None:
    _EVENTS = prometheus_client.Counter(
        "flask_token_auth_events", "Security events committed, by type.", ["type"]
    )
    _REFRESHES = prometheus_client.Counter(
        "flask_token_auth_refreshes", "Refreshes, rotated or answered in grace.", ["outcome"]
    )
    _REVOCATIONS = prometheus_client.Counter(
        "flask_token_auth_revocations", "Sessions revoked, by reason.", ["reason"]
    )
    _REFUSALS = prometheus_client.Counter(
        "flask_token_auth_refusals", "Requests refused, by error code.", ["error"]
    )
    _LATENCY = prometheus_client.Histogram(
        "flask_token_auth_operation_seconds", "Time of logins and refreshes.", ["operation"]
    )


def count_event(event_type: str, detail: dict[str, Any]) -> None:
    if prometheus_client is None:
        return
    _EVENTS.labels(type=event_type).inc()
    if event_type == "refreshed":
        _REFRESHES.labels(outcome="grace" if detail.get("grace") else "rotated").inc()
    revoked = detail.get("sessions_revoked")
    if isinstance(revoked, int) and revoked > 0:
        _REVOCATIONS.labels(reason=str(detail.get("reason"))).inc(revoked)


def count_refusal(error: str) -> None:
    if prometheus_client is not None:
        _REFUSALS.labels(error=error).inc()


@contextlib.contextmanager
def timed(operation: str) -> Iterator[None]:
    """Observe how long the block takes under `operation` (login, refresh)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        if prometheus_client is not None:
            _LATENCY.labels(operation=operation).observe(time.perf_counter() - started)
