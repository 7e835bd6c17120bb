"""Load for `make bench`: wrk against a server, with the CPU the server and the database spent.

`measure(...)` runs one wrk per `Load` (with `bench/wrk.lua`), all at the same time, and returns
their `Figures`: requests per second, p50 and p99 latency, and the CPU time per request of the
gunicorn processes and of the database server processes, read from /proc before and after.
`alternate(...)` sends two loads' requests one at a time, in turn, for latency differences too
small for separate runs to resolve on a machine whose speed drifts.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class Load:
    """What one wrk process sends (see wrk.lua for the modes)."""

    server: Server
    path: str
    mode: str = "get"
    connections: int = 8
    threads: int = 1
    # Bearer tokens, refresh tokens, a password: never in a repr or an error message.
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    body: str | None = dataclasses.field(default=None, repr=False)
    tokens: Sequence[str] = dataclasses.field(default=(), repr=False)
    #: The database's CPU in the window is charged to the loads that query it.
    queries_database: bool = True


def measure(
    *loads: Load, seconds: float, until: subprocess.Popen[bytes] | None = None
) -> list[Figures]:
    """One wrk per load, all at once, for `seconds` or until the process `until` exits; the
    figures of each. LoadFailed on any failed or non-2xx answer."""
    servers = {load.server for load in loads}
    database = frozenset().union(*(server.database_processes for server in servers))
    app_before = {server: _cpu(tree(server.pid)) for server in servers}
    db_before = _cpu(_pids_named(database))
    processes = [_start(load, 3600 if until is not None else seconds) for load in loads]
    if until is not None:
        until.wait()
        for process in processes:
            process.send_signal(signal.SIGINT)  # wrk stops and reports what it measured
    outputs = [process.communicate(timeout=seconds + 120)[0].decode() for process in processes]
    app_cpu = {server: _cpu(tree(server.pid)) - app_before[server] for server in servers}
    db_cpu = _cpu(_pids_named(database)) - db_before
    results = [_result(output, load) for output, load in zip(outputs, loads, strict=True)]
    querying = sum(
        result["requests"]
        for result, load in zip(results, loads, strict=True)
        if load.queries_database
    )
    return [
        Figures(
            rate=result["requests"] / result["seconds"],
            p50=result["p50_ms"],
            p99=result["p99_ms"],
            app_cpu_us=app_cpu[load.server] / _requests_on(load.server, loads, results) * 1e6,
            db_cpu_us=db_cpu / querying * 1e6 if load.queries_database else 0.0,
        )
        for result, load in zip(results, loads, strict=True)
    ]


def alternate(first: Load, second: Load, *, pairs: int) -> tuple[Figures, Figures, list[float]]:
    """`first` and `second` (POSTs of their body) sent one at a time from here, in turn, the
    order swapped every pair, so that a drift of the machine's speed reaches both alike. Their
    figures, and each pair's latency difference, first's minus second's, in ms."""
    servers = {first.server, second.server}
    database = frozenset().union(*(server.database_processes for server in servers))
    app_before = {server: _cpu(tree(server.pid)) for server in servers}
    db_before = _cpu(_pids_named(database))
    latencies: tuple[list[float], list[float]] = ([], [])
    started = time.perf_counter()
    for number in range(pairs):
        for which in (0, 1) if number % 2 == 0 else (1, 0):
            latencies[which].append(_post((first, second)[which]))
    elapsed = time.perf_counter() - started
    app_cpu = {server: _cpu(tree(server.pid)) - app_before[server] for server in servers}
    db_cpu = _cpu(_pids_named(database)) - db_before
    querying = sum(pairs for load in (first, second) if load.queries_database)

    def figures(load: Load, latencies: list[float]) -> Figures:
        ordered = sorted(latencies)
        return Figures(
            rate=pairs / elapsed,
            p50=statistics.median(ordered),
            p99=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            app_cpu_us=app_cpu[load.server] / pairs * 1e6,
            db_cpu_us=db_cpu / querying * 1e6 if load.queries_database else 0.0,
        )

    differences = [a - b for a, b in zip(*latencies, strict=True)]
    return figures(first, latencies[0]), figures(second, latencies[1]), differences


def _post(load: Load) -> float:
    """One POST of the load's body on a new connection; its latency in ms. LoadFailed if not
    2xx."""
    host, port = load.server.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json", **load.headers}
    try:
        started = time.perf_counter()
        connection.request("POST", load.path, body=load.body, headers=headers)
        response = connection.getresponse()
        response.read()
        latency = (time.perf_counter() - started) * 1000
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise LoadFailed(f"{response.status} from {load.server.base_url + load.path}")
    return latency


def _start(load: Load, seconds: float) -> subprocess.Popen[bytes]:
    command = ["wrk", f"-t{load.threads}", f"-c{load.connections}", "--timeout", "30s"]
    command += ["-s", str(SCRIPT), f"-d{int(seconds)}s", load.server.base_url + load.path]
    for name, value in load.headers.items():
        command += ["-H", f"{name}: {value}"]
    env = os.environ | {"BENCH_MODE": load.mode, "BENCH_TOKENS": ",".join(load.tokens)}
    if load.body is not None:
        env["BENCH_BODY"] = load.body
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _result(output: str, load: Load) -> dict[str, Any]:
    line = next((x for x in output.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise LoadFailed(f"wrk gave no figures:\n{output}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH "))
    if result["failed"] or not result["requests"]:
        where = load.server.base_url + load.path
        raise LoadFailed(f"{result['failed']} of {result['requests']} requests failed: {where}")
    return result


def _requests_on(server: Server, loads: Sequence[Load], results: list[dict[str, Any]]) -> int:
    return sum(
        r["requests"] for r, load in zip(results, loads, strict=True) if load.server == server
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


def tree(root: int) -> list[int]:
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
