"""A use case the database refused for a conflict (a deadlock victim, a serialisation failure)
is the server's to run again, not the client's to see as a 503."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Concatenate
from typing import ParamSpec
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from .engines import is_conflict
from .state import AuthState

MAX_ATTEMPTS = 4
BACKOFF_SECONDS = 0.02
P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger(__name__)


def retried(
    use_case: Callable[Concatenate[AuthState, P], R],
    state: AuthState,
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """`use_case(state, ...)`, run again after a rollback when the database reports a
    conflict; at most MAX_ATTEMPTS times, then the error stands (a 503).

    Only around a whole use case: one retried inside another would lose the outer's work.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return use_case(state, *args, **kwargs)
        except DBAPIError as error:
            if attempt == MAX_ATTEMPTS or not is_conflict(error):
                raise
            state.session.rollback()
            logger.info("database conflict, attempt %d: %s", attempt, type(error.orig).__name__)
            time.sleep(random.uniform(0, BACKOFF_SECONDS * attempt))  # noqa: S311 (jitter)
    raise AssertionError("unreachable")
