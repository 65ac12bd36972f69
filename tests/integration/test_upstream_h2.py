"""HTTP/2 to upstreams (regions[].upstream_protocol: h2c): nghttpd and a
Python h2 server as upstreams, HTTP/1.1 and HTTP/2 clients; streams share few
connections under the peer's MAX_CONCURRENT_STREAMS; trailers both ways;
GOAWAY and REFUSED_STREAM retried; flow control bounds memory; gRPC through
meridian."""
import hashlib
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import MERIDIAN_BIN, SLOW, _stop_pid, free_port, request, simple_config, wait_for

h2 = pytest.importorskip("h2.connection")
import h2.config  # noqa: E402
import h2.errors  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

H2C = 'listeners: [{address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}]\n'
UP_H2C = "    upstream_protocol: h2c\n"

need_nghttpd = pytest.mark.skipif(shutil.which("nghttpd") is None, reason="nghttpd not installed")
need_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


def curl(port, path, *extra, http2=True):
    cmd = ["curl", "-sS", "-D", "-", "-o", "-", "--max-time", str(int(30 * SLOW))]
    cmd.append("--http2-prior-knowledge" if http2 else "--http1.1")
    cmd += list(extra)
    cmd.append("http://127.0.0.1:%d%s" % (port, path))
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60 * SLOW)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


# --------------------------------------------------------------------------
# nghttpd upstream
# --------------------------------------------------------------------------

