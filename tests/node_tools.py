"""Node for the tests that verify tokens as other services do: tests/node's packages (pinned by
its package-lock.json, installed by `npm ci` when missing), a long-running jose verifier, and
Node servers started for a test."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from typing import IO

import pytest

NODE_DIRECTORY = Path(__file__).resolve().parent / "node"
NPM_SECONDS = 300
#: How long a Node process has to answer one line.
ANSWER_SECONDS = 30


def node_packages() -> Path:
    """tests/node, its packages installed; skips without node and npm, unless a variable
    requires them (TEST_REQUIRE_NODE=1, or TEST_REQUIRE_BROWSER=1, whose tests need npm too)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if "1" in (os.environ.get("TEST_REQUIRE_NODE"), os.environ.get("TEST_REQUIRE_BROWSER")):
            pytest.fail("node or npm is missing but TEST_REQUIRE_NODE or TEST_REQUIRE_BROWSER is 1")
        pytest.skip("node or npm is not installed; the Node tests are skipped")
    # npm ci writes this file last: a folder it did not finish is installed again.
    if not (NODE_DIRECTORY / "node_modules" / ".package-lock.json").exists():
        done = subprocess.run(
            ["npm", "ci", "--prefix", str(NODE_DIRECTORY), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=NPM_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return NODE_DIRECTORY


class NodeLines:
    """A Node script run from tests/node that answers each JSON line on its stdin with one JSON
    line on its stdout; its stderr is kept for the failure message."""

    def __init__(self, script: str, env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            ["node", script],
            cwd=NODE_DIRECTORY,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._errors: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            _drain(self.process.stdout, self._lines.put),
            _drain(self.process.stderr, self._errors.append),
        ]

    def ask(self, message: dict[str, Any]) -> Any:
        """The script's answer to `message`."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return json.loads(self.next_line())

    def next_line(self) -> str:
        try:
            return self._lines.get(timeout=ANSWER_SECONDS)
        except queue.Empty:
            raise AssertionError(
                f"node gave no answer in {ANSWER_SECONDS} s; stderr:\n{''.join(self._errors)}"
            ) from None

    def close(self) -> None:
        """Stop the process; its pipes closed once read to the end."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.terminate()
        self.process.wait(timeout=ANSWER_SECONDS)
        for reader in self._readers:
            reader.join(timeout=ANSWER_SECONDS)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _drain(stream: IO[str], put: Any) -> threading.Thread:
    """A thread giving each line of `stream` to `put` until it ends."""
    reader = threading.Thread(target=lambda: [put(line) for line in stream], daemon=True)
    reader.start()
    return reader


@contextlib.contextmanager
def node_lines(script: str, env: Mapping[str, str]) -> Iterator[NodeLines]:
    process = NodeLines(script, env)
    try:
        yield process
    finally:
        process.close()


class JoseVerifier:
    """jose's `createRemoteJWKSet` and `jwtVerify` in one long-lived Node process, as a Node
    resource server holds them: the key set it fetched stays in memory between tokens."""

    def __init__(self, process: NodeLines) -> None:
        self.process = process

    def verify(self, token: str) -> dict[str, Any]:
        """`{"ok": true, "kid", "sub"}`, or `{"ok": false, "code", "message"}` (jose's error)."""
        answer: dict[str, Any] = self.process.ask({"token": token})
        return answer


@contextlib.contextmanager
def jose_verifier(
    jwks_url: str, *, algorithm: str, issuer: str, audience: str, cooldown_ms: int | None = None
) -> Iterator[JoseVerifier]:
    """A JoseVerifier of the key set at `jwks_url`; `cooldown_ms` None keeps jose's default
    `cooldownDuration` (30 s before it fetches the set again for a kid it does not know)."""
    env = {"JWKS_URL": jwks_url, "ALGORITHM": algorithm, "ISSUER": issuer, "AUDIENCE": audience}
    if cooldown_ms is not None:
        env["COOLDOWN_MS"] = str(cooldown_ms)
    with node_lines("jose-verifier.mjs", env) as process:
        yield JoseVerifier(process)
