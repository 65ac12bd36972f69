"""Retries inside a region and down its fallback chain (SPEC 3.5).

A request whose upstream connection fails, or is reset before any response
byte, is retried on another upstream of the region, then on the next region
of the fallback chain, up to `retries` more attempts (default 2), when the
request is idempotent or its body was not yet sent. Nothing is retried once a
response byte came back.

The failing upstreams are Python servers (conftest PyUpstream) that count
every connection and request they see, so "how many attempts" is exact: no
health_check is configured here (no probe connections), except where stated.
"""
import socket
import struct
import time

import pytest

from conftest import SLOW, HttpConn, free_port, keepalive_handler, read_request, simple_config

H = b"Host: t\r\n"


# --------------------------------------------------------------------------
# failing upstream behaviours
# --------------------------------------------------------------------------

def reset_after_request(sock, reader, up):
    """Reads the whole request (head and body), then resets (RST)."""
    req = read_request(reader)
    if req is None:
        return
    up.record(req)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def close_after_request(sock, reader, up):
    """Reads the whole request, then closes (FIN) without a byte of answer."""
    req = read_request(reader)
    if req is None:
        return
    up.record(req)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def close_at_once(sock, reader, up):
    """Closes right after accept, reading nothing (the kernel resets when the
    request already arrived)."""
    up.record(("?", "?", [], b""))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def partial_head(sock, reader, up):
    """Starts a response head, then closes."""
    req = read_request(reader)
    if req is None:
        return
    up.record(req)
    sock.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: partial\r\nContent-Le")
    time.sleep(0.05)
    sock.close()


def partial_body(sock, reader, up):
    """Sends a complete head promising 100 bytes, 10 of them, then closes."""
    req = read_request(reader)
    if req is None:
        return
    up.record(req)
    sock.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: partial\r\nContent-Length: 100\r\n\r\n0123456789")
    time.sleep(0.05)
    sock.close()


def refused_address():
    """host:port where nothing listens (connection refused)."""
    return "127.0.0.1:%d" % free_port()


def seen_targets(up):
    with up.lock:
        return [r[1] for r in up.requests]


def settle():
    """Gives a (wrong) late extra attempt the time to show up."""
    time.sleep(0.3 * SLOW)


def attempts(*ups):
    return sum(u.connections for u in ups)


def rr_config(addresses, retries=None, extra_region=""):
    region_extra = ("    retries: %d\n" % retries if retries is not None else "") + extra_region
    return simple_config(addresses, balance="round_robin", region_extra=region_extra)


def one_request(m, method, path, body=b""):
    """A request on a fresh connection; returns the Response."""
    with HttpConn(m.port) as c:
        return c.request(method, path, body=body)


# --------------------------------------------------------------------------
# not retried: the body was already sent, or a response byte came back
# --------------------------------------------------------------------------

def test_post_with_body_sent_is_not_retried(meridian, pyupstream):
    """Both upstreams read the request and reset: the POST body was forwarded,
    so meridian answers 502 after exactly one attempt."""
    b1 = pyupstream.start(reset_after_request)
    b2 = pyupstream.start(reset_after_request)
    m = meridian.start(rr_config([b1.address, b2.address], retries=2))
    body = b"x" * 1000
    r = one_request(m, "POST", "/post-once", body)
    settle()
    assert r.status == 502, r
    assert r.status_line == "HTTP/1.1 502 Bad Gateway", r
    assert r.header("X-Backend") is None
    got = seen_targets(b1) + seen_targets(b2)
    assert got == ["/post-once"], "POST with a forwarded body was repeated: %r" % got
    assert attempts(b1, b2) == 1, (b1.connections, b2.connections)
    bodies = [req[3] for req in b1.requests + b2.requests]
    assert bodies == [body], "the upstream did not get the whole body before failing"
    assert m.alive()


