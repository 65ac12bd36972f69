"""timeouts.request_body (SPEC 12): the longest gap between two reads of a
request body; past it the client gets 408 and the upstream attempt is
aborted (its connection closed, not pooled, not an upstream failure)."""
import os
import resource
import socket
import sys
import threading
import time

from conftest import SLOW, Reader, free_port, read_response, request, simple_config

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "h2conformance"))

from h2raw import DATA, END_STREAM, H2Raw  # noqa: E402

RB = 1.0 * SLOW                 # timeouts.request_body
H2C = 'listeners: [{address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}]\n'


def timeouts(extra=""):
    return "timeouts: {request_body: %dms, shutdown: 5s%s}\n" % (int(RB * 1000), extra)


class HeldUpstream:
    """Reads a request head and then whatever body comes, never answering;
    records when meridian closed each connection."""

    def __init__(self):
        self.heads = []
        self.body_bytes = []
        self.closed_at = []
        self.lock = threading.Lock()

    def handler(self, sock, reader, up):
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = reader.read_line()
            if not line:
                return
            head += line
        got = len(reader.buf)
        with self.lock:
            self.heads.append(head)
        sock.settimeout(60)
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            got += len(chunk)
        with self.lock:
            self.body_bytes.append(got)
            self.closed_at.append(time.monotonic())


def admin_metrics(admin):
    return request(admin, "GET", "/metrics").body.decode()


def upstream_failures(admin, address):
    total = 0
    for line in admin_metrics(admin).splitlines():
        if line.startswith('meridian_upstream_failures_total{region="r1",upstream="%s"' % address):
            total += int(line.rsplit(" ", 1)[1])
    return total


def stalled_body_408(m, head, first_part):
    """Sends head + part of a body, then nothing: (response, seconds to it,
    connection closed after it)."""
    s = socket.create_connection(("127.0.0.1", m.port), timeout=10 * SLOW)
    try:
        s.sendall(head + first_part)
        t0 = time.monotonic()
        rd = Reader(s)
        r = read_response(rd)
        elapsed = time.monotonic() - t0
        closed = rd.at_eof(3)
        return r, elapsed, closed
    finally:
        s.close()


def test_http1_content_length_body_stops_half_way(meridian, pyupstream):
    held = HeldUpstream()
    u = pyupstream.start(held.handler)
    admin = free_port()
    m = meridian.start(simple_config([u.address], extra=timeouts() + 'admin: {address: "127.0.0.1:%d"}\n' % admin))
    head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
    r, elapsed, closed = stalled_body_408(m, head, b"a" * 50)
    assert r.status == 408, r
    assert RB * 0.9 <= elapsed <= RB + 2.0 * SLOW, "408 after %.2f s (request_body %.2f s)" % (elapsed, RB)
    assert closed, "the connection stayed open after the 408"
    # the upstream attempt was aborted: its connection closed, the 50 body
    # bytes had reached it (its handler thread sees the close a moment
    # after the client read its 408)
    assert wait_until(lambda: len(held.closed_at) == 1, 3 * SLOW), "the upstream connection was not closed"
    assert held.body_bytes == [50], held.body_bytes
    # not the upstream's fault: no failure counted, still in rotation
    assert upstream_failures(admin, u.address) == 0
    assert 'meridian_upstream_healthy{region="r1",upstream="%s"} 1' % u.address in admin_metrics(admin)
    assert 'meridian_requests_total{region="r1",code="408"} 1' in admin_metrics(admin)


def test_http1_chunked_body_stalls(meridian, pyupstream):
    held = HeldUpstream()
    u = pyupstream.start(held.handler)
    m = meridian.start(simple_config([u.address], extra=timeouts()))
    head = b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    r, elapsed, closed = stalled_body_408(m, head, b"5\r\nhello\r\n")
    assert r.status == 408, r
    assert RB * 0.9 <= elapsed <= RB + 2.0 * SLOW, elapsed
    assert closed
    assert wait_until(lambda: len(held.closed_at) == 1, 3 * SLOW), "the upstream connection was not closed"


