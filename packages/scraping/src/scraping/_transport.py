"""The Fetcher's httpx transport: HTTP/1.1 over the standard library's http.client, its
connections kept alive and reused.

httpx.Client still does all that sits above the wire (URLs, headers, redirects, cookies,
content decoding); only the exchange itself is http.client's. httpx's own transport (httpcore
and h11, in Python) spends about twice the CPU per request: 100 requests to the benchmark's
loopback server took 61 ms of CPU through httpx's transport and 40 ms through this one, which
on a fast network is the largest part of the stage's own time. Failures are raised as httpx's
exceptions (ConnectError, ReadTimeout, RemoteProtocolError...), as httpx's transport raises them.

It sets TLS up (loads the CA bundle, ~30 ms of CPU) at the first https request, where httpx's
transport does it up front, and trusts what httpx trusts (certifi, or SSL_CERT_FILE/SSL_CERT_DIR).
As httpcore does, it drops an idle connection that the server has closed rather than reuse it, and
reports the sockets it opens through the "trace" request extension with httpcore's event names,
which the Fetcher's watchdog relies on.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

_Origin = tuple[str, str, int]
_Trace = Callable[[str, dict], None]
_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_IDLE_PER_ORIGIN = 4


class StdlibTransport(httpx.BaseTransport):
    """Thread-safe: each request has a connection to itself, taken from the idle ones or new."""

    def __init__(self) -> None:
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        origin = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        timeout = request.extensions.get("timeout", {})
        connection = self._take(origin) or self._connect(origin, timeout.get("connect"), request.extensions)
        try:
            with _as_httpx_errors(httpx.WriteTimeout, httpx.WriteError):
                connection.sock.settimeout(timeout.get("write"))
                connection.putrequest(
                    request.method, url.raw_path.decode("ascii"), skip_host=True, skip_accept_encoding=True
                )
                for name, value in request.headers.raw:
                    connection.putheader(name, value)
                connection.endheaders(request.read() or None)
            with _as_httpx_errors(httpx.ReadTimeout, httpx.ReadError):
                connection.sock.settimeout(timeout.get("read"))
                answer = connection.getresponse()
                body = answer.read()
        except BaseException:
            connection.close()
            raise
        if answer.will_close:
            connection.close()
        else:
            self._give_back(origin, connection)
        return httpx.Response(
            answer.status,
            headers=answer.getheaders(),
            stream=httpx.ByteStream(body),
            extensions={
                "http_version": b"HTTP/1.0" if answer.version == 10 else b"HTTP/1.1",
                "reason_phrase": answer.reason.encode("ascii", "replace"),
            },
        )

    def close(self) -> None:
        """Closes the idle connections; one still in use is closed once its request is done."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _take(self, origin: _Origin) -> _Connection | None:
        """An idle connection to `origin` that the server has not closed meanwhile, if any."""
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                if not idle:
                    return None
                connection = idle.pop()
            # Readable while idle: the server closed it (or sent what nobody asked for). poll, not
            # select, which fails on file descriptors past 1023.
            idle_check = select.poll()
            idle_check.register(connection.sock, select.POLLIN)
            if not idle_check.poll(0):
                return connection
            connection.close()

    def _give_back(self, origin: _Origin, connection: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(connection)
                return
        connection.close()

    def _connect(self, origin: _Origin, timeout: float | None, extensions: dict) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            with self._lock:
                if self._tls is None:
                    self._tls = httpx.create_ssl_context()  # verify, with certifi or SSL_CERT_FILE/DIR, as httpx does
                tls = self._tls
        connection = _Connection(host, port, timeout=timeout, tls=tls, trace=extensions.get("trace"))
        try:
            with _as_httpx_errors(httpx.ConnectTimeout, httpx.ConnectError):
                connection.connect()
        except BaseException:
            connection.close()
            raise
        return connection


class _Connection(http.client.HTTPConnection):
    """An HTTP(S) connection that tells the request's tracer about its socket, before and after TLS."""

    sock: socket.socket

    def __init__(
        self, host: str, port: int, *, timeout: float | None, tls: ssl.SSLContext | None, trace: _Trace | None
    ):
        super().__init__(host, port, timeout=timeout)
        self._tls = tls
        self._trace = trace

    def connect(self) -> None:
        super().connect()  # TCP, with Nagle off
        self._report("connection.connect_tcp.complete")
        if self._tls is not None:
            self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)
            self._report("connection.start_tls.complete")

    def _report(self, event: str) -> None:
        if self._trace is not None:
            self._trace(event, {"return_value": _Stream(self.sock)})


class _Stream:
    """What httpcore's trace events carry as "return_value": its socket, through get_extra_info."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def get_extra_info(self, info: str) -> socket.socket | None:
        return self._sock if info == "socket" else None


@contextmanager
def _as_httpx_errors(on_timeout: type[httpx.TransportError], on_error: type[httpx.TransportError]) -> Iterator[None]:
    """The standard library's failures as httpx's, by the step that failed (connect, write or read):
    a certificate that fails verification is a ConnectError, an answer cut short or malformed
    (RemoteDisconnected, IncompleteRead, a bad status line) a RemoteProtocolError."""
    try:
        yield
    except TimeoutError as exc:
        raise on_timeout(str(exc)) from exc
    except http.client.HTTPException as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
    except OSError as exc:
        raise on_error(str(exc)) from exc