def test_post_is_never_repeated_on_a_healthy_upstream(meridian, pyupstream):
    """[bad, bad, good] in round robin: a POST that hit a failing upstream after
    its body was sent gets 502 and never reaches the healthy one; a POST that
    went to the healthy one first is answered 200."""
    bad1 = pyupstream.start(reset_after_request)
    bad2 = pyupstream.start(close_after_request)
    good = pyupstream.start(keepalive_handler("good"))
    m = meridian.start(rr_config([bad1.address, bad2.address, good.address], retries=2))
    outcomes = []
    for i in range(6):
        path = "/post-%d" % i
        r = one_request(m, "POST", path, b"payload-%d" % i)
        settle() if i == 5 else time.sleep(0.02)
        outcomes.append((path, r.status))
    failed = 0
    for path, status in outcomes:
        n_bad = seen_targets(bad1).count(path) + seen_targets(bad2).count(path)
        n_good = seen_targets(good).count(path)
        if n_good:
            assert (n_bad, n_good, status) == (0, 1, 200), (path, n_bad, n_good, status)
        else:
            failed += 1
            assert (n_bad, status) == (1, 502), \
                "%s: seen %d times by failing upstreams, status %d (want once, 502)" % (path, n_bad, status)
    assert failed >= 2, "round robin never sent a POST to a failing upstream first: %r" % outcomes


@pytest.mark.parametrize("handler", [partial_head, partial_body], ids=["partial_head", "partial_body"])
def test_no_retry_after_response_bytes(meridian, pyupstream, handler):
    """The upstream starts answering and hangs up: no other upstream is tried.
    A partial head never reached the client (a 502 is the honest answer); a
    partial body did (the client sees a truncated 200 and a closed connection,
    never a response that looks complete)."""
    p1 = pyupstream.start(handler)
    p2 = pyupstream.start(handler)
    m = meridian.start(rr_config([p1.address, p2.address], retries=2))
    x = m.exchange(b"GET /partial HTTP/1.1\r\n" + H + b"\r\n", timeout=5,
                   close_wait=1.0 if handler is partial_body else 0.01)
    settle()
    assert attempts(p1, p2) == 1, "retried after response bytes: %d attempts" % attempts(p1, p2)
    assert seen_targets(p1) + seen_targets(p2) == ["/partial"]
    if handler is partial_head:
        assert x.resp is not None and x.resp.status == 502, x
    else:
        assert x.resp is None, "a truncated body was passed off as complete: %r" % x
        assert x.data.startswith(b"HTTP/1.1 200 "), x
        assert b"0123456789" in x.data, x
        assert x.closed, "client connection left open after a truncated body"
    assert m.alive()


# --------------------------------------------------------------------------
# retried: GETs, failed connects
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["reset_after_request", "close_after_request", "close_at_once", "refused"])
def test_get_is_retried_on_the_healthy_upstream(meridian, pyupstream, kind):
    good = pyupstream.start(keepalive_handler("good"))
    if kind == "refused":
        bad, bad_addr = None, refused_address()
    else:
        bad = pyupstream.start(globals()[kind])
        bad_addr = bad.address
    m = meridian.start(rr_config([bad_addr, good.address], retries=1))
    results = []
    for i in range(6):
        r = one_request(m, "GET", "/get-%d" % i)
        results.append((r.status, r.header("X-Backend")))
    assert results == [(200, "good")] * 6, results
    assert len(seen_targets(good)) == 6
    if bad is not None:
        assert bad.connections >= 2, "round robin never tried the failing upstream (%d)" % bad.connections


def test_refused_upstream_with_health_check_is_ejected_and_requests_succeed(meridian, pyupstream):
    """Passive health: a refused connect takes a checked upstream out at once;
    every request succeeds meanwhile (retried), including on keep-alive."""
    good = pyupstream.start(keepalive_handler("good"))
    hc = ("    health_check: {path: /healthz, interval: 1s, timeout: 500ms, rise: 2, fall: 3,"
          " expect_status: 200}\n")
    m = meridian.start(rr_config([refused_address(), good.address], retries=1, extra_region=hc))
    statuses = []
    with m.conn() as c:
        for i in range(30):
            r = c.request("GET", "/ka-%d" % i)
            statuses.append((r.status, r.header("X-Backend")))
    assert statuses == [(200, "good")] * 30, statuses


def test_get_with_all_upstreams_failing_is_502(meridian, pyupstream):
    bads = [pyupstream.start(reset_after_request) for _ in range(2)]
    m = meridian.start(rr_config([b.address for b in bads], retries=5))
    r = one_request(m, "GET", "/all-bad")
    settle()
    assert r.status == 502, r
    assert r.header("X-Backend") is None
    # each upstream once: a failed upstream is not tried twice for one request
    assert [b.connections for b in bads] == [1, 1]


@pytest.mark.parametrize("retries,expected", [(0, 1), (1, 2), (2, 3), (None, 3), (5, 3)],
                         ids=["retries0", "retries1", "retries2", "default", "retries5_three_upstreams"])
