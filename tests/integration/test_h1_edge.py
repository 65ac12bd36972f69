"""HTTP/1 edges of SPEC 12: malformed request lines (400) and unsupported
versions (505) on every kind of HTTP/1 listener, a client's half-close
(shutdown(SHUT_WR), or a TLS close_notify) answered before the connection
closes, and a slowloris attack on headers under load.

One meridian serves the whole module on three listeners: [http1, h2c]
(protocol sniffing), http1 only, and TLS http1.
"""
import errno
import os
import resource
import selectors
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import (SLOW, Backend, Reader, _MeridianFactory, connect, free_port, parse_response_bytes,
                      read_response, simple_config)

H = b"Host: t\r\n"


def _cert(d):
    key, crt = os.path.join(d, "edge.key"), os.path.join(d, "edge.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=edge.test",
                    "-addext", "subjectAltName=DNS:edge.test"], check=True, capture_output=True)
    return crt, key


class Target:
    def __init__(self, name, port, tls):
        self.name, self.port, self.tls = name, port, tls

    def __repr__(self):
        return self.name


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("h1edge")
    backend = Backend("edge-backend")
    factory = _MeridianFactory(d)
    try:
        crt, key = _cert(str(d))
        h1_port, tls_port = free_port(), free_port()
        m = factory.start(
            "listeners:\n"
            '  - {address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}\n'
            '  - {address: "127.0.0.1:%d"}\n'
            '  - address: "127.0.0.1:%d"\n'
            "    tls:\n"
            "      certificates:\n"
            "        - {cert: %s, key: %s}\n"
            "    protocols: [http1]\n" % (h1_port, tls_port, crt, key)
            + simple_config([backend.address]))
        m.backend = backend
        m.targets = {"h2c": Target("h2c", m.port, False), "http1": Target("http1", h1_port, False),
                     "tls": Target("tls", tls_port, True)}
        yield m
    finally:
        try:
            factory.teardown()
        finally:
            backend.stop()


@pytest.fixture(params=["h2c", "http1", "tls"])
def target(request, env):
    return env.targets[request.param]


@pytest.fixture(params=["h2c", "http1"])
def plain(request, env):
    return env.targets[request.param]


def _tls_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def open_conn(t, timeout=5.0):
    s = connect(t.port, timeout=timeout)
    if t.tls:
        s = _tls_ctx().wrap_socket(s, server_hostname="edge.test")
    return s


def recv_all(s, timeout=5.0):
    """Every byte until the peer closes; (data, closed)."""
    out = bytearray()
    deadline = time.monotonic() + timeout * SLOW
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(out), False
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return bytes(out), False
        except (ConnectionResetError, ssl.SSLError):
            return bytes(out), True
        if not chunk:
            return bytes(out), True
        out += chunk


def send_and_read(t, data, timeout=5.0):
    s = open_conn(t)
    try:
        s.sendall(data)
        return recv_all(s, timeout)
    finally:
        s.close()


def half_close(t, data, timeout=10.0):
    """Sends data, then ends the client's side: a FIN on plain TCP, a
    close_notify (and no FIN) over TLS; returns (data, closed)."""
    if not t.tls:
        s = connect(t.port)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            return recv_all(s, timeout)
        finally:
            s.close()
    # TLS through memory BIOs: ssl.SSLSocket.unwrap() would wait for the
    # server's close_notify (and drop the data before it); SSLObject.unwrap()
    # writes ours and gives control back, and read() goes on until the
    # server's close_notify (OpenSSL allows reading after a first shutdown)
    s = connect(t.port)
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = _tls_ctx().wrap_bio(inc, outg, server_hostname="edge.test")
    deadline = time.monotonic() + timeout * SLOW

    def pump_out():
        b = outg.read()
        if b:
            s.sendall(b)

    def pump_in():
        s.settimeout(max(0.01, deadline - time.monotonic()))
        b = s.recv(65536)
        if not b:
            inc.write_eof()
            return False
        inc.write(b)
        return True

    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump_out()
                if not pump_in():
                    return b"", True
        pump_out()
        obj.write(data)
        pump_out()
        try:
            obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        pump_out()
        out = bytearray()
        while time.monotonic() < deadline:
            try:
                chunk = obj.read(65536)
                if not chunk:
                    return bytes(out), True
                out += chunk
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return bytes(out), True
            try:
                if not pump_in():
                    continue
            except socket.timeout:
                break
            except ConnectionResetError:
                return bytes(out), True
        return bytes(out), False
    finally:
        s.close()


