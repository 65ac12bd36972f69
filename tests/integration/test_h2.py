"""HTTP/2 downstream over plaintext prior knowledge (h2c): routing, bodies
both ways, streaming with bounded memory, many streams on one connection,
h2load, and HTTP/1.1 still served on the same listener."""
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "h2conformance"))

from conftest import SLOW, fnv1a64, simple_config  # noqa: E402
from h2raw import DATA, END_STREAM, H2Raw  # noqa: E402

MiB = 1 << 20
BIG = 100 * MiB
H2C = 'listeners: [{address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}]\n'
RSS_ENV = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8").lstrip(":")}

need_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
need_h2load = pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load not installed")


def curl(port, path="/", extra=(), data_file=None, timeout=60):
    """(status, headers dict lowercased, body) over h2 prior knowledge."""
    cmd = ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "-", "--max-time", str(int(timeout * SLOW))]
    cmd += list(extra)
    if data_file is not None:
        cmd += ["--data-binary", "@" + data_file]
    cmd.append("http://127.0.0.1:%d%s" % (port, path))
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout * SLOW + 10)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/2 "), lines[0]
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip()] = v.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
def proxy(meridian, backend):
    return meridian.start(H2C + simple_config([backend.address], extra="limits: {max_body_bytes: 209715200}\n"),
                          env=RSS_ENV)


@need_curl
def test_get_routed(proxy):
    status, h, body = curl(proxy.port, "/echo")
    assert status == 200
    assert h["x-meridian-region"] == "r1"          # names come lowercase over h2
    assert all(k == k.lower() for k in h)
    assert h["via"] == "1.1 meridian"
    j = json.loads(body)
    sent = {k.lower(): v for k, v in j["headers"]}
    assert sent["host"] == "127.0.0.1:%d" % proxy.port   # from :authority
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert j["method"] == "GET" and j["uri"] == "/echo"


@need_curl
def test_post_1mib_intact(proxy, tmp_path):
    data = random.Random(3).randbytes(MiB)
    p = tmp_path / "body"
    p.write_bytes(data)
    status, _, body = curl(proxy.port, "/echo", data_file=str(p))
    assert status == 200
    j = json.loads(body)
    assert j["body_bytes"] == MiB
    assert j["body_fnv"] == "%016x" % fnv1a64(data)


def test_post_without_content_length_is_chunked_upstream(proxy):
    data = random.Random(5).randbytes(300000)
    with H2Raw(proxy.port, timeout=10 * SLOW) as c:
        c.handshake()
        c.request(1, method="POST", path="/echo", end_stream=False)
        for off in range(0, len(data), 16384):
            part = data[off:off + 16384]
            last = off + 16384 >= len(data)
            c.send_frame(DATA, END_STREAM if last else 0, 1, part)
        status, _, body = c.response(1)
    assert status == 200
    j = json.loads(body)
    sent = {k.lower(): v for k, v in j["headers"]}
    assert sent.get("transfer-encoding") == "chunked"
    assert j["body_bytes"] == len(data) and j["body_fnv"] == "%016x" % fnv1a64(data)


def test_cookies_joined(proxy):
    with H2Raw(proxy.port) as c:
        c.handshake()
        c.request(1, path="/echo", extra=[("cookie", "a=1"), ("cookie", "b=2")])
        status, _, body = c.response(1)
    assert status == 200
    sent = [v for k, v in json.loads(body)["headers"] if k.lower() == "cookie"]
    assert sent == ["a=1; b=2"]


def test_local_error_response(meridian):
    # no healthy upstream: 503 made by meridian, on the stream
    m = meridian.start(H2C + simple_config(["127.0.0.1:1"]))
    with H2Raw(m.port) as c:
        c.handshake()
        c.request(1)
        status, h, body = c.response(1)
    assert status in (502, 503)
    assert int(h["content-length"]) == len(body)


def test_body_too_large_413(meridian, backend):
    m = meridian.start(H2C + simple_config([backend.address], extra="limits: {max_body_bytes: 1000}\n"))
    with H2Raw(m.port) as c:
        c.handshake()
        c.request(1, method="POST", path="/echo", extra=[("content-length", "5000")], end_stream=False)
        status, _, _ = c.response(1)
        assert status == 413
        c.request(3, method="POST", path="/echo", end_stream=False)
        c.send_frame(DATA, 0, 3, b"x" * 1500)
        status, _, _ = c.response(3)
        assert status == 413
        c.request(5)
        status, _, _ = c.response(5)
        assert status == 200      # the connection lives on


def _sample_rss(m, stop, samples):
    while not stop.is_set():
        try:
            samples.append(m.rss_kb())
        except (OSError, RuntimeError):
            return
        time.sleep(0.05)


def _warm_up(port):
    for _ in range(2):
        curl(port, "/?size=%d" % (4 * MiB))


