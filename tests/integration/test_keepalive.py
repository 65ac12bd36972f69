"""Keep-alive on both sides, upstream connection reuse, pipelining, Expect: 100-continue."""
import socket
import time

import pytest

from conftest import SLOW, Reader, fnv1a64, read_response, simple_config


@pytest.fixture
def proxy(meridian, backend):
    m = meridian.start(simple_config([backend.address]))
    m.backend = backend
    return m


def upstream_conns(backend):
    # the /stats request itself is one more direct connection: subtract it
    return backend.stats()["connections"] - 1


def test_100_requests_one_client_connection_reuse_upstream(proxy):
    before = upstream_conns(proxy.backend)
    with proxy.conn() as c:
        for i in range(100):
            r = c.request("GET", "/echo?i=%d" % i)
            assert r.status == 200
            assert r.json()["uri"] == "/echo?i=%d" % i
    used = upstream_conns(proxy.backend) - before
    assert 1 <= used <= 3, "100 keep-alive requests used %d upstream connections" % used


def test_100_fresh_client_connections_reuse_upstream(proxy):
    before = upstream_conns(proxy.backend)
    for i in range(100):
        with proxy.conn() as c:
            r = c.request("GET", "/echo?fresh=%d" % i)
            assert r.status == 200
    used = upstream_conns(proxy.backend) - before
    assert 1 <= used <= 10, "100 client connections used %d upstream connections (no pooling?)" % used


def test_upstream_connection_close_is_honoured(proxy):
    """close=1 makes the upstream answer Connection: close and hang up; every
    request still succeeds and needs a new upstream connection."""
    before = upstream_conns(proxy.backend)
    with proxy.conn() as c:
        for i in range(5):
            r = c.request("GET", "/echo?close=1&i=%d" % i)
            assert r.status == 200, r
            assert r.json()["uri"] == "/echo?close=1&i=%d" % i
    r2 = proxy.request("GET", "/echo")
    assert r2.status == 200
    used = upstream_conns(proxy.backend) - before
    assert used >= 6, "only %d upstream connections for 6 requests after Connection: close" % used


def test_pipelined_requests_answered_in_order(proxy):
    body = b"pipelined-body-" * 100
    reqs = [
        b"GET /echo?n=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /echo?n=2 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /echo?n=3 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
        b"HEAD /?size=10&n=4 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /?size=3000&chunked=1&n=5 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /echo?n=6 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET /?status=404&n=7 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"DELETE /echo?n=8 HTTP/1.1\r\nHost: t\r\n\r\n",
    ]
    with proxy.conn() as c:
        c.send(b"".join(reqs))
        r = [c.response("HEAD" if i == 3 else "GET") for i in range(len(reqs))]
        assert [x.status for x in r] == [200, 200, 200, 200, 200, 200, 404, 200], r
        assert r[0].json()["uri"] == "/echo?n=1"
        assert r[1].json()["uri"] == "/echo?n=2"
        j = r[2].json()
        assert j["uri"] == "/echo?n=3" and j["method"] == "POST"
        assert j["body_bytes"] == len(body) and j["body_fnv"] == "%016x" % fnv1a64(body)
        assert r[3].header("Content-Length") == "10" and r[3].body == b""
        assert r[4].body == b"x" * 3000
        assert r[5].json()["uri"] == "/echo?n=6" and r[5].json()["body_bytes"] == 3
        assert r[7].json()["method"] == "DELETE"
        # still usable afterwards
        assert c.request("GET", "/echo?after").json()["uri"] == "/echo?after"


def test_pipelined_with_slow_first_response_keeps_order(proxy):
    reqs = (b"GET /echo?slow&delay=300 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /echo?fast HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /echo?last HTTP/1.1\r\nHost: t\r\n\r\n")
    with proxy.conn() as c:
        c.send(reqs)
        uris = [c.response().json()["uri"] for _ in range(3)]
    assert uris == ["/echo?slow&delay=300", "/echo?fast", "/echo?last"]


def test_pipelined_bytes_split_across_writes(proxy):
    data = b"".join(b"GET /echo?k=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(5))
    with proxy.conn() as c:
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
            time.sleep(0.002)
        uris = [c.response().json()["uri"] for _ in range(5)]
    assert uris == ["/echo?k=%d" % i for i in range(5)]


def test_expect_100_continue(proxy):
    with proxy.conn() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        c.sock.settimeout(5 * SLOW)
        line = c.reader.read_line()
        assert line == b"HTTP/1.1 100 Continue\r\n", line
        assert c.reader.read_line() == b"\r\n"
        c.send(b"hello")
        r = c.response()
        assert r.status == 200
        assert r.json()["body_bytes"] == 5
        assert r.json()["body_fnv"] == "%016x" % fnv1a64(b"hello")
        # a second 100-continue exchange on the same connection
        c.send(b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        assert c.reader.read_line() == b"HTTP/1.1 100 Continue\r\n"
        assert c.reader.read_line() == b"\r\n"
        c.send(b"2\r\nok\r\n0\r\n\r\n")
        r = c.response()
        assert r.status == 200 and r.json()["body_bytes"] == 2


def test_expect_100_continue_http10_gets_no_interim(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5 * SLOW)
    try:
        s.sendall(b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi")
        r = read_response(Reader(s))
        assert r.interim == [], "HTTP/1.0 client got an interim response"
        assert r.status == 200 and r.json()["body_bytes"] == 2
    finally:
        s.close()


def test_idle_client_connection_closed_after_idle_timeout(meridian, backend):
    m = meridian.start(simple_config([backend.address], extra="timeouts: {idle: 500ms, shutdown: 5s}\n"))
    with m.conn() as c:
        assert c.request("GET", "/echo").status == 200
        t0 = time.monotonic()
        assert c.closed(timeout=5), "idle connection not closed after timeouts.idle"
        assert time.monotonic() - t0 >= 0.3


def test_pipelined_request_after_connection_close_is_not_served(proxy):
    before = proxy.backend.stats()["requests"]
    data = (b"GET /echo?first HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            b"GET /echo?second HTTP/1.1\r\nHost: t\r\n\r\n")
    with proxy.conn() as c:
        c.send(data)
        r = c.response()
        assert r.json()["uri"] == "/echo?first"
        assert c.closed(timeout=3), "connection open after Connection: close"
    # /stats itself is one request; only "first" may have reached the upstream
    assert proxy.backend.stats()["requests"] - before - 1 == 1
