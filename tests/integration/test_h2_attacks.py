"""HTTP/2 attacks on the whole process (issue 11), over h2c and over TLS:
exact byte sequences that aborted meridian, fatal session errors that must end
with a GOAWAY, floods (rapid reset, CONTINUATION) that must stay bounded while
other connections are served, and a header block split into CONTINUATIONs at
every read boundary that must still be served. Every test ends by checking that
the process is alive and answers a normal request on a new connection. The
frame client is tests/integration/h2conformance/h2raw.py."""
import os
import struct
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "h2conformance"))

from conftest import SLOW, free_port, simple_config, wait_for  # noqa: E402
from h2raw import (CONTINUATION, COMPRESSION_ERROR, CANCEL, END_HEADERS, END_STREAM,  # noqa: E402
                   ENHANCE_YOUR_CALM, GOAWAY, HEADERS, NO_ERROR, PING, PREFACE, PROTOCOL_ERROR, RST_STREAM,
                   SETTINGS, Closed, H2Raw, frame, settings)

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
    import socket
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
    import hpack
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