def parse_all(data, method="GET"):
    """Every response in data, in order."""
    class _Buf:
        def __init__(self, b):
            self.b = b

        def recv(self, n):
            out, self.b = self.b[:n], self.b[n:]
            return out

    r = Reader(_Buf(data))
    out = []
    while r.buf or not r.eof:
        if not r.buf and not r._fill():
            break
        out.append(read_response(r, method))
    return out


def forwarded(env, before):
    return env.backend.stats()["requests"] - before - 1


# --------------------------------------------------------------------------
# malformed request lines: 400; unsupported HTTP versions: 505
# --------------------------------------------------------------------------

LINES = [
    ("target_with_space", b"GET /a b HTTP/1.1", 400),
    ("version_lowercase", b"GET / http/1.1", 400),
    ("version_mixed_case", b"GET / Http/1.1", 400),
    ("version_garbage", b"GET / HTTP/x.y", 400),
    ("version_two_digits", b"GET / HTTP/1.10", 400),
    ("version_major_only", b"GET / HTTP/2", 400),
    ("version_major_two_digits", b"GET / HTTP/10.0", 400),
    ("version_suffix", b"GET / HTTP/1.1x", 400),
    ("version_missing", b"GET /", 400),
    ("version_empty", b"GET / ", 400),
    ("trailing_space", b"GET / HTTP/1.1 ", 400),
    ("http2_version_then_junk", b"GET / HTTP/2.0 x", 400),
    ("http2_version_get", b"GET / HTTP/2.0", 505),
    ("version_9_9", b"GET / HTTP/9.9", 505),
    ("version_1_2", b"GET / HTTP/1.2", 505),
    ("version_0_9", b"GET / HTTP/0.9", 505),
    ("version_3_0", b"GET / HTTP/3.0", 505),
    ("post_version_2_0", b"POST /echo HTTP/2.0", 505),
]
REASON = {400: "Bad Request", 505: "HTTP Version Not Supported"}


@pytest.mark.parametrize("name,line,status", LINES, ids=[n for n, _, _ in LINES])
def test_malformed_request_line(env, target, name, line, status):
    before = env.backend.stats()["requests"]
    data, closed = send_and_read(target, line + b"\r\n" + H + b"\r\n")
    assert data, "%s: no answer on %s" % (name, target)
    r = parse_response_bytes(data)
    assert r.status_line == "HTTP/1.1 %d %s" % (status, REASON[status]), (target, r.status_line)
    assert r.header("Content-Type") == "text/plain", r.headers
    assert 0 < len(r.body) <= 512 and int(r.header("Content-Length")) == len(r.body), r.body
    assert r.has_token("Connection", "close"), r.headers
    assert closed, "connection left open after %d" % status
    assert forwarded(env, before) == 0