def start_nghttpd(*args):
    """nghttpd on a free loopback port (args before the port; key and cert
    after it for TLS), listening; .address set"""
    tls = [a for a in args if a.endswith((".key", ".crt"))]
    # a free port can be taken again before nghttpd binds it (an outgoing
    # connection's local port): nghttpd then exits, or listens on IPv6 only
    # and 127.0.0.1 refuses; another port is tried
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen(["nghttpd"] + [a for a in args if a not in tls] + [str(port)] + tls,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            if proc.poll() is not None:
                return True
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False
        if wait_for(up, 5 * SLOW) and proc.poll() is None:
            proc.address = "127.0.0.1:%d" % port
            return proc
        rc = proc.poll()
        _stop_pid(proc, 5)
    raise AssertionError("nghttpd did not start (exit status %s)" % rc)


@pytest.fixture
def nghttpd(tmp_path):
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    (docroot / "index.html").write_bytes(b"hello from nghttpd\n")
    (docroot / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    proc = start_nghttpd("--no-tls", "-d", str(docroot))
    proc.docroot = docroot
    yield proc
    _stop_pid(proc, 5)


@need_nghttpd
@need_curl
@pytest.mark.parametrize("http2", [False, True], ids=["http1-client", "h2-client"])
def test_nghttpd_get_head_post(meridian, nghttpd, http2):
    m = meridian.start(H2C + simple_config([nghttpd.address], region_extra=UP_H2C))
    status, h, body = curl(m.port, "/index.html", http2=http2)
    assert status == 200 and body == b"hello from nghttpd\n"
    assert h["x-meridian-region"] == "r1"
    assert h["server"].startswith("nghttpd")  # it came over HTTP/2 from nghttpd
    big = (nghttpd.docroot / "big.bin").read_bytes()
    status, h, body = curl(m.port, "/big.bin", http2=http2)
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
    status, h, _ = curl(m.port, "/big.bin", "-I", http2=http2)  # HEAD (curl prints the head as the body)
    assert status == 200 and h["content-length"] == str(len(big))
    # nghttpd answers a POST to a file with the file: the body went up and
    # the stream completed
    data = nghttpd.docroot / "post.bin"
    data.write_bytes(os.urandom(300000))
    status, h, body = curl(m.port, "/index.html", "--data-binary", "@" + str(data), http2=http2)
    assert status == 200 and body == b"hello from nghttpd\n"
    status, _, _ = curl(m.port, "/missing", http2=http2)
    assert status == 404


# --------------------------------------------------------------------------
# a Python HTTP/2 upstream
# --------------------------------------------------------------------------

def goaway_frame(last_sid, code=0):
    return (8).to_bytes(3, "big") + b"\x07\x00" + (0).to_bytes(4, "big") + last_sid.to_bytes(4, "big") + \
        code.to_bytes(4, "big")


class H2Upstream:
    """A threaded h2c server. Paths: /echo (the request body back, trailers
    x-echo-len, x-got-trailer, grpc-status), /slow?ms=N, /refuse (RST
    REFUSED_STREAM), /big?n=N (N bytes, flow controlled), /nolen (no
    content-length), /stall (the request body is never given window back),
    /status/NNN. Counts connections, streams and the most streams open
    at once on one connection. goaway_after=k: on each connection, at the
    k-th stream, a GOAWAY naming the stream before it as the last one; the
    later streams are never answered (on the first goaway_conns
    connections). refuse=True: every stream is
    refused."""

    def __init__(self, max_streams=100, goaway_after=None, name="py", refuse=False, goaway_conns=1, reset=False,
                 drop=False):
        self.reset = reset
        self.drop = drop
        self.goaway_conns = goaway_conns
        self.goaways = 0
        self.refuse = refuse
        self.max_streams = max_streams
        self.goaway_after = goaway_after
        self.name = name
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(256)
        self.port = self.lsock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.connections = 0
        self.streams = 0
        self.max_open = 0
        self.answered = 0
        self.sent_body = 0
        self.received_body = 0
        self.resets = []  # (stream id, error code) the client (meridian) reset
        self.requests = []  # (headers dict, body, trailers dict)
        self.socks = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def stop(self):
        self.running = False
        self.lsock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass

    def _serve(self, s):
        try:
            self._loop(s)
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def _loop(self, s):
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=cfg)
        conn.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        conn.initiate_connection()
        s.sendall(conn.data_to_send())
        st = {}        # sid -> dict(headers, body, trailers)
        due = []       # (time, sid)
        out = {}       # sid -> [remaining bytes, trailers or None]
        n_streams = 0
        open_now = 0
        last_ok = None  # GOAWAY sent: streams above it are ignored
        while self.running:
            now = time.monotonic()
            timeout = 0.05
            if due:
                timeout = max(0, min(t for t, _ in due) - now)
            r, _, _ = select.select([s], [], [], timeout)
            if r:
                data = s.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        n_streams += 1
                        open_now += 1
                        with self.lock:
                            self.streams += 1
                            self.max_open = max(self.max_open, open_now)
                        st[ev.stream_id] = {"headers": dict(ev.headers), "body": bytearray(), "trailers": {}}
                        if self.goaway_after and n_streams == self.goaway_after and last_ok is None and \
                                self.goaways < self.goaway_conns:
                            self.goaways += 1
                            last_ok = ev.stream_id - 2
                            s.sendall(conn.data_to_send() + goaway_frame(last_ok))
                        if last_ok is not None and ev.stream_id > last_ok:
                            continue
                        if self.drop:
                            return  # the connection closes under the stream
                        if self.refuse:
                            st[ev.stream_id]["headers"][":path"] = "/refuse"
                        if self.reset:
                            st[ev.stream_id]["headers"][":path"] = "/refuse"  # not answered
                            conn.reset_stream(ev.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                            open_now -= 1
                            continue
                        if st[ev.stream_id]["headers"][":path"] == "/refuse":
                            conn.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                            open_now -= 1
                    elif isinstance(ev, h2.events.DataReceived):
                        if ev.stream_id in st:
                            with self.lock:
                                self.received_body += len(ev.data)
                            if st[ev.stream_id]["headers"][":path"] == "/stall":
                                continue  # no window back: the sender must wait
                            st[ev.stream_id]["body"] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        st[ev.stream_id]["trailers"] = dict(ev.headers)
                    elif isinstance(ev, h2.events.StreamEnded):
                        rq = st.get(ev.stream_id)
                        if rq is None or (last_ok is not None and ev.stream_id > last_ok):
                            continue
                        if rq["headers"][":path"] == "/refuse":
                            continue
                        with self.lock:
                            self.requests.append((rq["headers"], bytes(rq["body"]), rq["trailers"]))
                        path = rq["headers"][":path"]
                        delay = 0
                        if path.startswith("/slow?ms="):
                            delay = int(path.split("=")[1]) / 1000.0
                        due.append((time.monotonic() + delay, ev.stream_id))
                    elif isinstance(ev, h2.events.StreamReset):
                        with self.lock:
                            self.resets.append((ev.stream_id, ev.error_code))
                        due = [d for d in due if d[1] != ev.stream_id]
                        if ev.stream_id in out:
                            del out[ev.stream_id]
                        open_now -= 1
            now = time.monotonic()
            for item in [d for d in due if d[0] <= now]:
                due.remove(item)
                sid = item[1]
                rq = st[sid]
                path = rq["headers"][":path"]
                try:
                    if path == "/echo":
                        body = bytes(rq["body"])
                        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/octet-stream"),
                                                ("x-up", self.name)])
                        out[sid] = [body, [("x-echo-len", str(len(body))),
                                           ("x-got-trailer", rq["trailers"].get("x-client-sum", "none")),
                                           ("grpc-status", "0")]]
                    elif path.startswith("/big?n="):
                        n = int(path.split("=")[1])
                        conn.send_headers(sid, [(":status", "200"), ("content-length", str(n))])
                        out[sid] = [n, None]
                    elif path.startswith("/status/"):
                        conn.send_headers(sid, [(":status", path[8:11]), ("content-length", "0")])
                        out[sid] = [b"", None]
                    elif path == "/nolen":
                        conn.send_headers(sid, [(":status", "200")])
                        out[sid] = [b"abc", None]
                    else:
                        body = b"ok " + self.name.encode()
                        conn.send_headers(sid, [(":status", "200"), ("content-length", str(len(body))),
                                                ("x-up", self.name)])
                        out[sid] = [body, None]
                except h2.exceptions.StreamClosedError:
                    pass
            # body data under the peer's flow control windows
            for sid in list(out):
                rest, trailers = out[sid]
                try:
                    while True:
                        left = rest if isinstance(rest, int) else len(rest)
                        if left == 0:
                            if trailers:
                                conn.send_headers(sid, trailers, end_stream=True)
                            else:
                                conn.end_stream(sid)
                            del out[sid]
                            open_now -= 1
                            with self.lock:
                                self.answered += 1
                            break
                        win = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, 65536)
                        if win <= 0:
                            break
                        k = min(win, left)
                        if isinstance(rest, int):
                            conn.send_data(sid, b"z" * k)
                            rest -= k
                        else:
                            conn.send_data(sid, rest[:k])
                            rest = rest[k:]
                        out[sid][0] = rest
                        with self.lock:
                            self.sent_body += k
                        if len(conn.data_to_send(0)) > 1 << 20:
                            break
                except h2.exceptions.StreamClosedError:
                    out.pop(sid, None)
            pending = conn.data_to_send()
            if pending:
                s.sendall(pending)
            if last_ok is not None and not out and not due:
                return  # everything up to last_ok answered: close


