"""Security events, once they are final: one structured log line, a blinker signal, metrics.

An event recorded in a transaction is published when that transaction commits (a rolled back
login never announces itself); a refusal with nothing to store (rate limited) at once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from blinker import Namespace
from flask import current_app
from flask import has_app_context

from . import metrics

RATE_LIMITED = "rate_limited"
#: Events that may be an attack in progress: logged as warnings.
WARNING_EVENTS = frozenset({"refresh_reuse_detected", "login_failed", RATE_LIMITED})

_signals = Namespace()
#: Sent with `event=` an `AuthEventRecord` for every security event, after it is committed;
#: the sender is the app. `auth_event.connect(receiver)` to subscribe. Receivers run inside the
#: session's commit hook: they must not use the database session (queue such work instead),
#: and one that raises is logged and skipped.
auth_event = _signals.signal("flask-token-auth-event")
logger = logging.getLogger("flask_token_auth.events")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthEventRecord:
    """What an event says: never a token, a password or a hash."""

    type: str
    user_id: Any = None  # the user's key: an int, a UUID or a string
    session_id: str | None = None
    ip: str | None = None
    detail: dict[str, Any] | None = None


def publish(events: Iterable[AuthEventRecord]) -> None:
    """Log, signal and count each event."""
    sender = current_app._get_current_object() if has_app_context() else None  # type: ignore[attr-defined]
    for event in events:
        logger.log(
            logging.WARNING if event.type in WARNING_EVENTS else logging.INFO,
            "auth event %s user=%s session=%s ip=%s detail=%s",
            event.type,
            event.user_id,
            event.session_id,
            event.ip,
            event.detail or {},
            extra={"auth_event": dataclasses.asdict(event)},
        )
        metrics.count_event(event.type, event.detail or {})
        for receiver in auth_event.receivers_for(sender):
            # A subscriber's failure must not turn a committed request into an error.
            try:
                receiver(sender, event=event)
            except Exception:
                logger.exception("a receiver of auth_event failed on %s", event.type)