def test_retries_are_bounded(meridian, pyupstream, retries, expected):
    """Three failing upstreams: 1 + retries attempts at most (default retries
    2), never more than one per upstream, then 502."""
    bads = [pyupstream.start(close_after_request) for _ in range(3)]
    m = meridian.start(rr_config([b.address for b in bads], retries=retries))
    t0 = time.monotonic()
    r = one_request(m, "GET", "/bounded")
    settle()
    assert r.status == 502, r
    got = attempts(*bads)
    print("\nretries=%s: %d attempts, 502 after %.3f s" % (retries, got, time.monotonic() - t0))
    assert got == expected, "retries=%s: %d attempts (want %d)" % (retries, got, expected)
    assert max(b.connections for b in bads) <= 1, [b.connections for b in bads]


# --------------------------------------------------------------------------
# down the fallback chain
# --------------------------------------------------------------------------

def two_region_config(a_addrs, b_addrs, retries=None):
    """Region A (near the client, fallback B) and region B (far away)."""
    def ups(addrs):
        return "".join('      - {address: "%s"}\n' % a for a in addrs)
    return (
        "workers: 1\n"
        "geo:\n"
        "  networks:\n"
        "    - {cidr: \"127.0.0.0/8\", country: DE, continent: EU, latitude: 50.11, longitude: 8.68}\n"
        "response_headers: {region: true}\n"
        "regions:\n"
        "  - name: A\n"
        "    location: {latitude: 50.1, longitude: 8.7}\n"
        "    fallback: B\n"
        + ("    retries: %d\n" % retries if retries is not None else "")
        + "    upstreams:\n" + ups(a_addrs)
        + "  - name: B\n"
        "    location: {latitude: -33.87, longitude: 151.21}\n"
        "    upstreams:\n" + ups(b_addrs)
    )


@pytest.mark.parametrize("kind", ["reset_after_request", "refused"])
def test_get_retried_down_the_fallback_chain(meridian, pyupstream, kind):
    good = pyupstream.start(keepalive_handler("far"))
    if kind == "refused":
        bad, addr = None, refused_address()
    else:
        bad = pyupstream.start(reset_after_request)
        addr = bad.address
    m = meridian.start(two_region_config([addr], [good.address], retries=1))
    for i in range(3):
        r = one_request(m, "GET", "/fb-%d" % i)
        assert r.status == 200, r
        assert r.header("X-Backend") == "far", r
        assert r.header("X-Meridian-Region") == "B", r
    if bad is not None:
        assert bad.connections == 3


def test_post_not_retried_down_the_fallback_chain(meridian, pyupstream):
    good = pyupstream.start(keepalive_handler("far"))
    bad = pyupstream.start(reset_after_request)
    m = meridian.start(two_region_config([bad.address], [good.address], retries=2))
    r = one_request(m, "POST", "/fb-post", b"body" * 100)
    settle()
    assert r.status == 502, r
    assert seen_targets(bad) == ["/fb-post"]
    assert seen_targets(good) == [], "a POST whose body was sent went on to the fallback region"


