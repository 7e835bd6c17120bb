"""Load for `make bench`: wrk against a server, with the CPU the server and the database spent.

`measure(...)` runs wrk with `bench/wrk.lua` and returns one `Figures`: requests per second,
p50 and p99 latency, and the CPU time per request of the gunicorn processes and of the database
server processes, read from /proc before and after.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
from collections.abc import Iterable
from collections.abc import Mapping
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Server:
    """A gunicorn server under test."""

    base_url: str
    pid: int  # the master's; it and its workers are counted
    database_processes: frozenset[str]  # names of the database server's processes, counted too


@dataclasses.dataclass(frozen=True)
class Figures:
    rate: float  # requests per second
    p50: float  # milliseconds
    p99: float
    app_cpu_us: float  # gunicorn's CPU per request, microseconds
    db_cpu_us: float  # the database server's (none on SQLite: it runs inside the app)


class LoadFailed(SystemExit):
    pass


def measure(
    server: Server,
    path: str,
    *,
    seconds: float,
    mode: str = "get",
    threads: int = 2,
    connections: int = 16,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    tokens: Iterable[str] = (),
    until: subprocess.Popen[bytes] | None = None,
) -> Figures:
    """wrk on `server` for `seconds`, or until the process `until` exits; LoadFailed on any
    failed or non-2xx answer."""
    url = server.base_url + path
    command = ["wrk", f"-t{threads}", f"-c{connections}", "--timeout", "30s", "-s", str(SCRIPT)]
    command += [f"-d{int(seconds) if until is None else 3600}s", url]
    for name, value in (headers or {}).items():
        command[1:1] = ["-H", f"{name}: {value}"]
    env = os.environ | {"BENCH_MODE": mode, "BENCH_TOKENS": ",".join(tokens)}
    if body is not None:
        env["BENCH_BODY"] = body
    database = server.database_processes
    app_before, db_before = _cpu(_tree(server.pid)), _cpu(_pids_named(database))
    wrk = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if until is not None:
        until.wait()
        wrk.send_signal(signal.SIGINT)  # wrk stops and reports what it measured so far
    output = wrk.communicate(timeout=seconds + 120)[0].decode()
    app_cpu = _cpu(_tree(server.pid)) - app_before
    db_cpu = _cpu(_pids_named(database)) - db_before
    line = next((x for x in output.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise LoadFailed(f"wrk gave no figures:\n{output}")
    result = json.loads(line.removeprefix("BENCH "))
    if result["failed"] or not result["requests"]:
        raise LoadFailed(f"{result['failed']} of {result['requests']} requests failed: {url}")
    requests = result["requests"]
    return Figures(
        rate=requests / result["seconds"],
        p50=result["p50_ms"],
        p99=result["p99_ms"],
        app_cpu_us=app_cpu / requests * 1e6,
        db_cpu_us=db_cpu / requests * 1e6,
    )


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name; None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _cpu(pids: Iterable[int]) -> float:
    """User and system CPU seconds of `pids`, their reaped children's included."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:  # utime, stime, cutime, cstime
            total += sum(int(value) for value in fields[11:15])
    return total / TICKS


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _tree(root: int) -> list[int]:
    """`root` and its children (gunicorn's master and workers)."""
    children = [pid for pid in _all_pids() if (fields := _stat(pid)) and int(fields[1]) == root]
    return [root, *children]


def _pids_named(names: frozenset[str]) -> list[int]:
    pids: list[int] = []
    if not names:
        return pids
    for pid in _all_pids():
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if name in names:
            pids.append(pid)
    return pids