@need_curl
def test_download_100mib_bounded_memory(proxy):
    _warm_up(proxy.port)
    base = proxy.rss_kb()
    samples, stop = [], threading.Event()
    t = threading.Thread(target=_sample_rss, args=(proxy, stop, samples))
    t.start()
    try:
        out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                              "--limit-rate", "200M", "http://127.0.0.1:%d/?size=%d" % (proxy.port, BIG)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120 * SLOW)
    finally:
        stop.set()
        t.join()
    assert out.stdout.decode() == "200 %d" % BIG, out
    growth = max(samples) - base
    assert growth < 16 * 1024, "RSS grew by %d KiB downloading 100 MiB over h2" % growth


@need_curl
def test_upload_100mib_bounded_memory(proxy):
    _warm_up(proxy.port)
    base = proxy.rss_kb()
    samples, stop = [], threading.Event()
    t = threading.Thread(target=_sample_rss, args=(proxy, stop, samples))
    t.start()
    block = os.urandom(256 * 1024)
    try:
        p = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "-X", "POST", "-T", "-",
                              "http://127.0.0.1:%d/echo" % proxy.port],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(BIG // len(block)):
            p.stdin.write(block)
        p.stdin.close()
        body = p.stdout.read()
        p.wait(60 * SLOW)
    finally:
        stop.set()
        t.join()
    j = json.loads(body)
    assert j["body_bytes"] == BIG
    growth = max(samples) - base
    assert growth < 16 * 1024, "RSS grew by %d KiB uploading 100 MiB over h2" % growth


@need_h2load
def test_h2load_no_failures(proxy):
    out = subprocess.run(["h2load", "-n", "20000", "-c", "10", "-m", "10", "http://127.0.0.1:%d/" % proxy.port],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120 * SLOW)
    text = out.stdout.decode()
    assert "20000 succeeded, 0 failed, 0 errored, 0 timeout" in text, text
    assert "status codes: 20000 2xx" in text, text


def test_concurrent_streams_reach_both_upstreams(meridian, backends):
    b1, b2 = backends.start("b1"), backends.start("b2")
    m = meridian.start(H2C + simple_config([b1.address, b2.address], balance="round_robin"))
    with H2Raw(m.port, timeout=10 * SLOW) as c:
        c.handshake()
        ids = [1 + 2 * i for i in range(40)]
        for sid in ids:
            c.request(sid, path="/echo?delay=100")
        seen = {}
        for sid in ids:
            status, h, _ = c.response(sid)
            assert status == 200
            seen[h["x-backend"]] = seen.get(h["x-backend"], 0) + 1
    assert set(seen) == {"b1", "b2"}, seen


def test_http1_on_same_listener(proxy):
    r = proxy.request("GET", "/echo")
    assert r.status == 200
    assert r.header("X-Meridian-Region") == "r1"
    with H2Raw(proxy.port) as c:   # and h2 right after
        c.handshake()
        c.request(1)
        assert c.response(1)[0] == 200


def test_h1_listener_without_h2c_rejects_preface(meridian, backend):
    m = meridian.start(simple_config([backend.address]))
    data = m.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", timeout=2.0)
    assert data.startswith(b"HTTP/1.1 400")


def test_graceful_shutdown_sends_goaway(proxy):
    with H2Raw(proxy.port, timeout=10 * SLOW) as c:
        c.handshake()
        c.request(1, path="/?delay=500")
        time.sleep(0.1)
        proxy.signal(__import__("signal").SIGTERM)
        status, _, _ = c.response(1)   # the stream in flight completes
        assert status == 200
        g = c.expect_goaway()
        assert getattr(g, "error_code", 0) in (0, None)
    proxy.proc.wait(10 * SLOW)
    assert proxy.proc.returncode == 0
    proxy.stopped_by_test = True
    proxy.stderr_file.close()


def test_client_reset_and_disconnect_mid_response(proxy):
    """RST_STREAM from the client while the response streams, then a vanished
    client with streams open: meridian frees them and keeps serving."""
    import struct
    from h2raw import RST_STREAM, CANCEL
    with H2Raw(proxy.port, timeout=10 * SLOW) as c:
        c.handshake()
        c.request(1, path="/?size=%d" % (50 * MiB))
        c.expect(lambda f: f.type == DATA and f.sid == 1)
        c.send_frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL))
        c.request(3, path="/echo")
        assert c.response(3)[0] == 200
    c = H2Raw(proxy.port)
    c.handshake()
    for sid in (1, 3, 5):
        c.request(sid, path="/?size=%d" % (8 * MiB))
    c.expect(lambda f: f.type == DATA)
    c.close()
    time.sleep(0.3)
    with H2Raw(proxy.port) as c2:
        c2.handshake()
        c2.request(1)
        assert c2.response(1)[0] == 200


def test_idle_connection_goaway(meridian, backend):
    m = meridian.start(H2C + "timeouts: {idle: 1s, shutdown: 5s}\n" + simple_config([backend.address]))
    with H2Raw(m.port, timeout=10 * SLOW) as c:
        c.handshake()
        c.request(1)
        assert c.response(1)[0] == 200
        t0 = time.monotonic()
        g = c.expect_goaway(timeout=5 * SLOW)
        assert getattr(g, "error_code", 0) in (0, None)
        assert time.monotonic() - t0 >= 0.8
        assert c.expect(lambda f: False, timeout=3 * SLOW) is None and c.closed