@pytest.fixture
def h2ups():
    started = []

    def start(**kw):
        u = H2Upstream(**kw)
        started.append(u)
        return u
    yield start
    for u in started:
        u.stop()


def http1(port, path, method="GET", body=b"", headers=()):
    return request(port, method, path, dict(headers) if headers else None, body)


def test_streams_share_few_connections(meridian, h2ups):
    up = h2ups(max_streams=10)
    m = meridian.start(simple_config([up.address], region_extra=UP_H2C, workers=1))
    with ThreadPoolExecutor(max_workers=100) as ex:
        results = list(ex.map(lambda i: http1(m.port, "/slow?ms=%d" % (300 * SLOW)), range(100)))
    statuses = [r.status for r in results]
    assert statuses.count(200) == 100, statuses
    assert up.streams == 100
    assert up.max_open <= 10          # the peer's MAX_CONCURRENT_STREAMS was respected
    assert 2 <= up.connections <= 12, up.connections  # full connections made new ones, few of them
    # the pooled connections serve the next requests
    before = up.connections
    assert http1(m.port, "/").status == 200
    assert up.connections == before


def test_keepalive_client_and_websocket_refused(meridian, h2ups):
    up = h2ups()
    m = meridian.start(simple_config([up.address], region_extra=UP_H2C, workers=1))
    with m.conn() as c:
        for i in range(5):
            r = c.request("POST", "/echo", body=b"n%d" % i)
            assert r.status == 200 and r.body == b"n%d" % i
    assert up.connections == 1 and up.streams == 5
    # a WebSocket upgrade has no HTTP/1.1 Upgrade to ride on over HTTP/2
    got = m.raw(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", timeout=1)
    assert got.startswith(b"HTTP/1.1 502") and b"an upgrade cannot go to an HTTP/2 upstream" in got, got
    assert up.streams == 5


def test_trailers_both_ways_http2_client(meridian, h2ups):
    up = h2ups()
    m = meridian.start(H2C + simple_config([up.address], region_extra=UP_H2C))
    s = socket.create_connection(("127.0.0.1", m.port), 10 * SLOW)
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    c.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "t"), (":path", "/echo"),
                       ("te", "trailers"), ("content-type", "application/grpc")])
    c.send_data(1, b"payload-bytes")
    c.send_headers(1, [("x-client-sum", "s123")], end_stream=True)
    s.sendall(c.data_to_send())
    headers, body, trailers, ended = None, bytearray(), None, False
    deadline = time.monotonic() + 10 * SLOW
    while not ended and time.monotonic() < deadline:
        data = s.recv(65536)
        if not data:
            break
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                headers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                ended = True
        s.sendall(c.data_to_send())
    s.close()
    assert ended and headers[":status"] == "200"
    assert bytes(body) == b"payload-bytes"
    assert trailers == {"x-echo-len": "13", "x-got-trailer": "s123", "grpc-status": "0"}
    rh, rb, rt = up.requests[-1]
    assert rh["te"] == "trailers" and rh[":authority"] == "t" and rh["content-type"] == "application/grpc"
    assert rt == {"x-client-sum": "s123"}


