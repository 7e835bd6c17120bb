"""The reference service with a pause injected for the fault tests, never in production.

While the file named by FAULT_PAUSE_FILE exists, a rotation pauses for FAULT_PAUSE_SECONDS
right after it has spent the presented token, inside its open transaction: the moment a
worker killed with SIGKILL must leave nothing half-written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from app import create_app
from app import db

PAUSE_FILE = Path(os.environ["FAULT_PAUSE_FILE"])
PAUSE_SECONDS = float(os.environ.get("FAULT_PAUSE_SECONDS", "30"))

app = create_app()


def _pause_after_spending(
    connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    if statement.startswith("UPDATE refresh_tokens SET used_at") and PAUSE_FILE.exists():
        PAUSE_FILE.write_text(str(os.getpid()))  # tells the test which worker to kill
        time.sleep(PAUSE_SECONDS)


with app.app_context():
    sa.event.listen(db.engine, "after_cursor_execute", _pause_after_spending)