def wait_until(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_trickling_body_within_the_timeout_completes(meridian, backend):
    """A slow but steady client (gaps below request_body) is served."""
    m = meridian.start(simple_config([backend.address], extra=timeouts()))
    body = b"0123456"
    s = socket.create_connection(("127.0.0.1", m.port), timeout=10 * SLOW)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        t0 = time.monotonic()
        for i in range(len(body)):
            time.sleep(RB * 0.45)
            s.sendall(body[i:i + 1])
        r = read_response(Reader(s))
    finally:
        s.close()
    assert time.monotonic() - t0 > RB * 2, "the body did not take longer than the timeout in total"
    assert r.status == 200, r
    assert r.json()["body_bytes"] == len(body)


def test_our_own_backpressure_is_not_the_clients_silence(meridian, pyupstream):
    """The upstream reads nothing for 2.5 x request_body, so meridian stops
    reading the client (output watermark): that gap is meridian's, the
    request still completes."""
    size = 32 << 20

    def slow_reader(sock, reader, up):
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = reader.read_line()
            if not line:
                return
            head += line
        time.sleep(RB * 2.5)
        got = len(reader.buf)
        while got < size:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            got += len(chunk)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")

    u = pyupstream.start(slow_reader)
    m = meridian.start(simple_config([u.address], extra=timeouts() + "limits: {max_body_bytes: 67108864}\n"))
    s = socket.create_connection(("127.0.0.1", m.port), timeout=30 * SLOW)
    try:
        s.sendall(b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"z" * (1 << 20)
        for _ in range(size >> 20):
            s.sendall(block)
        r = read_response(Reader(s))
    finally:
        s.close()
    assert r.status == 200, r


def test_h2_stream_whose_data_stalls_gets_408_others_are_served(meridian, backend):
    m = meridian.start(H2C + simple_config([backend.address], extra=timeouts()))
    with H2Raw(m.port, timeout=10 * SLOW) as c:
        c.handshake()
        c.request(1, method="POST", path="/echo", end_stream=False,
                  extra=[("content-length", "100")])
        c.send_frame(DATA, 0, 1, b"x" * 40)
        t0 = time.monotonic()
        c.request(3, path="/echo")
        status3, _, _ = c.response(3)
        assert status3 == 200
        status1, h1, body1 = c.response(1, timeout=RB + 5 * SLOW)
        elapsed = time.monotonic() - t0
        assert status1 == 408, (status1, body1)
        assert RB * 0.9 <= elapsed <= RB + 2.0 * SLOW, elapsed
        # the rest of the connection keeps working
        c.request(5, method="POST", path="/echo", end_stream=False)
        c.send_frame(DATA, END_STREAM, 5, b"hello")
        status5, _, body5 = c.response(5)
        assert status5 == 200 and b'"body_bytes":5' in body5.replace(b" ", b""), body5
    # the upstream connection of stream 1 was closed
    assert wait_until(lambda: backend.stats()["active"] <= 2, 3 * SLOW), backend.stats()


def _raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def test_slow_body_attack_does_not_hold_upstream_connections(meridian, backends, capsys):
    """2,000 clients each send a head, one body byte, then a byte every
    2 x request_body. Without the timeout each holds an upstream connection
    for as long as it likes; with it each gets 408 and its upstream
    connection goes. A normal client meanwhile keeps > 99% success."""
    n = 2000
    limit = _raise_nofile(3 * n + 1000)
    if limit < 2 * n + 200:
        import pytest
        pytest.skip("RLIMIT_NOFILE hard limit %d too low" % limit)
    b = backends.start("b1")            # after raising the limit: inherits it
    admin = free_port()
    m = meridian.start(simple_config([b.address], workers=2,
                                     extra=timeouts() + 'admin: {address: "127.0.0.1:%d"}\n' % admin))
    stop = threading.Event()
    normal = {"ok": 0, "bad": 0}

    def normal_client():
        while not stop.is_set():
            try:
                r = request(m.port, "POST", "/echo", body=b"hello")
                ok = r.status == 200
            except (OSError, EOFError, ValueError):
                ok = False
            normal["ok" if ok else "bad"] += 1
            time.sleep(0.01)

    th = threading.Thread(target=normal_client, daemon=True)
    th.start()
    socks = []
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nA"
    t_start = time.monotonic()
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", m.port), timeout=10 * SLOW)
            s.sendall(head)
            socks.append(s)
        t_open = time.monotonic() - t_start
        peak = b.stats()["active"]
        # trickle: one byte every 2 x request_body to whoever is still open
        samples = []
        deadline = time.monotonic() + max(4.0 * RB, 4.0)
        next_byte = time.monotonic() + 2 * RB
        while time.monotonic() < deadline:
            if time.monotonic() >= next_byte:
                for s in socks:
                    try:
                        s.send(b"A", socket.MSG_DONTWAIT)
                    except OSError:
                        pass
                next_byte += 2 * RB
            samples.append(b.stats()["active"])
            time.sleep(0.25)
        held = b.stats()["active"]
        metrics = request(admin, "GET", "/metrics").body.decode()
    finally:
        stop.set()
        th.join(10)
        for s in socks:
            s.close()
    got408 = 0
    for line in metrics.splitlines():
        if line.startswith('meridian_requests_total{region="r1",code="408"}'):
            got408 = int(line.rsplit(" ", 1)[1])
    total = normal["ok"] + normal["bad"]
    with capsys.disabled():
        print("\nslow-body attack: %d clients opened in %.1f s, upstream connections at the peak %d, "
              "%.1f s later %d (min %d); %d x 408; normal client %d/%d ok"
              % (n, t_open, peak, time.monotonic() - t_start - t_open, held, min(samples), got408,
                 normal["ok"], total))
    assert held < n // 10, "the backend still holds %d connections from trickling clients" % held
    assert got408 >= n * 0.9, got408
    assert total >= 20 and normal["ok"] / total > 0.99, normal
    assert time.monotonic() - t_start < 20 * SLOW