def test_client_reset_cancels_the_upstream_stream(meridian, h2ups):
    up = h2ups()
    m = meridian.start(H2C + simple_config([up.address], region_extra=UP_H2C))
    s = socket.create_connection(("127.0.0.1", m.port), 10 * SLOW)
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/slow?ms=5000")],
                   end_stream=True)
    s.sendall(c.data_to_send())
    assert wait_for(lambda: up.streams == 1, 5 * SLOW)
    c.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    s.sendall(c.data_to_send())
    assert wait_for(lambda: up.resets, 5 * SLOW)
    assert up.resets[0][1] == h2.errors.ErrorCodes.CANCEL
    s.close()
    assert up.answered == 0
    assert http1(m.port, "/").status == 200 and up.connections == 1  # the connection itself stayed


def test_trailers_both_ways_http1_chunked(meridian, h2ups):
    up = h2ups()
    m = meridian.start(simple_config([up.address], region_extra=UP_H2C))
    got = m.raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Client-Sum: c9\r\n\r\n", timeout=5)
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), got
    assert b"transfer-encoding: chunked" in head.lower()
    assert rest.startswith(b"5\r\nhello\r\n0\r\n"), rest
    assert b"x-echo-len: 5\r\n" in rest.lower() and b"x-got-trailer: c9\r\n" in rest.lower()
    assert rest.endswith(b"\r\n\r\n")
    rh, rb, rt = up.requests[-1]
    assert rb == b"hello" and rt == {"x-client-sum": "c9"}
    assert "transfer-encoding" not in rh and "connection" not in rh