def test_h2_preface_line_on_http1_listeners_is_400(env):
    """PRI * HTTP/2.0 is the HTTP/2 preface, not an HTTP/1 request in an
    unsupported version: 400 where HTTP/2 prior knowledge is not served."""
    for t in (env.targets["http1"], env.targets["tls"]):
        data, closed = send_and_read(t, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (t, data[:100])
        assert closed


@pytest.mark.parametrize("data,shut,empty", [
    (b"INVALID CONNECTION PREFACE\r\n\r\n", False, True),     # h2spec http2/3.5/2
    (b"XYZZY FOO BAR\r\n\r\n", False, True),
    # the preface's first line goes to HTTP/2, which may send its SETTINGS
    # before the connection error (test_h2_conformance test_bad_preface)
    (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", False, False),
    (b"PRI * HTTP/2.0\r\n\r\n", True, False),                # a cut preface, then the half-close
    (b"PRI * HTTP/2", True, True),
], ids=["h2spec_3_5_2", "no_http_at_all", "corrupt_preface", "cut_preface", "cut_preface_line"])
def test_bad_preface_on_h2c_gets_no_http1_answer(env, data, shut, empty):
    t = env.targets["h2c"]
    s = connect(t.port)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out, closed = recv_all(s, 5)
    finally:
        s.close()
    assert closed
    assert not out.startswith(b"HTTP/"), out[:100]
    if empty:
        assert out == b"", out[:100]


# --------------------------------------------------------------------------
# half-close: the requests received are answered, then the connection closes
# --------------------------------------------------------------------------

def _req(path, extra=b""):
    return b"GET " + path + b" HTTP/1.1\r\n" + H + extra + b"\r\n"


# the upstream answers after DELAY ms in most cases: the client's FIN (or
# close_notify) surely arrives before the response, whatever the load
DELAY = b"delay=150"


def test_half_close_single_request(target):
    data, closed = half_close(target, _req(b"/echo?single&" + DELAY))
    rs = parse_all(data)
    assert len(rs) == 1, data[:300]
    assert rs[0].status == 200 and rs[0].json()["uri"] == "/echo?single&delay=150"
    assert closed


def test_half_close_after_100_pipelined(target):
    n = 100
    data, closed = half_close(target, b"".join(_req(b"/echo?i=%d" % i) for i in range(n)), timeout=20)
    rs = parse_all(data)
    assert len(rs) == n, "%d responses of %d" % (len(rs), n)
    assert [r.json()["uri"] for r in rs] == ["/echo?i=%d" % i for i in range(n)]
    assert all(r.status == 200 for r in rs)
    assert closed


def test_half_close_while_upstream_is_slow(target):
    """The FIN comes long before the response: it is still answered."""
    t0 = time.monotonic()
    data, closed = half_close(target, _req(b"/echo?delay=400"))
    rs = parse_all(data)
    assert len(rs) == 1 and rs[0].status == 200, data[:300]
    assert time.monotonic() - t0 >= 0.35
    assert closed


def test_half_close_post_with_body(target):
    body = b"x" * 5000
    data, closed = half_close(target, b"POST /echo?" + DELAY + b" HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body)
                              + body)
    rs = parse_all(data)
    assert len(rs) == 1 and rs[0].status == 200, data[:300]
    assert rs[0].json()["body_bytes"] == len(body)
    assert closed


def test_half_close_chunked_post(target):
    data, closed = half_close(target, b"POST /echo?" + DELAY + b" HTTP/1.1\r\n" + H
                              + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    rs = parse_all(data)
    assert len(rs) == 1 and rs[0].status == 200, data[:300]
    assert rs[0].json()["body_bytes"] == 11
    assert closed


def test_half_close_http10(target):
    data, closed = half_close(target, b"GET /echo?ten&" + DELAY + b" HTTP/1.0\r\n\r\n")
    rs = parse_all(data)
    assert len(rs) == 1 and rs[0].status == 200 and rs[0].json()["uri"] == "/echo?ten&delay=150"
    assert closed


def test_half_close_mid_head_is_400(target):
    """A head cut by the half-close can never complete: 400 at once (as
    HAProxy does), not a 408 after timeouts.request_header."""
    t0 = time.monotonic()
    data, closed = half_close(target, b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Half: ")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data[:200]
    assert b"incomplete request head" in data
    assert closed
    assert time.monotonic() - t0 < 3 * SLOW


def test_half_close_pipelined_then_cut_head(target):
    """Complete requests before the cut one are answered first, in order."""
    data, closed = half_close(target, _req(b"/echo?a") + _req(b"/echo?b") + b"GET /echo?c HTTP/1.1\r\nHo")
    rs = parse_all(data)
    assert [r.status for r in rs] == [200, 200, 400], data[:600]
    assert [r.json()["uri"] for r in rs[:2]] == ["/echo?a", "/echo?b"]
    assert closed


def test_half_close_mid_body_closes_without_answer(env, target):
    """An incomplete body is an aborted request: closed, nothing answered."""
    data, closed = half_close(target, b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\nhello")
    assert data == b"" and closed, data[:200]
    data, closed = half_close(target, b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                              b"5\r\nhel")
    assert data == b"" and closed, data[:200]
    assert env.request("GET", "/echo?after").status == 200


def test_half_close_without_request(target):
    data, closed = half_close(target, b"")
    assert data == b"" and closed
    data, closed = half_close(target, b"\r\n\r\n")   # empty lines are no request either
    assert data == b"" and closed


def test_keepalive_connection_still_served_after_half_close_cases(env):
    r = env.request("GET", "/echo?still")
    assert r.status == 200 and r.json()["uri"] == "/echo?still"


# --------------------------------------------------------------------------
# slowloris on headers
# --------------------------------------------------------------------------

def _raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


ATTACKERS = 2000
PERIOD = 10.0             # seconds of attack
REQUEST_HEADER = 2.0      # timeouts.request_header


def test_slowloris_headers(meridian, backend):
    """2,000 connections trickle a head one byte a second for PERIOD s (each
    one closed by the server is replaced): timeouts.request_header (2 s)
    ends every one of them (408 or close) from its first byte, while a
    normal client keeps being served (> 99% of its requests)."""
    limit = _raise_nofile(ATTACKERS + 512)
    if limit < ATTACKERS + 256:
        pytest.skip("RLIMIT_NOFILE %d is too low for %d connections" % (limit, ATTACKERS))
    m = meridian.start(simple_config([backend.address], extra="timeouts: {request_header: 2s, idle: 30s, "
                                                              "shutdown: 5s}\n"))
    head = b"GET /echo HTTP/1.1\r\nHost: t\r\nUser-Agent: slowloris\r\n" + b"X-a: b\r\n" * 100
    sel = selectors.DefaultSelector()
    conns = {}               # socket -> [bytes sent, first byte time, state]
    stats = {"opened": 0, "got_408": 0, "closed_silently": 0, "too_late": 0, "max_life": 0.0,
             "open_errors": 0}

    def open_one(now):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            err = s.connect_ex(("127.0.0.1", m.port))
        except OSError:
            err = -1
        if err not in (0, errno.EINPROGRESS):
            s.close()
            stats["open_errors"] += 1
            return
        conns[s] = [0, None]
        sel.register(s, selectors.EVENT_READ)
        stats["opened"] += 1

    def finish(s, data, now):
        sent, first = conns.pop(s)
        sel.unregister(s)
        s.close()
        if data.startswith(b"HTTP/1.1 408"):
            stats["got_408"] += 1
        else:
            stats["closed_silently"] += 1
        if first is not None:
            life = now - first
            stats["max_life"] = max(stats["max_life"], life)
            if life > REQUEST_HEADER + 3.0 * SLOW:
                stats["too_late"] += 1

    # the normal client: a fresh connection per request, the whole time
    normal = {"ok": 0, "fail": 0, "worst": 0.0}
    stop = threading.Event()

    def normal_client():
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                s = connect(m.port, timeout=3.0)
                try:
                    s.sendall(b"GET /echo?normal HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    r = read_response(Reader(s))
                    ok = r.status == 200
                finally:
                    s.close()
            except (OSError, EOFError, ValueError):
                ok = False
            normal["ok" if ok else "fail"] += 1
            normal["worst"] = max(normal["worst"], time.monotonic() - t0)
            time.sleep(0.02)

    th = threading.Thread(target=normal_client)
    try:
        t_start = time.monotonic()
        for _ in range(ATTACKERS):
            open_one(t_start)
        th.start()
        next_tick = time.monotonic()
        while True:
            now = time.monotonic()
            attacking = now - t_start < PERIOD
            if not attacking and not conns:
                break
            if now - t_start > PERIOD + REQUEST_HEADER + 6.0 * SLOW:
                break
            if now >= next_tick:
                # one more byte on every connection that has not been closed
                for s, st in list(conns.items()):
                    if st[0] >= len(head):
                        continue
                    try:
                        if s.send(head[st[0]:st[0] + 1]) == 1:
                            if st[1] is None:
                                st[1] = now
                            st[0] += 1
                    except (BlockingIOError, InterruptedError):
                        pass      # still connecting
                    except OSError as e:
                        if e.errno not in (errno.EAGAIN, errno.ENOTCONN):
                            finish(s, b"", now)
                next_tick = now + 1.0
            for key, _ in sel.select(timeout=max(0.0, min(0.2, next_tick - time.monotonic()))):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                finish(s, data, time.monotonic())
                if attacking and time.monotonic() - t_start < PERIOD:
                    open_one(time.monotonic())
        elapsed = time.monotonic() - t_start
    finally:
        stop.set()
        if th.is_alive():
            th.join(10 * SLOW)
        for s in list(conns):
            s.close()
        sel.close()
    left = len(conns)
    total_normal = normal["ok"] + normal["fail"]
    rate = normal["ok"] / total_normal if total_normal else 0.0
    print("\nslowloris: %d attacker connections over %.1f s (%d open errors), %d got 408, %d closed without one, "
          "longest life %.2f s (request_header %.0f s), %d still open; normal client %d/%d ok (%.2f%%), "
          "slowest %.3f s" % (stats["opened"], elapsed, stats["open_errors"], stats["got_408"],
                              stats["closed_silently"], stats["max_life"], REQUEST_HEADER, left, normal["ok"],
                              total_normal, 100 * rate, normal["worst"]))
    assert m.alive()
    assert stats["opened"] >= ATTACKERS
    assert left == 0, "%d attacker connections outlived request_header" % left
    assert stats["too_late"] == 0, stats
    assert stats["got_408"] >= 0.9 * stats["opened"], stats
    assert total_normal >= 20, normal
    assert rate > 0.99, normal
    r = m.request("GET", "/echo?after-slowloris")
    assert r.status == 200
