"""A request the database refused for a conflict (a deadlock victim, a serialisation failure)
is the server's to run again, not the client's to see as a 503."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from .engines import is_conflict
from .state import auth_state

MAX_ATTEMPTS = 4
BACKOFF_SECONDS = 0.02
P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger(__name__)


def retry_on_conflict(view: Callable[P, R]) -> Callable[P, R]:
    """Run `view` again, after rolling its transaction back, when the database reports a
    conflict; at most MAX_ATTEMPTS times, then the error stands (503).

    For whole requests only: a use case retried inside another would lose the outer's work.
    """

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return view(*args, **kwargs)
            except DBAPIError as error:
                if attempt == MAX_ATTEMPTS or not is_conflict(error):
                    raise
                auth_state().session.rollback()
                logger.info("database conflict, attempt %d: %s", attempt, type(error.orig))
                time.sleep(random.uniform(0, BACKOFF_SECONDS * attempt))  # noqa: S311 (jitter)
        raise AssertionError("unreachable")

    return wrapper