def test_response_without_length_to_http1_is_chunked(meridian, h2ups):
    up = h2ups()
    m = meridian.start(simple_config([up.address], region_extra=UP_H2C))
    got = m.raw(b"GET /nolen HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout=5)
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower(), got
    assert rest == b"3\r\nabc\r\n0\r\n\r\n"


def test_goaway_mid_load_fails_no_request(meridian, h2ups):
    up = h2ups(goaway_after=5, goaway_conns=3)
    # retries: 0: the streams a GOAWAY cut off were not processed, and
    # moving them is not a retry
    m = meridian.start(simple_config([up.address], region_extra=UP_H2C + "    retries: 0\n", workers=1))
    with ThreadPoolExecutor(max_workers=30) as ex:
        results = list(ex.map(lambda i: http1(m.port, "/slow?ms=%d" % (150 * SLOW), "POST" if i % 2 else "GET"),
                              range(60)))
    statuses = [r.status for r in results]
    assert statuses.count(200) == 60, [(r.status, r.body) for r in results if r.status != 200]
    assert up.goaways == 3 and up.connections >= 4  # GOAWAY drained connections; new ones took over
    assert up.answered == 60


def test_refused_stream_retried_on_another_upstream(meridian, h2ups):
    good = h2ups(name="good")
    bad = h2ups(name="bad", refuse=True)
    m = meridian.start(simple_config([bad.address, good.address], balance="round_robin", region_extra=UP_H2C))
    for i in range(10):
        # POST too: a refused stream was not processed
        r = http1(m.port, "/", "POST" if i % 2 else "GET", b"x" * 100 if i % 4 == 1 else b"")
        assert r.status == 200, r
        assert r.body == b"ok good"
    assert bad.streams >= 3 and bad.answered == 0
    assert good.answered == 10


def test_reset_before_response_retried_like_http1(meridian, h2ups):
    """RST_STREAM (not REFUSED) before any response byte: repeated when
    nothing of a body was lost (a GET, a POST without body), not a POST whose
    body went out (SPEC 3.5 / ref. 4.6), exactly as for a reset HTTP/1
    connection."""
    bad = h2ups(name="bad", reset=True)
    m = meridian.start(simple_config([bad.address], region_extra=UP_H2C, workers=1))
    r = http1(m.port, "/")
    assert r.status == 502 and r.body == b"502 Bad Gateway: upstream failed\n"  # retried: no upstream left
    r = http1(m.port, "/", "POST", b"")
    assert r.status == 502 and r.body == b"502 Bad Gateway: upstream failed\n"
    r = http1(m.port, "/", "POST", b"p" * 1000)
    assert r.status == 502 and r.body == b"502 Bad Gateway: upstream reset the stream\n"
    assert bad.streams == 3


def test_http1_server_behind_h2c_region_is_a_502(meridian, pyupstream):
    def handler(sock, reader, up):
        sock.recv(65536)  # the preface and our SETTINGS
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        time.sleep(0.5)
    up = pyupstream.start(handler)
    m = meridian.start(simple_config([up.address], region_extra=UP_H2C + "    retries: 1\n", workers=1))
    for _ in range(3):
        r = http1(m.port, "/")
        assert r.status == 502, r
        # a protocol error before a response is retryable: the only upstream
        # was tried, so the region is out of upstreams
        assert r.body == b"502 Bad Gateway: upstream failed\n", r.body
    assert up.connections == 3
    assert m.alive()


def test_upstream_allowing_no_streams(meridian, h2ups):
    none = h2ups(name="none", max_streams=0)
    good = h2ups(name="good")
    m = meridian.start(simple_config([none.address, good.address], balance="round_robin",
                                     region_extra=UP_H2C, workers=1))
    for _ in range(4):
        r = http1(m.port, "/")
        assert r.status == 200 and r.body == b"ok good", r
    time.sleep(0.3)
    assert none.streams == 0 and none.connections <= 4  # no storm of connections


def test_connection_closed_before_response_retried(meridian, h2ups):
    dropper = h2ups(name="drop", drop=True)
    good = h2ups(name="good")
    m = meridian.start(simple_config([dropper.address, good.address], balance="round_robin",
                                     region_extra=UP_H2C, workers=1))
    for _ in range(4):
        r = http1(m.port, "/")
        assert r.status == 200 and r.body == b"ok good", r
    assert dropper.streams >= 1


def test_slow_reader_bounded_by_flow_control(meridian, h2ups):
    up = h2ups()
    m = meridian.start(simple_config([up.address], region_extra=UP_H2C, workers=1))
    total = 200 * 1024 * 1024
    rss0 = m.rss_kb()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(30 * SLOW)
    s.connect(("127.0.0.1", m.port))
    s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % total)
    got = s.recv(65536)
    assert got.startswith(b"HTTP/1.1 200"), got
    time.sleep(2 * SLOW)  # the reader stops: the upstream must stop too
    sent, rss1 = up.sent_body, m.rss_kb()
    assert sent < 32 * 1024 * 1024, sent
    assert rss1 - rss0 < 32 * 1024, (rss0, rss1)
    n = len(got) - got.index(b"\r\n\r\n") - 4
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        n += len(d)
    s.close()
    assert n == total


