"""`make bench`: real gunicorn (2 sync workers) on loopback, loaded by wrk; every goal a ratio
within one run, from rounds that alternate their order.

On SQLite, and on PostgreSQL and MariaDB when BENCH_POSTGRES_URL and BENCH_MARIADB_URL name a
server (the bench creates its own database there and drops it):
- the protected `/api/hello` (signature + session query), the stateless `/api/stateless`,
  Flask-JWT-Extended's `/api/hello` (`fjx_app.py`), stateless and with its documented database
  blocklist, and the floor of a checked route, each loaded at the same time as Flask alone
  serving the same JSON (`plain_app.py`), and compared with it by CPU per request;
- refresh (a rotation) against the floor of a write, one INSERT and COMMIT;
- login against an endpoint that verifies one argon2 hash;
- refresh with BENCH_PRUNE_ROWS expired tokens in the table, then while `flask auth prune`
  deletes them.
Prints Markdown and writes it into bench/results.md, between its two marker comments (BEGIN
and END below), keeping the hand-written rest. BENCH_ROUNDS, BENCH_SECONDS, BENCH_LOGIN_PAIRS
and BENCH_PRUNE_ROWS make a shorter run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from datetime import UTC
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from load import alternate
from load import Figures
from load import Load
from load import measure
from load import Server
from load import tree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_token_auth import AuthSession  # noqa: E402
from flask_token_auth import RefreshToken  # noqa: E402
from flask_token_auth import User  # noqa: E402
from flask_token_auth.engines import register_url_schemes  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
PRUNE_ROWS = int(os.environ.get("BENCH_PRUNE_ROWS", "1000000"))
PRUNE_BASELINE_SECONDS = 15
LOGIN_PAIRS = int(os.environ.get("BENCH_LOGIN_PAIRS", "12"))
CHAINS = 8  # concurrent refresh chains: wrk threads of one connection each
PASSWORD = "correct horse battery"  # noqa: S105 (a benchmark user)
CREDENTIALS = {"email": "bench@example.com", "password": PASSWORD}
# `--threads 1`: gunicorn.conf.py's threads would turn the sync workers into gthread ones.
WORKERS = 2
GUNICORN = [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--worker-class", "sync"]
GUNICORN += ["--threads", "1"]
Row = tuple[str, list[Figures], str, str]  # name, runs, ratio, goal
RESULTS = ROOT / "bench" / "results.md"
# What the bench writes lies between these two lines of results.md; the rest is written by hand.
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def main() -> None:
    register_url_schemes()
    servers = {"PostgreSQL": "BENCH_POSTGRES_URL", "MariaDB": "BENCH_MARIADB_URL"}
    targets: list[tuple[str, str | None]] = [("SQLite", None)]
    targets += [(name, os.environ[key]) for name, key in servers.items() if os.environ.get(key)]
    write_results("")  # before the first round: a file without its markers fails at once
    sections = [f"## The run of {datetime.now(UTC):%Y-%m-%d}\n\n" + machine(targets)]
    print(sections[0], flush=True)
    for name, server_url in targets:
        with bench_database(server_url) as url:
            sections.append(f"### {name}\n\n" + render(bench(url)))
        print(sections[-1], flush=True)
        write_results("\n".join(sections))


def write_results(generated: str) -> None:
    """Put `generated` between the BEGIN and END lines of results.md, keeping the rest; with
    `generated` empty, only check that both lines are there, in that order, once each."""
    lines = RESULTS.read_text().splitlines()
    if lines.count(BEGIN) != 1 or lines.count(END) != 1 or lines.index(BEGIN) > lines.index(END):
        raise SystemExit(
            f"{RESULTS} needs the line {BEGIN} before the bench's output and the line {END} "
            "after it, once each (the bench rewrites only what lies between them): add them "
            "around the generated part, from the run's heading to the last table."
        )
    if not generated:
        return
    before, after = lines[: lines.index(BEGIN) + 1], lines[lines.index(END) :]
    RESULTS.write_text("\n".join([*before, "", generated.strip(), "", *after]) + "\n")


@contextlib.contextmanager
def bench_database(server_url: str | None) -> Iterator[str]:
    """A new empty database: a SQLite file, or a database created on the server and dropped."""
    if server_url is None:
        yield f"sqlite:///{tempfile.mkdtemp(prefix='bench-')}/bench.db"
        return
    name = f"bench_{secrets.token_hex(4)}"
    server = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE {name}")
        server.dispose()


def bench(database_url: str) -> list[Row]:
    env = os.environ | {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_hex(32),
        "AUTH_COOKIE_SECURE": "false",
        "AUTH_RATELIMIT_ENABLED": "false",
        "FLASK_APP": "wsgi",
    }
    flask = [sys.executable, "-m", "flask"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    # The blocklist's table, before two workers race to create it.
    fjx_tables = [sys.executable, "fjx_app.py"]
    subprocess.run(fjx_tables, cwd=ROOT / "bench", env=env, check=True, capture_output=True)
    with (
        gunicorn("ours_app:app", env, "bench") as ours,
        gunicorn("plain_app:app", env, "bench") as plain,
        gunicorn("plain_app:app", env, "bench") as roundtrip,
        gunicorn("fjx_app:app", env, "bench") as fjx,
        gunicorn("fjx_app:blocklist_app", env, "bench") as fjx_blocklist,
    ):
        post(ours, "/auth/register", CREDENTIALS)
        rows = throughput(
            plain, ours, fjx, fjx_blocklist, roundtrip, sqlite=database_url.startswith("sqlite")
        )
        rows += writes(ours, plain)
        refresh = rows[-1][1]
        rows += logins(ours, plain)
        rows += prune_under_load(ours, env, database_url, refresh)
    return rows


@contextlib.contextmanager
def gunicorn(application: str, env: dict[str, str], folder: str = ".") -> Iterator[Server]:
    """gunicorn with 2 sync workers (not the service's threaded ones of gunicorn.conf.py)
    serving `application` from `folder`: its base URL and master's pid."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [*GUNICORN, "--chdir", str(ROOT / folder), "--bind", f"127.0.0.1:{port}", application],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=5).close()  # noqa: S310
                break
            except OSError:
                if server.poll() is not None:
                    message = f"gunicorn {application} exited: is DATABASE_URL usable?"
                    raise SystemExit(message) from None
                time.sleep(0.2)
        else:
            raise SystemExit(f"gunicorn {application} did not answer in 30 s")
        yield Server(base, server.pid, database_processes(env["DATABASE_URL"]))
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def pinned(*servers: Server) -> Iterator[None]:
    """Each server's workers pinned one to a core while inside, so that servers measured at
    the same time share the cores alike: on a virtual machine whose two cores ran at different
    speeds, rounds that left the workers to the scheduler spread four times wider. (Not for
    the rest: argon2 runs its lanes on threads, which would inherit one core.)"""
    cores = sorted(os.sched_getaffinity(0))
    workers = [sorted(workers_of(server)) for server in servers]
    for number, worker in (pair for each in workers for pair in enumerate(each)):
        os.sched_setaffinity(worker, {cores[number % len(cores)]})
    try:
        yield
    finally:
        for worker in (worker for each in workers for worker in each):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(worker, cores)


def workers_of(server: Server) -> list[int]:
    """The pids of the server's WORKERS workers, once all have started."""
    for _ in range(150):
        workers = tree(server.pid)[1:]
        if len(workers) == WORKERS:
            return workers
        time.sleep(0.2)
    raise SystemExit(f"gunicorn {server.base_url} did not start its {WORKERS} workers in 30 s")


def database_processes(url: str) -> frozenset[str]:
    """The names of the processes of the database server at `url` (none for SQLite)."""
    backend = sa.make_url(url).get_backend_name()
    return {"postgresql": frozenset({"postgres"}), "mysql": frozenset({"mariadbd", "mysqld"})}.get(
        backend, frozenset()
    )


def post(server: Server, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(  # noqa: S310 (our own loopback server)
        server.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Token-Transport": "body"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def rounds(runs: dict[str, Callable[[], Any]]) -> dict[str, list[Any]]:
    """Every run once per round, ROUNDS rounds, the order reversed every other round."""
    results: dict[str, list[Any]] = {name: [] for name in runs}
    for number in range(ROUNDS):
        order = list(runs) if number % 2 == 0 else list(reversed(runs))
        for name in order:
            figures = runs[name]()
            results[name].append(figures)
            print(f"round {number + 1}: {name}: {figures}", file=sys.stderr, flush=True)
    return results


def throughput(
    plain: Server,
    ours: Server,
    fjx: Server,
    fjx_blocklist: Server,
    roundtrip: Server,
    *,
    sqlite: bool,
) -> list[Row]:
    """Each GET route loaded at the same time as Flask alone serving the same JSON (`plain`),
    by two wrk of 8 connections: a slow spell of the shared machine slows both alike, and
    their ratio is their request rates in the same seconds. `roundtrip` is another instance
    of the plain app, for its `/roundtrip` (a server's CPU is shared by its routes)."""
    ours_token = post(ours, "/auth/login", CREDENTIALS)["access_token"]
    fjx_token, fjx_blocklist_token = (fjx_access_token(server) for server in (fjx, fjx_blocklist))

    def beside_plain(load: Load) -> Callable[[], tuple[Figures, Figures]]:
        def run() -> tuple[Figures, Figures]:
            plain_load = Load(plain, "/healthz", queries_database=False)
            baseline, figures = measure(plain_load, load, seconds=SECONDS)
            return baseline, figures

        return run

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    routes = {
        "unprotected": beside_plain(Load(ours, "/healthz", queries_database=False)),
        "protected": beside_plain(Load(ours, "/api/hello", headers=bearer(ours_token))),
        "stateless": beside_plain(
            Load(ours, "/api/stateless", headers=bearer(ours_token), queries_database=False)
        ),
        "fjx": beside_plain(
            Load(fjx, "/api/hello", headers=bearer(fjx_token), queries_database=False)
        ),
        "fjx_blocklist": beside_plain(
            Load(fjx_blocklist, "/api/hello", headers=bearer(fjx_blocklist_token))
        ),
        "roundtrip": beside_plain(Load(roundtrip, "/roundtrip")),
    }
    with pinned(plain, ours, fjx, fjx_blocklist, roundtrip):
        pairs = rounds(routes)
    runs = {name: [figures for _, figures in pairs[name]] for name in pairs}
    runs["plain"] = [baseline for name in pairs for baseline, _ in pairs[name]]
    rate = {name: [x.rate / plain.rate for plain, x in pairs[name]] for name in pairs}
    # What the rate ratio would be with the machine to itself: the plain route's CPU per
    # request over the route's, the database's included (it runs on the same cores).
    cost = {
        name: [plain.app_cpu_us / (x.app_cpu_us + x.db_cpu_us) for plain, x in pairs[name]]
        for name in pairs
    }

    def ratios(name: str) -> str:
        return f"CPU {show(cost[name])}; rate {show(rate[name])}"

    def over(name: str, base: str) -> list[float]:
        """Per round, the CPU ratio of `name` over that of `base`."""
        return [x / y for x, y in zip(cost[name], cost[base], strict=True)]

    protected = shown(cost["protected"])
    if sqlite:  # no round trip: the floor costs what the plain route does
        protected_goal = goal(">= 0.75 of the plain route", protected >= 0.75)
    else:
        of_floor = over("protected", "roundtrip")
        met = shown(of_floor) >= 0.90
        protected_goal = goal(">= 0.90 of the floor (CPU)", met, show(of_floor))
    of_fjx = over("protected", "fjx_blocklist")
    protected_goal += "; " + goal("2x FJX with blocklist (CPU)", shown(of_fjx) >= 2, show(of_fjx))
    return [
        ("Flask alone: GET /healthz (the plain route, beside each row)", runs["plain"], "1", ""),
        (
            "GET /healthz of the host with the extension",
            runs["unprotected"],
            ratios("unprotected"),
            "",
        ),
        (
            "GET /api/hello (`@auth_required`: signature and session query)",
            runs["protected"],
            ratios("protected"),
            protected_goal,
        ),
        (
            "GET /api/stateless (`@auth_required(stateless=True)`)",
            runs["stateless"],
            ratios("stateless"),
            goal(">= 0.90 of the plain route", shown(cost["stateless"]) >= 0.90),
        ),
        (
            "Flask-JWT-Extended: GET /api/hello (`@jwt_required()`, stateless)",
            runs["fjx"],
            ratios("fjx"),
            "",
        ),
        (
            "Flask-JWT-Extended with its documented database blocklist: GET /api/hello "
            "(`@jwt_required()`, a `TokenBlocklist` query by `jti` through Flask-SQLAlchemy)",
            runs["fjx_blocklist"],
            ratios("fjx_blocklist"),
            "",
        ),
        (
            "Flask alone after one `SELECT 1`: GET /roundtrip (the floor of a checked route)",
            runs["roundtrip"],
            ratios("roundtrip"),
            "",
        ),
    ]


def fjx_access_token(server: Server) -> str:
    """An access token from the `/token` route of a Flask-JWT-Extended app."""
    with urllib.request.urlopen(server.base_url + "/token") as response:  # noqa: S310
        token: str = json.loads(response.read())["access_token"]
    return token


def writes(ours: Server, plain: Server) -> list[Row]:
    """Refresh (CHAINS chains, one connection each) against the INSERT floor at the same
    concurrency, one after the other (run together, they would queue on each other's locks)."""

    def refresh() -> Figures:
        tokens = [post(ours, "/auth/login", CREDENTIALS)["refresh_token"] for _ in range(CHAINS)]
        return rotate(ours, tokens, seconds=SECONDS)

    def insert() -> Figures:
        load = Load(plain, "/insert", mode="post", body="{}", threads=CHAINS, connections=CHAINS)
        return measure(load, seconds=SECONDS)[0]

    runs = rounds({"refresh": refresh, "insert": insert})
    p50 = per_round(runs["refresh"], runs["insert"], "p50")
    return [
        ("POST /insert (one INSERT and COMMIT: the floor)", runs["insert"], "", ""),
        (
            "POST /auth/refresh (rotation)",
            runs["refresh"],
            "p50 " + show(p50) + " x the floor's",
            goal("p50 <= 3x the floor's", shown(p50) <= 3),
        ),
    ]


def rotate(
    server: Server,
    tokens: list[str],
    *,
    seconds: float,
    until: subprocess.Popen[bytes] | None = None,
) -> Figures:
    """Refreshes of each token's chain, one wrk thread and connection per chain."""
    load = Load(
        server,
        "/auth/refresh",
        mode="refresh",
        threads=len(tokens),
        connections=len(tokens),
        tokens=tokens,
    )
    return measure(load, seconds=seconds, until=until)[0]


def logins(ours: Server, plain: Server) -> list[Row]:
    """Login against an endpoint that verifies one argon2 hash (the same profile): one request
    at a time, in turn, LOGIN_PAIRS pairs a round. Their latencies differ by a few per cent
    and argon2's alone drifts by more between runs, so the goal takes, per round, the ratio of
    the two medians of requests sent in turn; each pair's difference in ms is shown too."""
    body = json.dumps(CREDENTIALS)
    login = Load(ours, "/auth/login", mode="post", body=body)
    argon2 = Load(plain, "/argon2", mode="post", body=body, queries_database=False)
    runs = rounds({"pairs": lambda: alternate(login, argon2, pairs=LOGIN_PAIRS)})["pairs"]
    of_floor = per_round([run for run, _, _ in runs], [floor for _, floor, _ in runs], "p50")
    differences = [
        difference for _, _, round_differences in runs for difference in round_differences
    ]
    round_medians = [statistics.median(round_differences) for _, _, round_differences in runs]
    extra = statistics.median(differences)
    return [
        (
            "POST /argon2 (one argon2 verification: the floor of a login)",
            [floor for _, floor, _ in runs],
            "",
            "",
        ),
        (
            f"POST /auth/login (in turn with the floor, {LOGIN_PAIRS} pairs a round)",
            [figures for figures, _, _ in runs],
            f"p50 {show(of_floor)} x the floor's; each pair's difference: median "
            f"{extra:+.1f} ms (rounds: "
            + ", ".join(f"{value:+.1f}" for value in round_medians)
            + ")",
            goal("p50 <= 1.05x the floor's", shown(of_floor) <= 1.05),
        ),
    ]


def prune_under_load(
    ours: Server,
    env: dict[str, str],
    database_url: str,
    small: list[Figures],
) -> list[Row]:
    """Refresh with PRUNE_ROWS expired tokens in the table (against `small`, the same with a
    small table), then while `flask auth prune` deletes them, in batches."""
    seed_expired_tokens(database_url, PRUNE_ROWS)
    tokens = [post(ours, "/auth/login", CREDENTIALS)["refresh_token"] for _ in range(CHAINS)]
    # A p99 over a window as long as a prune's, not over 3 s, for the two to be compared.
    big = rotate(ours, tokens, seconds=PRUNE_BASELINE_SECONDS)
    tokens = [post(ours, "/auth/login", CREDENTIALS)["refresh_token"] for _ in range(CHAINS)]
    started = time.monotonic()
    pruning = subprocess.Popen(
        [sys.executable, "-m", "flask", "auth", "prune"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    during = rotate(ours, tokens, seconds=SECONDS, until=pruning)
    seconds = time.monotonic() - started
    output = pruning.stdout.read().decode() if pruning.stdout else ""
    p99 = during.p99 / big.p99
    small_p50 = statistics.median(run.p50 for run in small)
    return [
        (
            f"POST /auth/refresh, {PRUNE_ROWS:,} expired tokens in the table "
            f"({PRUNE_BASELINE_SECONDS} s)",
            [big],
            f"p50 {big.p50 / small_p50:.2f} x with a small table",
            "",
        ),
        (
            f"POST /auth/refresh during `flask auth prune` of them ({seconds:.0f} s; "
            + output.strip().split(";")[0]
            + ")",
            [during],
            f"p99 {p99:.2f} x without the prune, no failure",
            goal("p99 <= 2x without the prune", round(p99, 2) <= 2),
        ),
    ]


def seed_expired_tokens(database_url: str, count: int) -> None:
    """`count` refresh tokens that expired a day ago, in one expired session of the bench user."""
    engine = sa.create_engine(database_url)
    past = datetime.now(UTC) - timedelta(days=1)
    with engine.begin() as connection:
        user_id = connection.execute(sa.select(User.id).limit(1)).scalar_one()
        connection.execute(
            sa.insert(AuthSession).values(
                id="bench-expired",
                user_id=user_id,
                created_at=past,
                last_used_at=past,
                expires_at=past,
            )
        )
    chunk = 20000
    for start in range(0, count, chunk):
        rows = [
            {
                "token_hash": f"{number:064x}",
                "user_id": user_id,
                "session_id": "bench-expired",
                "created_at": past,
                "expires_at": past,
            }
            for number in range(start, min(start + chunk, count))
        ]
        with engine.begin() as connection:
            connection.execute(sa.insert(RefreshToken), rows)
    engine.dispose()


def per_round(runs: list[Figures], bases: list[Figures], figure: str) -> list[float]:
    return [
        getattr(run, figure) / getattr(base, figure) for run, base in zip(runs, bases, strict=True)
    ]


def show(values: list[float], form: str = "{:.2f}") -> str:
    """The median, then each round's value."""
    rounds_text = ", ".join(form.format(value) for value in values)
    return f"**{form.format(statistics.median(values))}** ({rounds_text})"


def shown(values: list[float]) -> float:
    """The median as the table shows it, to two decimals: what a goal judges, so that a
    figure shown as 0.90 meets a goal of 0.90."""
    return round(statistics.median(values), 2)


def goal(target: str, met: bool, figure: str = "") -> str:
    """`target: met` or `target: **missed**`, then the figure judged when the row's ratio
    column does not show it."""
    verdict = "met" if met else "**missed**"
    return f"{target}: {verdict}" + (f" at {figure}" if figure else "")


def render(rows: list[Row]) -> str:
    lines = [
        "| what | req/s | p50 ms | p99 ms | app CPU µs/req | DB CPU µs/req "
        "| ratio: median (rounds) | goal |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for name, runs, ratio, target in rows:
        medians = [
            statistics.median(getattr(run, figure) for run in runs)
            for figure in ("rate", "p50", "p99", "app_cpu_us", "db_cpu_us")
        ]
        rate, p50, p99, app_cpu, db_cpu = medians
        lines.append(
            f"| {name} | {rate:.0f} | {p50:.2f} | {p99:.2f} | {app_cpu:.0f} | {db_cpu:.0f} "
            f"| {ratio} | {target} |"
        )
    return "\n".join(lines) + "\n"


def machine(targets: list[tuple[str, str | None]]) -> str:
    """What the figures were measured on."""
    versions = [f"SQLite {sqlite3.sqlite_version}"]
    for name, url in targets:
        if url is not None:
            engine = sa.create_engine(url)
            with engine.connect() as connection:
                version = str(connection.exec_driver_sql("SELECT version()").scalar())
                versions.append(f"{name} {version.removeprefix(name).strip()}")
            engine.dispose()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split()
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {'; '.join(versions)}; {' '.join(wrk[:2])}.\n\n"
        "Each app under gunicorn with 2 sync workers, on loopback. A GET route runs at the "
        "same time as Flask alone serving the same JSON, each loaded by its own wrk (one "
        "thread, 8 connections), so that both see the same machine, and each server's two "
        "workers are pinned one to a core. Its CPU ratio (the goals') "
        "is the plain route's CPU per request over the route's, its database's included; its "
        "rate ratio, the two request rates in the same seconds. "
        f"Refresh ({CHAINS} chains, a wrk thread and connection each) and the INSERT floor (as "
        "many connections) run alone; login and the argon2 floor are sent one request at a "
        "time, in turn. "
        f"{ROUNDS} rounds of {SECONDS:.0f} s per row, their order reversed every other round; "
        "figures are medians, ratios per round and their median. CPU is per request: "
        "gunicorn's master and workers, and the database server's processes. A goal that "
        "compares two routes (the floor's, Flask-JWT-Extended's) divides their CPU ratios "
        "round by round.\n"
    )


if __name__ == "__main__":
    main()
