"""HTTP/2 attacks on the whole process (issue 11), over h2c and over TLS:
exact byte sequences that aborted meridian, fatal session errors that must end
with a GOAWAY, floods (rapid reset, CONTINUATION) that must stay bounded while
other connections are served, and a header block split into CONTINUATIONs at
every read boundary that must still be served. Every test ends by checking that
the process is alive and answers a normal request on a new connection. The
frame client is tests/integration/h2conformance/h2raw.py."""
import os
import socket
import struct
import subprocess
import sys
import time

import hpack
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "h2conformance"))

from conftest import SLOW, free_port, simple_config, wait_for  # noqa: E402
from h2raw import (CONTINUATION, COMPRESSION_ERROR, CANCEL, END_HEADERS, END_STREAM,  # noqa: E402
                   ENHANCE_YOUR_CALM, GOAWAY, HEADERS, INTERNAL_ERROR, PING, PROTOCOL_ERROR, RST_STREAM, SETTINGS,
                   Closed, H2Raw, frame)

TRANSPORTS = ["h2c", "tls"]

# the request pseudo-fields from the static table only (no dynamic table
# entries): :method GET, :scheme http, :path /, :authority "test" (literal
# without indexing, name index 1)
PSEUDO = b"\x82\x86\x84\x01\x04test"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("h2attacks"))
    key, crt = os.path.join(d, "a.key"), os.path.join(d, "a.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=h2attacks.test"],
                   check=True, capture_output=True)
    return crt, key


class Proxy:
    """One meridian with an h2c listener and a TLS (ALPN h2) listener."""

    def __init__(self, m, tls_port):
        self.m, self.ports = m, {"h2c": m.port, "tls": tls_port}

    def conn(self, transport, handshake=True, **kw):
        kw.setdefault("timeout", 5.0 * SLOW)
        c = H2Raw(self.ports[transport], tls=transport == "tls", **kw)
        if handshake:
            c.handshake()
        return c

    def alive(self):
        return self.m.alive()

    def served(self, transport):
        """The process is alive and serves a normal GET on a new connection."""
        assert self.alive(), "meridian died:\n" + self.m.stderr()[-3000:]
        with self.conn(transport) as c:
            c.request(1, scheme="https" if transport == "tls" else "http")
            status, _, _ = c.response(1)
            assert status == 200, status
        return True


@pytest.fixture
def proxy(meridian, backend, cert):
    tls_port = free_port()
    conf = ('listeners:\n'
            '  - {address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}\n'
            '  - address: "127.0.0.1:%d"\n'
            '    tls:\n      certificates:\n        - {cert: %s, key: %s}\n'
            '    protocols: [h2, http1]\n' % (tls_port, cert[0], cert[1]))
    m = meridian.start(conf + simple_config([backend.address]))
    wait_for(lambda: _port_open(tls_port), 5.0 * SLOW)
    return Proxy(m, tls_port)


def _port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def died_within(p, seconds):
    """Waits up to seconds for the process to die; True when it did."""
    return wait_for(lambda: not p.alive(), seconds)


def conn_error(c, code, timeout=None):
    """A GOAWAY with this code arrives before the connection closes."""
    g = c.expect_goaway(timeout)
    assert not isinstance(g, Closed), "connection closed without GOAWAY(%d); frames %r" % (code, c.frames[-5:])
    assert g.error_code == code, g
    return g