def test_response_timeout_fails_only_that_stream(meridian, h2ups):
    up = h2ups()
    m = meridian.start("timeouts: {upstream_response: 500ms, shutdown: 5s}\n"
                       + simple_config([up.address], region_extra=UP_H2C + "    retries: 0\n", workers=1))
    with ThreadPoolExecutor(max_workers=2) as ex:
        t0 = time.monotonic()
        slow = ex.submit(http1, m.port, "/slow?ms=5000")
        time.sleep(0.1)
        fast = ex.submit(http1, m.port, "/echo", "POST", b"abc")
        assert fast.result().status == 200 and fast.result().body == b"abc"
        r = slow.result()
        assert r.status == 504 and b"upstream response timeout" in r.body
        assert 0.4 < time.monotonic() - t0 < 3 * SLOW
    assert up.connections == 1  # both on one connection; the timeout reset a stream, not it
    assert http1(m.port, "/").status == 200
    assert up.connections == 1


def test_idle_connection_closes_and_reload_keeps_serving(meridian, h2ups):
    up = h2ups()
    cfg = "timeouts: {idle: 700ms, shutdown: 5s}\n" + simple_config([up.address], region_extra=UP_H2C, workers=1)
    m = meridian.start(cfg)
    assert http1(m.port, "/").status == 200
    assert http1(m.port, "/").status == 200
    assert up.connections == 1
    # SIGHUP: requests keep flowing through the new generation (an open
    # stream across the reload finishes on its connection)
    with ThreadPoolExecutor(max_workers=1) as ex:
        inflight = ex.submit(http1, m.port, "/slow?ms=%d" % (400 * SLOW))
        time.sleep(0.1)
        with open(m.conf, "w") as f:
            f.write(m.yaml_text.replace("idle: 700ms", "idle: 600ms"))
        m.signal(signal.SIGHUP)
        assert wait_for(lambda: "configuration reloaded" in m.stderr(), 5 * SLOW), m.stderr()
        assert inflight.result().status == 200
    assert http1(m.port, "/").status == 200

    def closed():
        with up.lock:
            return all(s.fileno() == -1 or not _alive(s) for s in up.socks)
    assert wait_for(closed, 5 * SLOW)  # timeouts.idle closed the pooled connections
    n = up.connections
    assert http1(m.port, "/").status == 200
    assert up.connections == n + 1


def _alive(s):
    try:
        r, _, _ = select.select([s], [], [], 0)
        return not r or s.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


def test_health_checks_over_h2c(meridian, h2ups):
    up = h2ups(name="a")
    sick = h2ups(name="b")
    hc = "    health_check: {path: %s, interval: 100ms, timeout: 1s, rise: 1, fall: 1}\n"
    m = meridian.start(simple_config([up.address], region_extra=UP_H2C + hc % "/healthz")
                       + "  - name: r2\n    location: {latitude: 0, longitude: 0}\n" + UP_H2C
                       + hc % "/status/503" + "    upstreams:\n      - {address: \"%s\"}\n" % sick.address)

    def checked(u):
        with u.lock:
            return [h for h, _, _ in u.requests if h[":path"].startswith(("/healthz", "/status/"))]
    assert wait_for(lambda: len(checked(up)) >= 2 and len(checked(sick)) >= 2, 5 * SLOW)
    h = checked(up)[0]
    assert h[":method"] == "GET" and h["user-agent"].startswith("meridian-health/")
    assert h[":authority"] == up.address
    assert "upstream %s (r2) is down: unexpected status" % sick.address in m.stderr()
    assert "upstream %s (r1) is down" % up.address not in m.stderr()
    r = http1(m.port, "/")
    assert r.status == 200 and r.body == b"ok a"


