"""Errors and bad input (SPEC section 5): every status meridian makes itself.

Each bad input goes on its own raw connection; the answer must be meridian's
own (no X-Backend), have the exact status line and a short body, ambiguous
requests must never reach the upstream, and meridian must keep serving.
"""
import socket
import threading
import time

import pytest

from conftest import SLOW, parse_response_bytes, read_request, simple_config

H = b"Host: t\r\n"

BAD_HEAD = [
    ("cl_and_te", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("te_and_cl", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    ("cl_list", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!"),
    ("cl_two_differing", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("cl_negative", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n"),
    ("cl_not_number", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n"),
    ("cl_plus_sign", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello"),
    ("cl_two_numbers", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5 5\r\n\r\nhello"),
    ("cl_overflow", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n"),
    ("te_gzip", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc"),
    ("te_chunked_not_last", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    ("te_http10", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("obs_fold", b"GET /echo HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n"),
    ("obs_fold_tab", b"GET /echo HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n"),
    ("bare_cr_in_value", b"GET /echo HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n"),
    ("bare_lf_lines", b"GET /echo HTTP/1.1\nHost: t\n\n"),
    ("bare_lf_one_line", b"GET /echo HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n"),
    ("space_before_colon", b"GET /echo HTTP/1.1\r\nHost : t\r\n\r\n"),
    ("nul_in_value", b"GET /echo HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
    ("paren_in_name", b"GET /echo HTTP/1.1\r\n" + H + b"X-(A): b\r\n\r\n"),
    ("empty_name", b"GET /echo HTTP/1.1\r\n" + H + b": b\r\n\r\n"),
    ("no_colon", b"GET /echo HTTP/1.1\r\n" + H + b"X-A b\r\n\r\n"),
    ("leading_ws_first_header", b"GET /echo HTTP/1.1\r\n Host: t\r\n\r\n"),
    ("two_spaces_request_line", b"GET  /echo HTTP/1.1\r\n" + H + b"\r\n"),
    ("trailing_space_request_line", b"GET /echo HTTP/1.1 \r\n" + H + b"\r\n"),
    ("method_only", b"GET\r\n" + H + b"\r\n"),
    ("bad_method_char", b"G(T /echo HTTP/1.1\r\n" + H + b"\r\n"),
    ("target_not_origin_form", b"GET echo HTTP/1.1\r\n" + H + b"\r\n"),
    ("control_char_in_target", b"GET /ec\x01ho HTTP/1.1\r\n" + H + b"\r\n"),
    # a well-formed version other than 1.0/1.1 (HTTP/1.2, HTTP/2.0) is 505: test_h1_edge.py
    ("version_1_10", b"GET /echo HTTP/1.10\r\n" + H + b"\r\n"),
    ("version_lowercase", b"GET /echo http/1.1\r\n" + H + b"\r\n"),
    ("version_garbage", b"GET /echo HTTP/x.y\r\n" + H + b"\r\n"),
    ("version_missing", b"GET /echo\r\n" + H + b"\r\n"),
    ("missing_host", b"GET /echo HTTP/1.1\r\nX-A: b\r\n\r\n"),
    ("two_hosts", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("host_with_space", b"GET /echo HTTP/1.1\r\nHost: ex ample\r\n\r\n"),
    ("binary_garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n"),
]

BAD_BODY = [
    ("chunk_size_invalid", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_overflow", b"POST /echo HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_negative", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
    ("chunk_missing_crlf", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
    ("chunk_size_bare_lf", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
]


@pytest.fixture
def proxy(meridian, backend):
    m = meridian.start(simple_config([backend.address], extra="limits: {max_body_bytes: 1000}\n"))
    m.backend = backend
    return m


def forwarded_since(backend, before):
    """Requests the upstream got since `before` (not counting /stats calls)."""
    return backend.stats()["requests"] - before - 1


def assert_own_error(x, status, reasons):
    """x: an Exchange; checks meridian's own error response."""
    assert x.resp is not None, "no response: %r" % x
    r = x.resp
    assert r.status_line in ["HTTP/1.1 %d %s" % (status, x) for x in reasons], r.status_line
    assert r.header("X-Backend") is None, "the error came from the upstream, not meridian: %r" % r
    assert 0 < len(r.body) <= 512, "error body should be short and non-empty: %r" % r.body
    cl = r.header("Content-Length")
    assert cl is not None and int(cl) == len(r.body), r
    return r


def assert_still_serving(m):
    assert m.alive()
    r = m.request("GET", "/echo?after")
    assert r.status == 200, r
    assert r.json()["uri"] == "/echo?after"


@pytest.mark.parametrize("name,data", BAD_HEAD, ids=[n for n, _ in BAD_HEAD])
def test_bad_request_head_400(proxy, name, data):
    before = proxy.backend.stats()["requests"]
    x = proxy.exchange(data, close_wait=3)
    r = assert_own_error(x, 400, ["Bad Request"])
    assert x.closed, "connection left open after 400"
    assert r.has_token("Connection", "close"), r.headers
    assert forwarded_since(proxy.backend, before) == 0, "bad request %s was forwarded upstream" % name
    assert_still_serving(proxy)


@pytest.mark.parametrize("name,data", BAD_BODY, ids=[n for n, _ in BAD_BODY])
def test_bad_chunked_body_400(proxy, name, data):
    x = proxy.exchange(data, close_wait=3)
    r = assert_own_error(x, 400, ["Bad Request"])
    assert x.closed, "connection left open after 400"
    assert r.has_token("Connection", "close"), r.headers
    assert_still_serving(proxy)


def test_bad_request_after_good_one_on_same_connection(proxy):
    """A pipelined good request is answered, then the bad one gets 400 and close."""
    data = (b"GET /echo?good HTTP/1.1\r\n" + H + b"\r\n"
            + b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
    resp, closed = proxy.raw_closed(data, timeout=5)
    assert closed
    first_end = resp.index(b"}\n") + 2
    r1 = parse_response_bytes(resp[:first_end])
    assert r1.status == 200 and r1.json()["uri"] == "/echo?good"
    r2 = parse_response_bytes(resp[first_end:])
    assert r2.status_line == "HTTP/1.1 400 Bad Request"


def test_smuggling_attempt_not_forwarded(proxy):
    """CL.TE: a second request hidden in the body must never reach the upstream."""
    hidden = b"GET /echo?smuggled HTTP/1.1\r\n" + H + b"\r\n"
    body = b"0\r\n\r\n" + hidden
    data = (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body)
            + body)
    before = proxy.backend.stats()["requests"]
    resp, closed = proxy.raw_closed(data, timeout=3)
    assert parse_response_bytes(resp).status == 400
    assert closed
    assert b"smuggled" not in resp
    assert forwarded_since(proxy.backend, before) == 0


def test_431_too_many_headers(proxy):
    data = b"GET /echo HTTP/1.1\r\n" + H + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n"
    before = proxy.backend.stats()["requests"]
    x = proxy.exchange(data)
    assert_own_error(x, 431, ["Request Header Fields Too Large"])
    assert forwarded_since(proxy.backend, before) == 0
    assert_still_serving(proxy)


def test_header_count_limit_is_100_fields(proxy):
    ok = b"GET /echo HTTP/1.1\r\n" + H + b"".join(b"X-H%d: v\r\n" % i for i in range(99)) + b"\r\n"
    x = proxy.exchange(ok)
    assert x.resp is not None and x.resp.status == 200, x
    too_many = b"GET /echo HTTP/1.1\r\n" + H + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n"
    assert_own_error(proxy.exchange(too_many), 431, ["Request Header Fields Too Large"])


def test_431_huge_header(proxy):
    data = b"GET /echo HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n"
    before = proxy.backend.stats()["requests"]
    x = proxy.exchange(data)
    assert_own_error(x, 431, ["Request Header Fields Too Large"])
    assert forwarded_since(proxy.backend, before) == 0
    assert_still_serving(proxy)


def test_431_respects_configured_max_header_bytes(meridian, backend):
    m = meridian.start(simple_config([backend.address], extra="limits: {max_header_bytes: 2048}\n"))
    ok = m.request("GET", "/echo", headers=[("X-Fill", "a" * 1500)])
    assert ok.status == 200
    x = m.exchange(b"GET /echo HTTP/1.1\r\n" + H + b"X-Fill: " + b"a" * 3000 + b"\r\n\r\n")
    assert_own_error(x, 431, ["Request Header Fields Too Large"])
    assert_still_serving(m)


def test_huge_header_never_terminated_is_rejected(proxy):
    """Header bytes that never end are cut off at the limit (431), not
    buffered until the client stops."""
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5 * SLOW)
    got = b""
    sent = 0
    try:
        s.sendall(b"GET /echo HTTP/1.1\r\n" + H + b"X-Big: ")
        s.settimeout(0.05)
        deadline = time.monotonic() + 5 * SLOW
        while time.monotonic() < deadline and b"\r\n\r\n" not in got:
            try:
                s.sendall(b"a" * 16384)
                sent += 16384
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                pass
            try:
                d = s.recv(4096)
                if not d:
                    break
                got += d
            except socket.timeout:
                pass
            except ConnectionResetError:
                break
    finally:
        s.close()
    assert got.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), got[:200]
    assert sent <= 2 * 1024 * 1024, "431 only after %d bytes of one header line" % sent
    assert_still_serving(proxy)


def test_413_content_length(proxy):
    before = proxy.backend.stats()["requests"]
    x = proxy.exchange(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\n" + b"a" * 5000)
    assert_own_error(x, 413, ["Content Too Large", "Payload Too Large"])
    assert forwarded_since(proxy.backend, before) == 0
    assert_still_serving(proxy)


def test_413_with_expect_sends_no_100_continue(proxy):
    x = proxy.exchange(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    assert not x.data.startswith(b"HTTP/1.1 100"), x
    assert_own_error(x, 413, ["Content Too Large", "Payload Too Large"])


def test_413_chunked(proxy):
    chunk = b"a" * 600
    body = b"".join(b"258\r\n" + chunk + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
    x = proxy.exchange(b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert_own_error(x, 413, ["Content Too Large", "Payload Too Large"])
    assert_still_serving(proxy)


def test_body_at_the_limit_is_accepted(proxy):
    r = proxy.request("POST", "/echo", body=b"a" * 1000)
    assert r.status == 200 and r.json()["body_bytes"] == 1000


def test_408_incomplete_head(meridian, backend):
    m = meridian.start(simple_config([backend.address], extra="timeouts: {request_header: 500ms, shutdown: 5s}\n"))
    x = m.exchange(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Half: ", close_wait=3)
    assert_own_error(x, 408, ["Request Timeout"])
    assert x.closed
    assert 0.4 <= x.elapsed <= 3 * SLOW, x.elapsed
    assert_still_serving(m)


def test_408_slowloris_trickle(meridian, backend):
    """The header timeout bounds the whole head, not the gap between bytes."""
    m = meridian.start(simple_config([backend.address], extra="timeouts: {request_header: 500ms, shutdown: 5s}\n"))
    s = socket.create_connection(("127.0.0.1", m.port), timeout=5 * SLOW)
    got = b""
    t0 = time.monotonic()
    try:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n")
        s.settimeout(0.1)
        while time.monotonic() - t0 < 4 * SLOW:
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                break
    finally:
        s.close()
    elapsed = time.monotonic() - t0
    assert elapsed < 3 * SLOW, "a trickling client held the head open for %.1fs" % elapsed
    assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), got[:200]
    assert_still_serving(m)


def test_502_upstream_refuses(meridian, backend):
    # a port nothing listens on: bind then close
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    m = meridian.start(simple_config([dead]))
    x = m.exchange(b"GET /echo HTTP/1.1\r\n" + H + b"\r\n")
    assert_own_error(x, 502, ["Bad Gateway"])
    # the upstream is out of rotation now: 502 again, or 503 with Retry-After
    r = m.request("GET", "/echo")
    assert r.status in (502, 503), r
    if r.status == 503:
        assert r.header("Retry-After") is not None and r.header("Retry-After").isdigit()
    assert m.alive()


def _closing_handler(sock, reader, up):
    req = read_request(reader)
    up.record(req)
    sock.close()


def _reset_handler(sock, reader, up):
    req = read_request(reader)
    up.record(req)
    import struct
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _garbage_handler(sock, reader, up):
    req = read_request(reader)
    up.record(req)
    sock.sendall(b"this is not http\r\n\r\n")
    sock.close()


def _bad_length_handler(sock, reader, up):
    req = read_request(reader)
    up.record(req)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello")
    sock.close()


def _short_body_handler(sock, reader, up):
    req = read_request(reader)
    up.record(req)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly a few bytes")
    sock.close()


@pytest.mark.parametrize("handler", [_closing_handler, _reset_handler, _garbage_handler, _bad_length_handler],
                         ids=["close", "reset", "garbage", "conflicting_cl"])
def test_502_upstream_fails_before_response(meridian, pyupstream, handler):
    up = pyupstream.start(handler)
    m = meridian.start(simple_config([up.address]))
    x = m.exchange(b"GET /echo HTTP/1.1\r\n" + H + b"\r\n")
    assert_own_error(x, 502, ["Bad Gateway"])
    assert x.elapsed < 3 * SLOW
    assert len(up.requests) >= 1, "the request never reached the upstream"
    assert m.alive()
    r = m.request("GET", "/echo")
    assert r.status in (502, 503), r


def test_upstream_short_body_is_not_passed_off_as_complete(meridian, pyupstream):
    """The upstream promises 1000 bytes and hangs up after 16. Every time, the
    client must get a status line (the truncated 200, or a 502), never an
    empty reply, and never a response that looks complete."""
    up = pyupstream.start(_short_body_handler)
    m = meridian.start(simple_config([up.address]))
    outcomes = []
    for _ in range(10):
        resp, closed = m.raw_closed(b"GET /echo HTTP/1.1\r\n" + H + b"\r\n", timeout=5)
        assert closed, "client connection left open after a truncated upstream body"
        head, _, body = resp.partition(b"\r\n\r\n")
        outcomes.append(head.split(b"\r\n")[0])
        if head.startswith(b"HTTP/1.1 200"):
            if b"chunked" in head.lower():
                assert not body.endswith(b"0\r\n\r\n"), "truncated body re-framed as complete chunked"
            else:
                assert b"content-length: 1000" in head.lower(), head
                assert len(body) < 1000
    assert all(o.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 502 ")) for o in outcomes), \
        "responses seen (b'' = empty reply): %r" % outcomes
    assert m.alive()


def _cl_te_response_handler(sock, reader, up):
    while True:
        req = read_request(reader)
        if req is None:
            return
        up.record(req)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n")


def test_upstream_response_with_cl_and_te_is_not_relayed_ambiguously(meridian, pyupstream):
    """Response smuggling guard: an upstream answer with both framings must
    reach the client either as 502 or with exactly one framing (chunked wins,
    RFC 9112 6.3), and the next request on the connection must be unaffected."""
    up = pyupstream.start(_cl_te_response_handler)
    m = meridian.start(simple_config([up.address]))
    with m.conn() as c:
        r = c.request("GET", "/first")
        assert not (r.header("Content-Length") and r.header("Transfer-Encoding")), r.headers
        if r.status == 200:
            assert r.body == b"hello", r
        else:
            assert r.status_line == "HTTP/1.1 502 Bad Gateway", r
            return
        c.send(b"GET /second HTTP/1.1\r\n" + H + b"\r\n")
        r2 = c.response()
        if r2.status == 200:
            assert r2.body == b"hello", r2
        else:
            assert r2.status_line == "HTTP/1.1 502 Bad Gateway", r2


def test_504_upstream_too_slow(meridian, backend):
    m = meridian.start(simple_config([backend.address],
                                     extra="timeouts: {upstream_response: 300ms, shutdown: 5s}\n"))
    x = m.exchange(b"GET /echo?delay=2000 HTTP/1.1\r\n" + H + b"\r\n")
    assert_own_error(x, 504, ["Gateway Timeout"])
    assert 0.25 <= x.elapsed <= 1.9 * SLOW, x.elapsed
    assert m.alive()
    r = m.request("GET", "/echo?quick")
    assert r.status in (200, 503), r


def test_504_connect_timeout(meridian):
    # a listening socket whose backlog is full never completes new handshakes
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.1)
        m = meridian.start(simple_config(["127.0.0.1:%d" % port],
                                         extra="timeouts: {connect: 300ms, shutdown: 5s}\n"))
        x = m.exchange(b"GET /echo HTTP/1.1\r\n" + H + b"\r\n", timeout=6)
        assert x.resp is not None, x
        assert x.resp.status_line in ("HTTP/1.1 504 Gateway Timeout", "HTTP/1.1 502 Bad Gateway"), x
        assert x.elapsed <= 3 * SLOW, x.elapsed
    finally:
        for f in fillers:
            f.close()
        ls.close()


def test_405_connect(proxy):
    before = proxy.backend.stats()["requests"]
    x = proxy.exchange(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert_own_error(x, 405, ["Method Not Allowed"])
    assert forwarded_since(proxy.backend, before) == 0
    assert_still_serving(proxy)


def test_many_bad_requests_concurrently(proxy):
    """Bad inputs from several threads at once; meridian stays up."""
    errors = []

    def worker(items):
        for name, data in items:
            try:
                x = proxy.exchange(data, close_wait=0.2)
                if x.resp is None or x.resp.status != 400:
                    errors.append((name, x.data[:80]))
            except OSError as e:
                errors.append((name, repr(e)))

    framing = [(n, d) for n, d in BAD_HEAD if n.startswith(("cl_", "te_", "obs_", "bare_"))]
    assert len(framing) >= 12
    threads = [threading.Thread(target=worker, args=(framing,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert proxy.alive()
    assert_still_serving(proxy)
    assert not errors, errors[:10]
