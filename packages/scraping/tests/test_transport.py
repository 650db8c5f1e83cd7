"""The Fetcher's transport (http.client under httpx.Client) against a loopback server that answers
with scripted raw bytes, so that keep-alive, closed connections and broken answers are exact."""

from __future__ import annotations

import gzip
import os
import resource
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from scraping._transport import StdlibTransport


@dataclass
class Answer:
    raw: bytes
    close_after: bool = False  # the server closes the connection once this answer is sent
    delay: float = 0.0
    together: threading.Barrier | None = None  # sent once this many requests are in, on their connections


class RawServer:
    """Each request gets the next scripted answer (200 "ok" once the script is used up)."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.requests: list[bytes] = []  # each request's head, as received
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.closed_by_server = threading.Event()
        self.client_gone = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        self.client_gone.set()
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.requests.append(head)
                answer = self.script.pop(0) if self.script else Answer(ok(b"ok"))
                if answer.delay:
                    threading.Event().wait(answer.delay)
                if answer.together is not None:
                    answer.together.wait(5)
                try:
                    conn.sendall(answer.raw)
                except OSError:
                    return
                if answer.close_after:
                    conn.shutdown(socket.SHUT_RDWR)
                    self.closed_by_server.set()
                    return

    def close(self) -> None:
        self._listener.close()


def ok(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers]
    return "\r\n".join([*head, "", ""]).encode() + body


@pytest.fixture
def raw() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(transport=StdlibTransport(), timeout=5) as client:
        yield client


def test_requests_to_one_server_share_one_kept_alive_connection(raw, client):
    bodies = [client.get(f"{raw.url}/n/{i}").text for i in range(5)]

    assert bodies == ["ok"] * 5
    assert raw.connections == 1
    assert [head.split(b"\r\n")[0] for head in raw.requests] == [f"GET /n/{i} HTTP/1.1".encode() for i in range(5)]


def test_a_connection_the_server_closed_while_idle_is_not_reused(raw, client):
    raw.script.append(Answer(ok(b"first"), close_after=True))  # no "Connection: close": it just goes

    first = client.get(f"{raw.url}/a").text
    assert raw.closed_by_server.wait(5)
    second = client.get(f"{raw.url}/b").text

    assert (first, second) == ("first", "ok")
    assert raw.connections == 2


def test_an_answer_with_connection_close_is_read_whole_and_the_next_request_connects_afresh(raw, client):
    raw.script.append(Answer(ok(b"last", "Connection: close"), close_after=True))

    assert client.get(f"{raw.url}/a").text == "last"
    assert client.get(f"{raw.url}/b").text == "ok"
    assert raw.connections == 2


def test_chunked_and_gzip_answers_are_read_whole_and_decoded(raw, client):
    packed = gzip.compress(b"x" * 10_000)
    raw.script += [
        Answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        Answer(ok(packed, "Content-Encoding: gzip")),
    ]

    chunked = client.get(f"{raw.url}/chunked")
    zipped = client.get(f"{raw.url}/gzip")

    assert chunked.text == "hello world"
    assert zipped.content == b"x" * 10_000
    assert raw.connections == 1  # both left the connection ready for the next request


def test_the_request_goes_out_with_httpx_headers_as_they_are(raw, client):
    client.get(f"{raw.url}/h", headers=[("X-Twice", "1"), ("X-Twice", "2")])

    lines = raw.requests[0].decode().split("\r\n")[1:]
    names = [line.split(":")[0].lower() for line in lines]
    assert f"Host: {raw.url.removeprefix('http://')}" in lines
    assert [line for line in lines if line.startswith("X-Twice")] == ["X-Twice: 1", "X-Twice: 2"]
    assert names.count("accept-encoding") == 1  # httpx's, not http.client's "identity" beside it
    assert len(names) == len(set(names)) + 1  # no other header twice


def test_status_reason_headers_and_version_come_through(raw, client):
    raw.script.append(Answer(b"HTTP/1.0 404 Gone Away\r\nContent-Length: 2\r\nX-A: 1\r\nX-A: 2\r\n\r\nno"))

    response = client.get(f"{raw.url}/missing")

    assert (response.status_code, response.reason_phrase, response.http_version) == (404, "Gone Away", "HTTP/1.0")
    assert response.headers.get_list("X-A") == ["1", "2"]
    assert response.text == "no"


def test_a_scheme_other_than_http_or_https_is_refused_as_httpx_refuses_it(client):
    with pytest.raises(httpx.UnsupportedProtocol, match="'ftp://'"):
        client.get("ftp://127.0.0.1/file")


def test_a_refused_connection_is_a_connect_error(client):
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/")


def test_no_answer_within_the_read_timeout_is_a_read_timeout(raw):
    raw.script.append(Answer(ok(b"late"), delay=2))
    with httpx.Client(transport=StdlibTransport(), timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.get(f"{raw.url}/slow")


@pytest.mark.parametrize(
    "broken",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",  # cut short
        b"SMTP ready\r\n\r\n",  # not HTTP
        b"",  # closed with no answer at all
    ],
    ids=["cut-short", "not-http", "nothing"],
)
def test_a_broken_answer_is_a_remote_protocol_error_and_the_next_request_connects_afresh(raw, client, broken):
    raw.script.append(Answer(broken, close_after=True))

    with pytest.raises(httpx.RemoteProtocolError):
        client.get(f"{raw.url}/broken")
    assert client.get(f"{raw.url}/next").text == "ok"
    assert raw.connections == 2


def test_closing_the_transport_closes_its_idle_connections(raw):
    transport = StdlibTransport()
    with httpx.Client(transport=transport) as client:
        client.get(f"{raw.url}/a")
        assert not raw.client_gone.is_set()
    assert raw.client_gone.wait(5)  # the server saw the connection end


def test_requests_from_several_threads_each_get_a_connection_of_their_own(raw, client):
    first_four = threading.Barrier(4)  # each first request waits for the others: four in flight at once
    raw.script += [Answer(ok(b"ok"), together=first_four) for _ in range(4)]
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            for _ in range(4):
                assert client.get(f"{raw.url}/t").text == "ok"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(raw.requests) == 16
    assert raw.connections == 4  # one each for the four in flight at once; every later request reused one


def test_a_connection_on_a_file_descriptor_past_1023_is_reused(raw, client):
    """select() cannot watch such a descriptor; a process with many files open gets them."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"RLIMIT_NOFILE is {soft}")
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert [client.get(f"{raw.url}/{i}").text for i in range(3)] == ["ok"] * 3
    finally:
        for descriptor in filler:
            os.close(descriptor)
    assert raw.connections == 1