def test_upload_to_stalled_upstream_pauses_the_client(meridian, h2ups):
    up = h2ups()
    m = meridian.start(simple_config([up.address], region_extra=UP_H2C, workers=1,
                                     extra="limits: {max_body_bytes: 1073741824}\n"))
    rss0 = m.rss_kb()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    s.connect(("127.0.0.1", m.port))
    s.sendall(b"POST /stall HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (500 * 1024 * 1024))
    s.setblocking(False)
    chunk, pushed = b"u" * 65536, 0
    deadline = time.monotonic() + 2 * SLOW
    while time.monotonic() < deadline:
        try:
            pushed += s.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
    rss1 = m.rss_kb()
    s.close()
    # the upstream took one stream window (64 KiB) and gave none back: the
    # client was paused; only socket buffers and meridian's high-water mark
    # (64 KiB) hold the rest
    assert up.received_body <= 65535, up.received_body
    print("upload pushed %d bytes, upstream got %d" % (pushed, up.received_body))
    assert pushed < 16 * 1024 * 1024, pushed
    assert rss1 - rss0 < 16 * 1024, (rss0, rss1)


def test_config_errors(tmp_path):
    base = ("listeners: [{address: \"127.0.0.1:%d\"}]\nregions:\n  - name: r1\n"
            "    location: {latitude: 1, longitude: 2}\n" % free_port())
    for value, msg in (("h2", "regions[0].upstream_protocol: h2 requires upstream_tls"),
                       ("http3", "expected one of http1, h2c, h2, got \"http3\"")):
        p = tmp_path / "c.yaml"
        p.write_text(base + "    upstream_protocol: %s\n    upstreams: [{address: \"127.0.0.1:1\"}]\n" % value)
        out = subprocess.run([MERIDIAN_BIN, "-t", "-c", str(p)], capture_output=True, text=True, timeout=10)
        assert out.returncode != 0
        assert "%s:5:24: " % p in out.stderr and msg in out.stderr, out.stderr


# --------------------------------------------------------------------------
# gRPC
# --------------------------------------------------------------------------

grpc = pytest.importorskip("grpc")


@pytest.fixture
def grpc_server():
    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(max_workers=8))

    def unary(req, ctx):
        if req == b"fail":
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        ctx.set_trailing_metadata((("x-served-by", "py"),))
        return b"echo:" + req

    def server_stream(req, ctx):
        for i in range(int(req)):
            yield b"item-%d" % i

    def client_stream(it, ctx):
        return b"+".join(it)

    ident = dict(request_deserializer=lambda b: b, response_serializer=lambda b: b)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, **ident),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, **ident),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, **ident),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield "127.0.0.1:%d" % port
    server.stop(0)


def test_grpc_through_meridian(meridian, grpc_server):
    m = meridian.start(H2C + simple_config([grpc_server], region_extra=UP_H2C))
    ch = grpc.insecure_channel("127.0.0.1:%d" % m.port)
    ident = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        unary = ch.unary_unary("/test.Echo/Unary", **ident)
        resp, call = unary.with_call(b"hi", timeout=10 * SLOW)
        assert resp == b"echo:hi"
        assert call.code() == grpc.StatusCode.OK
        assert ("x-served-by", "py") in call.trailing_metadata()
        with pytest.raises(grpc.RpcError) as e:
            unary(b"fail", timeout=10 * SLOW)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert e.value.details() == "no such thing"
        stream = ch.unary_stream("/test.Echo/ServerStream", **ident)
        assert list(stream(b"25", timeout=10 * SLOW)) == [b"item-%d" % i for i in range(25)]
        cstream = ch.stream_unary("/test.Echo/ClientStream", **ident)
        assert cstream(iter([b"a", b"b", b"c"]), timeout=10 * SLOW) == b"a+b+c"
        # many calls multiplex on the pooled connection
        with ThreadPoolExecutor(max_workers=20) as ex:
            got = list(ex.map(lambda i: unary(b"%d" % i, timeout=10 * SLOW), range(100)))
        assert got == [b"echo:%d" % i for i in range(100)]
    finally:
        ch.close()


# --------------------------------------------------------------------------
# h2: HTTP/2 over TLS with ALPN h2 (upstream_protocol: h2 + upstream_tls)
# --------------------------------------------------------------------------

from test_upstream_tls import Pki, TlsUpstream  # noqa: E402


def up_h2_tls(ca, extra=""):
    return "    upstream_protocol: h2\n    upstream_tls: {ca: %s, server_name: localhost}\n" % ca + extra


@pytest.fixture
def nghttpd_tls(tmp_path):
    pki = Pki(tmp_path)
    crt, key = pki.leaf("up", "DNS:localhost")
    docroot = tmp_path / "docroot-tls"
    docroot.mkdir()
    (docroot / "index.html").write_bytes(b"hello over h2 and TLS\n")
    proc = start_nghttpd("-d", str(docroot), key, crt)
    proc.ca = pki.ca[0]
    proc.pki = pki
    yield proc
    _stop_pid(proc, 5)


