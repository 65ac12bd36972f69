"""Request and response bodies: framing, integrity, and streaming (bounded memory)."""
import http.client
import os
import random
import threading
import time

import pytest

from conftest import SLOW, fnv1a64, simple_config

MiB = 1 << 20
BLOCK = 256 * 1024
BIG = 100 * MiB


@pytest.fixture
def proxy(meridian, backend):
    return meridian.start(simple_config([backend.address]))


@pytest.fixture(scope="module")
def one_mib():
    return random.Random(7).randbytes(MiB)


@pytest.fixture(scope="module")
def one_mib_fnv(one_mib):
    return "%016x" % fnv1a64(one_mib)


def chunked(data, sizes):
    out = bytearray()
    pos = 0
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        i += 1
        part = data[pos:pos + n]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
        pos += n
    out += b"0\r\n\r\n"
    return bytes(out)


def test_post_1mib_content_length(proxy, one_mib, one_mib_fnv):
    with proxy.conn() as c:
        r = c.request("POST", "/echo", body=one_mib)
        assert r.status == 200
        j = r.json()
        assert j["body_bytes"] == MiB
        assert j["body_fnv"] == one_mib_fnv


def test_post_1mib_chunked(proxy, one_mib, one_mib_fnv):
    with proxy.conn() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked(one_mib, [1, 4096, 65536, 17, 100000]))
        r = c.response()
        assert r.status == 200
        j = r.json()
        assert j["body_bytes"] == MiB
        assert j["body_fnv"] == one_mib_fnv
        # the connection stays in sync after a chunked body
        r2 = c.request("POST", "/echo", body=b"abc")
        assert r2.json()["body_bytes"] == 3
        assert r2.json()["body_fnv"] == "%016x" % fnv1a64(b"abc")


def test_chunked_with_extensions_and_trailers(proxy):
    body = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    with proxy.conn() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        r = c.response()
        assert r.status == 200
        assert r.json()["body_bytes"] == 11
        assert r.json()["body_fnv"] == "%016x" % fnv1a64(b"hello world")
        r2 = c.request("GET", "/echo")
        assert r2.status == 200


def test_post_via_http_client_chunked_generator(proxy, one_mib, one_mib_fnv):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30 * SLOW)
    try:
        def gen():
            for i in range(0, MiB, 65536):
                yield one_mib[i:i + 65536]

        conn.request("POST", "/echo", body=gen(), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        j = __import__("json").loads(resp.read())
        assert resp.status == 200
        assert j["body_bytes"] == MiB and j["body_fnv"] == one_mib_fnv
    finally:
        conn.close()


def test_empty_post_bodies(proxy):
    with proxy.conn() as c:
        r = c.request("POST", "/echo", headers=[("Content-Length", "0")])
        assert r.json()["body_bytes"] == 0
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        r = c.response()
        assert r.status == 200 and r.json()["body_bytes"] == 0


@pytest.mark.parametrize("chunked_resp", [False, True])
def test_response_1mib(proxy, chunked_resp):
    with proxy.conn() as c:
        path = "/?size=%d%s" % (MiB, "&chunked=1" if chunked_resp else "")
        r = c.request("GET", path)
        assert r.status == 200
        assert len(r.body) == MiB
        assert r.body == b"x" * MiB
        if not chunked_resp:
            assert r.header("Content-Length") == str(MiB)
        r2 = c.request("GET", "/echo")
        assert r2.status == 200


def _sample_rss(m, stop, samples):
    while not stop.is_set():
        try:
            samples.append(m.rss_kb())
        except (OSError, RuntimeError):
            return
        time.sleep(0.05)


# ASan keeps freed memory in a quarantine (256 MiB by default) which would
# look like growth; the RSS tests shrink it (no effect on normal builds).
RSS_ENV = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8").lstrip(":")}


def _warm_up(m):
    with m.conn() as c:
        for _ in range(3):
            r = c.request("POST", "/echo", body=b"w" * (4 * MiB))
            assert r.status == 200
            r = c.request("GET", "/?size=%d" % (4 * MiB))
            assert len(r.body) == 4 * MiB


def test_upload_100mib_streams_with_bounded_memory(meridian, backend):
    m = meridian.start(simple_config([backend.address], extra="limits: {max_body_bytes: 209715200}\n"),
                       env=RSS_ENV)
    _warm_up(m)
    base = m.rss_kb()
    samples = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(m, stop, samples))
    sampler.start()
    block = os.urandom(BLOCK)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=60 * SLOW)

        def gen():
            for _ in range(BIG // BLOCK):
                yield block

        conn.request("POST", "/echo", body=gen(), headers={"Content-Length": str(BIG)})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
    finally:
        stop.set()
        sampler.join()
    assert resp.status == 200, body
    j = __import__("json").loads(body)
    assert j["body_bytes"] == BIG
    assert len(samples) >= 3
    growth = max(samples) - base
    assert growth < 8 * 1024, "RSS grew by %d KiB while uploading 100 MiB (base %d KiB)" % (growth, base)


def test_download_100mib_streams_with_bounded_memory(meridian, backend):
    m = meridian.start(simple_config([backend.address]), env=RSS_ENV)
    _warm_up(m)
    base = m.rss_kb()
    samples = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(m, stop, samples))
    sampler.start()
    got = 0
    try:
        conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=60 * SLOW)
        conn.request("GET", "/?size=%d" % BIG)
        resp = conn.getresponse()
        status = resp.status
        while True:
            b = resp.read(BLOCK)
            if not b:
                break
            got += len(b)
            # a reader slower than the backend: meridian must hold the
            # upstream back rather than buffer (and the transfer lasts long
            # enough to be sampled)
            time.sleep(0.002)
        conn.close()
    finally:
        stop.set()
        sampler.join()
    assert status == 200
    assert got == BIG
    assert len(samples) >= 3
    growth = max(samples) - base
    assert growth < 8 * 1024, "RSS grew by %d KiB while downloading 100 MiB (base %d KiB)" % (growth, base)


def test_slow_reader_download_does_not_buffer_whole_body(meridian, backend):
    """A client that does not read: meridian must apply back-pressure to the
    upstream rather than buffer the response (32 MiB here)."""
    m = meridian.start(simple_config([backend.address]), env=RSS_ENV)
    _warm_up(m)
    base = m.rss_kb()
    with m.conn() as c:
        c.send(b"GET /?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (32 * MiB))
        time.sleep(1.5 * SLOW)          # read nothing meanwhile
        growth = m.rss_kb() - base
        assert growth < 8 * 1024, "RSS grew by %d KiB with a stalled 32 MiB download" % growth
        r = c.response(discard_body=True)
        assert r.status == 200 and r.body_len == 32 * MiB