# ---- the two crashes of issue 11 ----

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_crash_partial_hpack_value_after_rejected_stream(proxy, transport):
    """HEADERS (END_STREAM, no END_HEADERS) with a connection-specific field,
    then a CONTINUATION holding the first 1,000 bytes of a 16,000-byte
    literal value, then 2.5 s of silence and a close: the HPACK inflater's
    buffer for the value is live in a large nghttp2 block on a connection
    without streams; trim() used to drop its pages and the session's
    deletion then aborted the process (rcbuf->ref > 0)."""
    c = proxy.conn(transport)
    c.send_frame(HEADERS, END_STREAM, 1, PSEUDO + b"\x00\x0aconnection\x01x")
    # literal without indexing, new name "x-big", value length 16,000
    # (0x7f then 15,873 as 0x81 0x7c), 1,000 bytes of it
    c.send_frame(CONTINUATION, 0, 1, b"\x00\x05x-big\x7f\x81\x7c" + b"a" * 1000)
    time.sleep(2.5)
    c.close()
    assert not died_within(proxy, 3.0 * SLOW), "meridian died:\n" + proxy.m.stderr()[-3000:]
    assert proxy.served(transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_crash_hpack_indexed_bomb(proxy, transport):
    """Stream 1 puts x-bomb: a x 4000 (Huffman, incremental indexing) into
    the HPACK dynamic table; stream 3 references it five times (~20 KB
    decoded, over max_header_bytes): 431, the connection lives on, and the
    dynamic table entry (a large nghttp2 block) survives the idle trim."""
    scheme = "https" if transport == "tls" else "http"
    pseudo = PSEUDO if scheme == "http" else b"\x82\x87\x84\x01\x04test"
    c = proxy.conn(transport)
    bomb = hpack.Encoder().encode([("x-bomb", "a" * 4000)], huffman=True)
    assert bomb[0] & 0xC0 == 0x40  # literal with incremental indexing
    c.send_frame(HEADERS, END_STREAM | END_HEADERS, 1, pseudo + bomb)
    status, _, _ = c.response(1)
    assert status == 200
    c.send_frame(HEADERS, END_STREAM | END_HEADERS, 3, pseudo + b"\xbe" * 5)
    f = c.expect(lambda f: f.sid in (0, 3) and f.type in (HEADERS, RST_STREAM, GOAWAY))
    assert f is not None
    time.sleep(2.5)
    # the connection (and its dynamic table) is still usable
    c.send_frame(HEADERS, END_STREAM | END_HEADERS, 5, pseudo + b"\xbe")
    status, h, _ = c.response(5)
    assert status == 200
    time.sleep(1.5)
    c.close()
    assert not died_within(proxy, 3.0 * SLOW), "meridian died:\n" + proxy.m.stderr()[-3000:]
    assert proxy.served(transport)


# ---- fatal session errors: a GOAWAY with the right code, then the session is left alone ----

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_goaway_bad_client_magic(proxy, transport):
    """nghttp2 fails the session (NGHTTP2_ERR_BAD_CLIENT_MAGIC, fatal):
    meridian writes SETTINGS + GOAWAY(PROTOCOL_ERROR) itself and closes."""
    c = proxy.conn(transport, handshake=False, preface=False)
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(SETTINGS, 0, 0))
    conn_error(c, PROTOCOL_ERROR)
    assert c.frames[0].type == SETTINGS  # the server preface comes first
    assert c.expect(lambda f: False, timeout=3.0 * SLOW) is None and c.closed
    c.close()
    assert proxy.served(transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_goaway_callback_failure_with_stream_in_flight(proxy, transport):
    """A HEADERS on a skipped (lower) stream id fails the session from a
    callback (NGHTTP2_ERR_CALLBACK_FAILURE, fatal): GOAWAY(PROTOCOL_ERROR)
    whose last stream id is the highest one seen; the request still in
    flight on stream 5 (a delayed upstream answer) is dropped and its
    response, arriving later, touches nothing (ASan)."""
    c = proxy.conn(transport)
    c.request(5, path="/?delay=300")
    time.sleep(0.1)
    c.request(3)
    g = conn_error(c, PROTOCOL_ERROR)
    assert struct.unpack(">I", g.payload[:4])[0] & 0x7FFFFFFF == 5
    assert 5 not in c.streams or not c.streams[5][2]
    time.sleep(0.6 * SLOW)  # the upstream answers stream 5 meanwhile
    c.close()
    assert proxy.served(transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_goaway_hpack_error(proxy, transport):
    """An HPACK decoding error (index beyond both tables): COMPRESSION_ERROR."""
    c = proxy.conn(transport)
    c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x86\x84\xc6")
    conn_error(c, COMPRESSION_ERROR)
    c.close()
    assert proxy.served(transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_goaway_ping_flood(proxy, transport):
    """Over 1,000 PINGs in a second (the callback's flood bound, a fatal
    callback failure): GOAWAY(ENHANCE_YOUR_CALM), not a bare close."""
    c = proxy.conn(transport)
    c.send(frame(PING, 0, 0, b"abcdefgh") * 1500)
    conn_error(c, ENHANCE_YOUR_CALM, timeout=10.0 * SLOW)
    c.close()
    assert proxy.served(transport)


# ---- floods: bounded, GOAWAY, other connections served meanwhile ----

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rapid_reset_other_connections_served(proxy, transport):
    """HEADERS + RST_STREAM pairs as fast as the socket takes them
    (CVE-2023-44487; test_h2_conformance.py has the h2c GOAWAY check): the
    connection ends with a GOAWAY (nghttp2's stream_reset_rate_limit sends
    INTERNAL_ERROR) while a second connection keeps getting answers, and
    memory stays bounded."""
    other = proxy.conn(transport)
    rss0 = proxy.m.rss_kb()
    c = proxy.conn(transport)
    block = c.header_block([(":method", "GET"), (":scheme", "http"), (":path", "/?delay=50"),
                            (":authority", "test")])
    sid, sent, g = 1, 0, None
    deadline = time.monotonic() + 20.0 * SLOW
    while not c.closed and time.monotonic() < deadline and sid < 200000:
        burst = b"".join(frame(HEADERS, END_HEADERS | END_STREAM, s, block) +
                         frame(RST_STREAM, 0, s, struct.pack(">I", CANCEL)) for s in range(sid, sid + 200, 2))
        c.send(burst)
        sid += 200
        sent += 100
        if sent % 1000 == 0:
            g = c.expect(lambda f: f.type == GOAWAY, timeout=0.01)
            if g is not None:
                break
            # the other connection is still served during the flood
            osid = 2 * (sent // 1000) - 1
            other.request(osid)
            assert other.response(osid, timeout=10.0 * SLOW)[0] == 200
    if g is None:
        g = c.expect_goaway(timeout=10.0 * SLOW)
    assert not isinstance(g, Closed), "closed without GOAWAY after %d resets" % sent
    assert g.error_code in (INTERNAL_ERROR, ENHANCE_YOUR_CALM), g
    c.close()
    other.request(1001)
    assert other.response(1001, timeout=10.0 * SLOW)[0] == 200
    other.close()
    assert proxy.m.rss_kb() - rss0 < 64 * 1024, "RSS grew by %d KB" % (proxy.m.rss_kb() - rss0)
    assert proxy.served(transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_continuation_flood_bounded(proxy, transport):
    """HEADERS without END_HEADERS, then CONTINUATIONs without end
    (CVE-2024-27316 class): the ninth CONTINUATION of a header block ends
    the connection with GOAWAY(ENHANCE_YOUR_CALM) (nghttp2's
    max_continuations, a fatal error), well before the header list limit;
    memory stays bounded, nothing hangs, other connections are served."""
    other = proxy.conn(transport)
    rss0 = proxy.m.rss_kb()
    c = proxy.conn(transport)
    c.send_frame(HEADERS, END_STREAM, 1, PSEUDO)
    # small frames: the limit is on their number, not on the bytes
    for i in range(2000):
        c.send_frame(CONTINUATION, 0, 1, b"\x00\x01a\x01b")
        if c.closed:
            break
    conn_error(c, ENHANCE_YOUR_CALM, timeout=10.0 * SLOW)
    assert c.expect(lambda f: False, timeout=3.0 * SLOW) is None and c.closed
    c.close()
    other.request(1)
    assert other.response(1)[0] == 200
    other.close()
    assert proxy.m.rss_kb() - rss0 < 16 * 1024
    assert proxy.served(transport)


# ---- a legitimate header block split into CONTINUATIONs at every read ----

def _send_slowly(c, data, pause):
    for i in range(len(data)):
        c.send(data[i:i + 1])
        time.sleep(pause)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_continuations_split_at_every_read_served(proxy, transport):
    """A header block of normal size in HEADERS + 8 CONTINUATIONs (the most
    a block may have) whose frame headers arrive byte by byte, each byte its
    own read: served. Debian's nghttp2 1.52.0-1+deb12u3 counts a
    CONTINUATION once per read that holds part of its frame header, which
    would cut this client off; meridian hands nghttp2 whole frame headers."""
    c = proxy.conn(transport)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    scheme = "https" if transport == "tls" else "http"
    block = c.header_block([(":method", "GET"), (":scheme", scheme), (":path", "/echo"), (":authority", "test")] +
                           [("x-h%d" % i, "value-%d" % i * 3) for i in range(12)])
    parts = [block[i * len(block) // 9:(i + 1) * len(block) // 9] for i in range(9)]
    for i, part in enumerate(parts):
        ftype = HEADERS if i == 0 else CONTINUATION
        flags = (END_STREAM if i == 0 else 0) | (END_HEADERS if i == 8 else 0)
        f = frame(ftype, flags, 1, part)
        _send_slowly(c, f[:9], 0.005)  # the frame header, one read per byte
        time.sleep(0.005)
        c.send(f[9:])
        time.sleep(0.005)
    status, _, body = c.response(1, timeout=10.0 * SLOW)
    assert status == 200
    assert b"x-h11" in body.lower()
    # and a normal request on the same connection afterwards
    c.request(3, scheme=scheme)
    assert c.response(3)[0] == 200
    c.close()
    assert proxy.served(transport)