@need_nghttpd
@need_curl
@pytest.mark.parametrize("http2", [False, True], ids=["http1-client", "h2-client"])
def test_nghttpd_over_tls_h2(meridian, nghttpd_tls, http2):
    hc = "    health_check: {path: /index.html, interval: 200ms, timeout: 1s, rise: 1, fall: 1}\n"
    m = meridian.start(H2C + simple_config([nghttpd_tls.address], region_extra=up_h2_tls(nghttpd_tls.ca, hc)))
    for _ in range(3):
        status, h, body = curl(m.port, "/index.html", http2=http2)
        assert status == 200 and body == b"hello over h2 and TLS\n", (status, body, m.stderr())
        assert h["server"].startswith("nghttpd")
    # the health checks (HTTP/2 over TLS) pass: nothing was marked down
    time.sleep(0.6 * SLOW)
    assert "is down" not in m.stderr(), m.stderr()


def test_h2_needs_the_upstream_to_choose_alpn_h2(meridian, tmp_path):
    pki = Pki(tmp_path)
    up = TlsUpstream(pki.leaf("up", "DNS:localhost"))
    up.ctx.set_alpn_protocols(["http/1.1"])  # an HTTP/1.1-only TLS server
    try:
        m = meridian.start(simple_config([up.address], region_extra=up_h2_tls(pki.ca[0])))
        r = request(m.port, "GET", "/")
        assert r.status == 502, r.status
        # (no protocol in common: the server goes on without ALPN)
        assert wait_for(lambda: "the upstream chose no ALPN protocol (h2 needed)" in m.stderr(), 2 * SLOW), m.stderr()
    finally:
        up.stop()


def test_grpc_over_tls_h2_upstream(meridian, tmp_path):
    pki = Pki(tmp_path)
    crt, key = pki.leaf("grpc", "DNS:localhost")
    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(max_workers=4))

    def unary(req, ctx):
        ctx.set_trailing_metadata((("x-served-by", "tls"),))
        return b"echo:" + req

    def server_stream(req, ctx):
        for i in range(int(req)):
            yield b"item-%d" % i

    ident = dict(request_deserializer=lambda b: b, response_serializer=lambda b: b)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, **ident),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, **ident)}),))
    creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(crt, "rb").read())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        m = meridian.start(H2C + simple_config(["127.0.0.1:%d" % port], region_extra=up_h2_tls(pki.ca[0])))
        ch = grpc.insecure_channel("127.0.0.1:%d" % m.port)
        ident = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            resp, call = ch.unary_unary("/test.Echo/Unary", **ident).with_call(b"hi", timeout=10 * SLOW)
            assert resp == b"echo:hi" and call.code() == grpc.StatusCode.OK
            assert ("x-served-by", "tls") in call.trailing_metadata()
            got = list(ch.unary_stream("/test.Echo/ServerStream", **ident)(b"10", timeout=10 * SLOW))
            assert got == [b"item-%d" % i for i in range(10)]
        finally:
            ch.close()
    finally:
        server.stop(0)


def test_h2_tls_config_errors(tmp_path):
    base = ("listeners: [{address: \"127.0.0.1:%d\"}]\nregions:\n  - name: r1\n"
            "    location: {latitude: 1, longitude: 2}\n" % free_port())
    cases = (
        ("    upstream_protocol: h2c\n    upstream_tls: {}\n    upstreams: [{address: \"127.0.0.1:1\"}]\n",
         ":5:24: ", "regions[0].upstream_protocol: h2c is HTTP/2 over cleartext; with upstream_tls use h2"),
        ("    upstream_protocol: h2c\n    upstreams: [{address: \"127.0.0.1:1\", send_proxy: v2}]\n",
         ":6:27: ", "regions[0].upstreams[0].send_proxy: not with upstream_protocol h2c"),
    )
    for body, where, msg in cases:
        p = tmp_path / "c.yaml"
        p.write_text(base + body)
        out = subprocess.run([MERIDIAN_BIN, "-t", "-c", str(p)], capture_output=True, text=True, timeout=10)
        assert out.returncode != 0
        assert str(p) + where in out.stderr and msg in out.stderr, out.stderr
