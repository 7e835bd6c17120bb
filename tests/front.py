"""A stable address in front of the server of the moment, as a load balancer keeps one through a
deploy: verifiers keep the JWKS URL they were given while the servers behind it change. With
`cache`, it also keeps each GET answer for its `Cache-Control: max-age`, as an HTTP cache (a
CDN, a caching proxy) does."""

from __future__ import annotations

import contextlib
import http.client
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

_MAX_AGE = re.compile(r"max-age=(\d+)")
# Headers that concern one connection, not the message (RFC 9110 section 7.6.1).
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "proxy-connection"}


class Front(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, cache: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.cache = cache
        #: The base URL of the server behind it; set it to deploy another.
        self.upstream = ""
        #: GET answers kept: path -> (time kept, max-age, status, headers, body).
        self.kept: dict[str, tuple[float, int, int, list[tuple[str, str]], bytes]] = {}
        #: Each request that reached the server behind, by path, in order.
        self.forwarded: list[str] = []
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Forward(BaseHTTPRequestHandler):
    server: Front

    def do_GET(self) -> None:
        front = self.server
        with front.lock:
            kept = front.kept.get(self.path)
        if kept is not None and time.monotonic() < kept[0] + kept[1]:
            kept_at, _, status, headers, body = kept
            age = [("Age", str(int(time.monotonic() - kept_at)))]
            self._answer(status, headers + age, body)
            return
        status, headers, body = self._forwarded()
        max_age = _MAX_AGE.search(dict(headers).get("Cache-Control", ""))
        if front.cache and status == 200 and max_age:
            with front.lock:
                front.kept[self.path] = (time.monotonic(), int(max_age[1]), status, headers, body)
        self._answer(status, headers, body)

    def do_POST(self) -> None:
        self._answer(*self._forwarded())

    def _forwarded(self) -> tuple[int, list[tuple[str, str]], bytes]:
        front = self.server
        with front.lock:
            front.forwarded.append(self.path)
        upstream = urllib.parse.urlsplit(front.upstream)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {
            name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP
        }
        connection = http.client.HTTPConnection(upstream.netloc, timeout=30)
        try:
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            kept = [
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in _HOP_BY_HOP | {"content-length"}
            ]
            return response.status, kept, answer
        finally:
            connection.close()

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def front(*, cache: bool) -> Iterator[Front]:
    """A Front on a free loopback port, serving until the block ends."""
    server = Front(cache=cache)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