def put_request(path, body, chunked):
    if chunked:
        step = max(1, len(body) // 3)
        parts = [body[k:k + step] for k in range(0, len(body), step)]
        data = b"".join(b"%x\r\n%s\r\n" % (len(x), x) for x in parts) + b"0\r\n\r\n"
        return (b"PUT %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" % path.encode()) + data
    return (b"PUT %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(body))) + body


@pytest.mark.parametrize("size,chunked,must_retry", [
    (12, False, True), (60 * 1024, False, True), (3000, True, True), (200 * 1024, False, False),
    (200 * 1024, True, False)], ids=["small", "60KiB", "chunked", "200KiB", "200KiB_chunked"])
def test_idempotent_put_with_body_is_retried(meridian, pyupstream, size, chunked, must_retry):
    """SPEC 3.5: retried "when the request is idempotent or its body was not
    yet sent". PUT is idempotent (RFC 9110 9.2.2): a PUT whose body went to an
    upstream that then reset before answering is retried on the healthy
    upstream, with the same body. A body too big to keep for a replay (the
    implementation keeps 64 KiB, like Envoy's default) may get 502 instead,
    but a retry must never carry a truncated or altered body."""
    bad = pyupstream.start(reset_after_request)
    good = pyupstream.start(keepalive_handler("good"))
    m = meridian.start(rr_config([bad.address, good.address], retries=1))
    outcomes = []
    for i in range(4):
        path = "/put-%d" % i
        body = bytes((i * 7 + k) % 251 for k in range(size))
        x = m.exchange(put_request(path, body, chunked), timeout=10, close_wait=0.01)
        assert x.resp is not None, x
        outcomes.append((path, body, x.resp.status))
    settle()
    assert bad.connections >= 1, "round robin never sent a PUT to the failing upstream"
    good_bodies = {}
    for req in good.requests:
        good_bodies.setdefault(req[1], []).append(req[3])
    for path, body, status in outcomes:
        at_good = good_bodies.get(path, [])
        at_bad = seen_targets(bad).count(path)
        assert all(b == body for b in at_good), "%s: the healthy upstream got an altered body (%s)" % (
            path, [len(b) for b in at_good])
        assert len(at_good) <= 1 and at_bad <= 1, (path, len(at_good), at_bad)
        if status == 200:
            assert len(at_good) == 1, (path, status)
        else:
            assert status == 502 and not at_good, (path, status, len(at_good))
    if must_retry:
        assert [o[2] for o in outcomes] == [200] * 4, \
            "PUT (idempotent) with its body sent was not retried: %r (failing upstream saw %r)" % (
                [(o[0], o[2]) for o in outcomes], seen_targets(bad))


# --------------------------------------------------------------------------
# connect timeouts and stale pooled connections
# --------------------------------------------------------------------------

class Blackhole:
    """A listener whose accept queue is full (listen(0), never accepting, two
    connections parked): further SYNs are dropped, connects time out."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.fillers = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(s)
        time.sleep(0.05)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", self.port))
            self.works = False
        except (socket.timeout, OSError):
            self.works = True
        finally:
            probe.close()

    def close(self):
        for s in self.fillers:
            s.close()
        self.lsock.close()


def test_connect_timeout_is_retried_and_ejects_the_upstream(meridian, pyupstream):
    """timeouts.connect 300ms on an upstream that never completes the
    handshake: the GET goes to the healthy upstream after the connect timeout
    (200, not 504), and the checked upstream is out of rotation after `fall`
    (3) timeouts in a row (SPEC 12: a timeout counts towards fall, only a
    refused connection ejects at once), so later requests do not wait for it."""
    bh = Blackhole()
    try:
        if not bh.works:
            pytest.skip("cannot make a connect time out on this kernel")
        good = pyupstream.start(keepalive_handler("good"))
        hc = ("    health_check: {path: /healthz, interval: 1s, timeout: 300ms, rise: 2, fall: 3,"
              " expect_status: 200}\n")
        cfg = simple_config([bh.address, good.address], balance="round_robin",
                            extra="timeouts: {connect: 300ms, shutdown: 5s}\n",
                            region_extra="    retries: 1\n" + hc)
        m = meridian.start(cfg)
        times = []
        for i in range(12):
            t0 = time.monotonic()
            r = one_request(m, "GET", "/ct-%d" % i)
            times.append(round(time.monotonic() - t0, 3))
            assert (r.status, r.header("X-Backend")) == (200, "good"), (i, r, times)
        slow = [t for t in times if t > 0.2]
        assert len(slow) <= 3, "the timed-out upstream stayed in rotation: request times %r" % times
        assert all(t <= 0.2 for t in times[6:]), "the timed-out upstream stayed in rotation: %r" % times
        assert max(times) < 1.0 * SLOW, times
    finally:
        bh.close()


def idle_closer(sock, reader, up):
    """Answers one request keep-alive, then closes the idle connection 100 ms
    later (a short upstream keep-alive timeout)."""
    req = read_request(reader)
    if req is None:
        return
    up.record(req)
    sock.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: idle-closer\r\nContent-Length: 3\r\n\r\nok\n")
    time.sleep(0.1)
    sock.close()


def test_post_after_upstream_closed_an_idle_pooled_connection(meridian, pyupstream):
    """A pooled connection the upstream closed a while ago must not be used:
    a POST (not retryable once its body is sent) would fail with 502."""
    up = pyupstream.start(idle_closer)
    m = meridian.start(simple_config([up.address]))
    for i in range(3):
        assert one_request(m, "GET", "/g-%d" % i).status == 200
        time.sleep(0.4)
        r = one_request(m, "POST", "/p-%d" % i, b"hello")
        assert r.status == 200, "POST after the upstream closed its idle connection: %r" % r
        time.sleep(0.2)
    assert seen_targets(up) == ["/g-0", "/p-0", "/g-1", "/p-1", "/g-2", "/p-2"]
