"""The h2spec catalogue (github.com/summerwind/h2spec: generic/, http2/,
hpack/), one test per h2spec case, run against meridian the way h2spec runs:
over an h2c prior-knowledge listener and over TLS with ALPN h2 (h2spec -t -k).

Every case is written from h2spec's description of it: the same frames in the
same order, the same request (GET / with :authority host:port, POST with a
DATA body where h2spec uses one, its 4000-byte x-dummy headers), the same
client SETTINGS (INITIAL_WINDOW_SIZE 65535) and window handling (a
WINDOW_UPDATE only once a window is used up), and the same acceptance rule
with h2spec's 2 s timeout per read (times SLOW under sanitizers):

  connection error  GOAWAY with one of the codes, or the connection closed
                    (without a GOAWAY; a GOAWAY with another code fails
                    here, which is stricter than h2spec);
  stream error      RST_STREAM or GOAWAY with one of the codes, or closed;
                    other frames (a response, a RST_STREAM with another code)
                    are read past, as h2spec does;
  connection close  the connection closed (EOF or reset) in time;
  a frame type      the next frame of that type arrives in time (HEADERS on
                    the request's stream, PING with ACK and the same data);
  DATA length 1     the first DATA frame carries exactly one octet.

A timeout, or a connection closed while a frame was expected, fails.

test_h2_conformance.py checks many of the same rules with its own frames; it
is kept as it is. This file covers each h2spec case itself, so that the list
below is the whole catalogue (148 cases) and every entry is a test here:
  generic/1 (1), generic/2 (5), generic/3.1 (3), generic/3.2 (3),
  generic/3.3 (5), generic/3.4 (1), generic/3.5 (1), generic/3.7 (1),
  generic/3.8 (1), generic/3.9 (2), generic/3.10 (2), generic/4 (4),
  generic/5 (15);
  http2/3.5 (2), http2/4.1 (3), http2/4.2 (3), http2/4.3 (3), http2/5.1 (13),
  http2/5.1.1 (3), http2/5.1.2 (1), http2/5.3.1 (2), http2/5.4.1 (2, the
  second strict), http2/5.5 (2), http2/6.1 (3), http2/6.2 (4), http2/6.3 (3,
  the third strict), http2/6.4 (3), http2/6.5 (3), http2/6.5.2 (5),
  http2/6.5.3 (2), http2/6.7 (4), http2/6.8 (1), http2/6.9 (3),
  http2/6.9.1 (3), http2/6.9.2 (3), http2/6.10 (6), http2/7 (2), http2/8.1 (1),
  http2/8.1.2 (1), http2/8.1.2.1 (4), http2/8.1.2.2 (2), http2/8.1.2.3 (7),
  http2/8.1.2.6 (2), http2/8.2 (1);
  hpack/2.3.3 (1), hpack/4.2 (1), hpack/5.2 (3), hpack/6.1 (1), hpack/6.3 (1).
Where h2spec releases differ in a case's details (http2/6.7/4, http2/6.10/6,
http2/8.1.2.3/7) the extra variant is a test too (ids ending in "b").
"""
import os
import struct
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "h2conformance"))

from conftest import SLOW, Backend, _MeridianFactory, simple_config  # noqa: E402
from h2raw import (  # noqa: E402
    ACK, CANCEL, COMPRESSION_ERROR, CONTINUATION, DATA, END_HEADERS, END_STREAM, FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR, GOAWAY, HEADERS, NO_ERROR, PADDED, PING, PREFACE, PRIO, PRIORITY, PROTOCOL_ERROR,
    PUSH_PROMISE, REFUSED_STREAM, RST_STREAM, S_ENABLE_PUSH, S_HEADER_TABLE_SIZE, S_INITIAL_WINDOW_SIZE,
    S_MAX_CONCURRENT_STREAMS, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE, SETTINGS, STREAM_CLOSED, WINDOW_UPDATE,
    H2Raw, settings)

TIMEOUT = 2.0 * SLOW          # h2spec --timeout default: 2 s per read
MAX_HEADER_LEN = 4000         # h2spec --max-header-length default
DEFAULT_WINDOW = 65535
CLOSED, TIMEOUT_EV = "connection closed", "timeout"


# --------------------------------------------------------------------------
# targets: one meridian per transport for the whole module
# --------------------------------------------------------------------------

class Target:
    def __init__(self, port, tls):
        self.port, self.tls = port, tls


def _cert(d):
    key, crt = os.path.join(d, "h2spec.key"), os.path.join(d, "h2spec.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=h2spec.test",
                    "-addext", "subjectAltName=DNS:h2spec.test"], check=True, capture_output=True)
    return crt, key


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    d = tmp_path_factory.mktemp("h2spec")
    # a body of at least 5 octets for GET /, so that the flow-control cases
    # h2spec skips for shorter bodies run (6.5.3/1, 6.9.1/1, 6.9.2/1-2)
    backend = Backend("h2spec-backend")
    factory = _MeridianFactory(d)
    try:
        conf = simple_config([backend.address])
        h2c = factory.start('listeners: [{address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}]\n' + conf)
        crt, key = _cert(str(d))
        tls = factory.start('listeners:\n  - address: "127.0.0.1:@PORT@"\n    tls:\n      certificates:\n'
                            "        - {cert: %s, key: %s}\n    protocols: [h2, http1]\n" % (crt, key) + conf)
        yield {"h2c": Target(h2c.port, False), "tls": Target(tls.port, True)}
    finally:
        try:
            factory.teardown()
        finally:
            backend.stop()


# --------------------------------------------------------------------------
# h2spec's connection: its handshake, frame writers, window handling
# --------------------------------------------------------------------------

class SpecConn(H2Raw):
    def __init__(self, target):
        super().__init__(target.port, preface=False, timeout=TIMEOUT, tls=target.tls, window_updates=False)
        self.target = target
        self.settings = {}
        self.window = {0: DEFAULT_WINDOW}

    # h2spec Conn.Handshake: preface, SETTINGS(INITIAL_WINDOW_SIZE=65535),
    # then both the server's SETTINGS and the ACK of ours
    def handshake(self):
        self.send(PREFACE)
        self.write_settings((S_INITIAL_WINDOW_SIZE, DEFAULT_WINDOW))
        local = remote = False
        while not (local and remote):
            f = H2Raw.recv_frame(self, TIMEOUT)
            assert f is not None, "handshake: %s" % (CLOSED if self.closed else TIMEOUT_EV)
            if f.type != SETTINGS:
                continue
            if f.flags & ACK:
                local = True
            else:
                remote = True
                p = f.payload
                for i in range(0, len(p) - 5, 6):
                    k, v = struct.unpack(">HI", p[i:i + 6])
                    self.settings[k] = v
        return self

    def recv_frame(self, timeout=None):
        f = H2Raw.recv_frame(self, timeout)
        if f is not None and f.type == DATA:
            # h2spec updateWindowSize: a WINDOW_UPDATE only when a window is used up
            n = len(f.payload)  # the frame length, padding included
            for sid in (f.sid, 0):
                self.window.setdefault(sid, DEFAULT_WINDOW)
                self.window[sid] -= n
                if self.window[sid] <= 0:
                    incr = DEFAULT_WINDOW - self.window[sid]
                    self.write_window_update(sid, incr)
                    self.window[sid] += incr
        return f

    def max_frame_size(self):
        return self.settings.get(S_MAX_FRAME_SIZE, 16384)

    def common_headers(self, method="GET"):
        scheme = "https" if self.target.tls else "http"
        return [(":method", method), (":scheme", scheme), (":path", "/"),
                (":authority", "127.0.0.1:%d" % self.target.port)]

    def encode(self, headers):
        return self.enc.encode(headers)

    # frame writers (golang.org/x/net/http2 Framer equivalents)
    def write_headers(self, sid, block, end_stream, end_headers=True, prio=None, pad_len=0):
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        payload = block
        if prio is not None:
            dep, excl, weight = prio
            flags |= PRIO
            payload = struct.pack(">IB", dep | (0x80000000 if excl else 0), weight) + payload
        if pad_len:
            flags |= PADDED
            payload = bytes([pad_len]) + payload + b"\0" * pad_len
        self.send_frame(HEADERS, flags, sid, payload)

    def write_data(self, sid, end_stream, data, pad=None):
        flags = END_STREAM if end_stream else 0
        if pad is not None:
            flags |= PADDED
            data = bytes([len(pad)]) + data + pad
        self.send_frame(DATA, flags, sid, data)

    def write_priority(self, sid, dep=0, excl=False, weight=255):
        self.send_frame(PRIORITY, 0, sid, struct.pack(">IB", dep | (0x80000000 if excl else 0), weight))

    def write_rst(self, sid, code):
        self.send_frame(RST_STREAM, 0, sid, struct.pack(">I", code))

    def write_settings(self, *pairs):
        self.send_frame(SETTINGS, 0, 0, settings(*pairs))

    def write_ping(self, ack, data=b"\0" * 8):
        self.send_frame(PING, ACK if ack else 0, 0, data)

    def write_goaway(self, last, code, debug=b""):
        self.send_frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)

    def write_window_update(self, sid, incr):
        self.send_frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", incr))

    def write_continuation(self, sid, end_headers, block):
        self.send_frame(CONTINUATION, END_HEADERS if end_headers else 0, sid, block)

    def get(self, sid=1, end_stream=True, method="GET", extra=(), **kw):
        self.write_headers(sid, self.encode(self.common_headers(method) + list(extra)), end_stream, **kw)


def dummy_headers(n):
    return [("x-dummy%d" % i, "x" * MAX_HEADER_LEN) for i in range(n)]


# --------------------------------------------------------------------------
# h2spec's verifiers (spec/verifier.go) as assertions
# --------------------------------------------------------------------------

def events(c):
    """h2spec's WaitEvent loop: frames, then CLOSED or TIMEOUT_EV once."""
    while True:
        f = c.recv_frame(TIMEOUT)
        if f is None:
            yield CLOSED if c.closed else TIMEOUT_EV
            return
        yield f


def _seen(c):
    return c.frames[-8:]


def verify_connection_error(c, *codes):
    for ev in events(c):
        if ev == CLOSED:
            return
        if ev == TIMEOUT_EV:
            pytest.fail("expected GOAWAY%r or close, got a timeout after %r" % (codes, _seen(c)))
        if ev.type == GOAWAY:
            assert ev.error_code in codes, "GOAWAY code %d, expected one of %r" % (ev.error_code, codes)
            return


def verify_stream_error(c, *codes):
    for ev in events(c):
        if ev == CLOSED:
            return
        if ev == TIMEOUT_EV:
            pytest.fail("expected RST_STREAM/GOAWAY%r or close, got a timeout after %r" % (codes, _seen(c)))
        if ev.type == GOAWAY:
            assert ev.error_code in codes, "GOAWAY code %d, expected one of %r" % (ev.error_code, codes)
            return
        if ev.type == RST_STREAM and ev.error_code in codes:
            return


def verify_connection_close(c):
    for ev in events(c):
        if ev == CLOSED:
            return
        if ev == TIMEOUT_EV:
            pytest.fail("expected the connection closed, got a timeout after %r" % (_seen(c),))


def verify_stream_close(c):
    for ev in events(c):
        if ev in (CLOSED, TIMEOUT_EV):
            pytest.fail("expected a stream end, got %s after %r" % (ev, _seen(c)))
        if ev.type in (DATA, HEADERS) and ev.flags & END_STREAM:
            return
        if ev.type == RST_STREAM and ev.error_code == NO_ERROR:
            return


def wait_type(c, ftype):
    """h2spec WaitEventByType: the next frame of that type."""
    for ev in events(c):
        if ev in (CLOSED, TIMEOUT_EV):
            pytest.fail("expected a frame of type %d, got %s after %r" % (ftype, ev, _seen(c)))
        if ev.type == ftype:
            return ev


def verify_headers_frame(c, sid):
    f = wait_type(c, HEADERS)
    assert f.sid == sid, "HEADERS on stream %d, expected %d" % (f.sid, sid)


def verify_ping_ack(c, data):
    f = wait_type(c, PING)
    assert f.flags & ACK and f.payload == data, f


def verify_ping_or_close(c, data):
    for ev in events(c):
        if ev == CLOSED:
            return
        if ev == TIMEOUT_EV:
            pytest.fail("expected PING ACK or close, got a timeout after %r" % (_seen(c),))
        if ev.type == PING:
            assert ev.flags & ACK and ev.payload == data, ev
            return


def verify_settings_ack(c):
    f = wait_type(c, SETTINGS)
    assert f.flags & ACK, f


def verify_data_length_1(c):
    f = wait_type(c, DATA)
    assert len(f.payload) == 1 and f.sid == 1, f


def server_data_length(target):
    """h2spec ServerDataLength: the body octets of GET / (h2spec skips some
    flow-control cases below 1 or 5; make sure they run)."""
    with SpecConn(target) as c:
        c.handshake()
        c.get(1)
        n = 0
        for ev in events(c):
            assert ev not in (CLOSED, TIMEOUT_EV), ev
            if ev.type == DATA:
                n += len(ev.payload)
            if ev.type in (DATA, HEADERS) and ev.flags & END_STREAM:
                return n


# --------------------------------------------------------------------------
# the catalogue
# --------------------------------------------------------------------------

CASES = []


def case(cid, desc):
    def reg(fn):
        CASES.append(pytest.param(fn, id=cid))
        fn.desc = desc
        return fn
    return reg


H2SPEC_PING = b"h2spec\0\0"

# ---- generic/1 Starting HTTP/2 ----


@case("generic/1/1", "Sends a client connection preface")
def generic_1_1(c):
    c.send(PREFACE)
    c.write_settings((S_INITIAL_WINDOW_SIZE, DEFAULT_WINDOW))
    f = c.recv_frame(TIMEOUT)
    assert f is not None and f.type == SETTINGS and not f.flags & ACK, f


# ---- generic/2 Streams and Multiplexing ----


@case("generic/2/1", "Sends a PRIORITY frame on idle stream")
def generic_2_1(c):
    c.handshake()
    c.write_priority(1)
    c.write_ping(False)
    verify_ping_ack(c, b"\0" * 8)


@case("generic/2/2", "Sends a WINDOW_UPDATE frame on half-closed (remote) stream")
def generic_2_2(c):
    c.handshake()
    c.write_settings((S_INITIAL_WINDOW_SIZE, 0))
    c.get(1)
    c.write_window_update(1, 1)
    wait_type(c, DATA)


@case("generic/2/3", "Sends a PRIORITY frame on half-closed (remote) stream")
def generic_2_3(c):
    c.handshake()
    c.write_settings((S_INITIAL_WINDOW_SIZE, 0))
    c.get(1)
    c.write_priority(1)
    c.write_window_update(1, 1)
    wait_type(c, DATA)


@case("generic/2/4", "Sends a RST_STREAM frame on half-closed (remote) stream")
def generic_2_4(c):
    c.handshake()
    c.get(1)
    c.write_rst(1, CANCEL)
    c.write_ping(False)
    verify_ping_or_close(c, b"\0" * 8)


@case("generic/2/5", "Sends a PRIORITY frame on closed stream")
def generic_2_5(c):
    c.handshake()
    c.get(1)
    verify_stream_close(c)
    c.write_priority(1)
    c.write_ping(False)
    verify_ping_ack(c, b"\0" * 8)


# ---- generic/3 Frame Definitions ----


@case("generic/3.1/1", "Sends a DATA frame")
def generic_3_1_1(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST")
    c.write_data(1, True, b"test")
    verify_headers_frame(c, 1)


@case("generic/3.1/2", "Sends multiple DATA frames")
def generic_3_1_2(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST")
    c.write_data(1, False, b"test")
    c.write_data(1, True, b"test")
    verify_headers_frame(c, 1)


@case("generic/3.1/3", "Sends a DATA frame with padding")
def generic_3_1_3(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST")
    c.write_data(1, True, b"test", pad=b"padded")
    verify_headers_frame(c, 1)


@case("generic/3.2/1", "Sends a HEADERS frame")
def generic_3_2_1(c):
    c.handshake()
    c.get(1)
    verify_headers_frame(c, 1)


@case("generic/3.2/2", "Sends a HEADERS frame with padding")
def generic_3_2_2(c):
    c.handshake()
    c.get(1, pad_len=8)
    verify_headers_frame(c, 1)


@case("generic/3.2/3", "Sends a HEADERS frame with priority")
def generic_3_2_3(c):
    c.handshake()
    c.get(1, prio=(0, False, 255))
    verify_headers_frame(c, 1)


@case("generic/3.3/1", "Sends a PRIORITY frame with priority 1")
def generic_3_3_1(c):
    c.handshake()
    c.write_priority(1, 0, False, 0)
    c.get(1)
    verify_headers_frame(c, 1)


@case("generic/3.3/2", "Sends a PRIORITY frame with priority 256")
def generic_3_3_2(c):
    c.handshake()
    c.write_priority(1, 0, False, 255)
    c.get(1)
    verify_headers_frame(c, 1)


@case("generic/3.3/3", "Sends a PRIORITY frame with stream dependency")
def generic_3_3_3(c):
    c.handshake()
    c.write_priority(3, 1, False, 0)
    c.get(1)
    verify_headers_frame(c, 1)


@case("generic/3.3/4", "Sends a PRIORITY frame with exclusive")
def generic_3_3_4(c):
    c.handshake()
    c.write_priority(1, 0, True, 0)
    c.get(1)
    verify_headers_frame(c, 1)


@case("generic/3.3/5", "Sends a PRIORITY frame for an idle stream, then send a HEADER frame for a lower stream ID")
def generic_3_3_5(c):
    c.handshake()
    c.write_priority(3)
    c.get(1)
    verify_headers_frame(c, 1)


@case("generic/3.4/1", "Sends a RST_STREAM frame")
def generic_3_4_1(c):
    c.handshake()
    c.get(1, end_stream=False)
    c.write_rst(1, CANCEL)
    c.write_ping(False)
    verify_ping_or_close(c, b"\0" * 8)


@case("generic/3.5/1", "Sends a SETTINGS frame")
def generic_3_5_1(c):
    c.handshake()
    c.write_settings((S_HEADER_TABLE_SIZE, 4096), (S_ENABLE_PUSH, 1), (S_MAX_CONCURRENT_STREAMS, 100),
                     (S_INITIAL_WINDOW_SIZE, 65535), (S_MAX_FRAME_SIZE, 16384), (S_MAX_HEADER_LIST_SIZE, 100))
    verify_settings_ack(c)


@case("generic/3.7/1", "Sends a PING frame")
def generic_3_7_1(c):
    c.handshake()
    c.write_ping(False, H2SPEC_PING)
    verify_ping_ack(c, H2SPEC_PING)


@case("generic/3.8/1", "Sends a GOAWAY frame")
def generic_3_8_1(c):
    c.handshake()
    c.write_goaway(0, NO_ERROR, b"h2spec")
    verify_connection_close(c)


@case("generic/3.9/1", "Sends a WINDOW_UPDATE frame with stream ID 0")
def generic_3_9_1(c):
    c.handshake()
    c.write_window_update(0, 1)
    c.write_ping(False)
    wait_type(c, PING)


@case("generic/3.9/2", "Sends a WINDOW_UPDATE frame with stream ID 1")
def generic_3_9_2(c):
    c.handshake()
    c.get(1)
    c.write_window_update(1, 1)
    wait_type(c, HEADERS)


@case("generic/3.10/1", "Sends a CONTINUATION frame")
def generic_3_10_1(c):
    c.handshake()
    block = c.encode(c.common_headers())
    c.write_headers(1, block[:5], True, end_headers=False)
    c.write_continuation(1, True, block[5:])
    verify_headers_frame(c, 1)


@case("generic/3.10/2", "Sends multiple CONTINUATION frames")
def generic_3_10_2(c):
    c.handshake()
    block = c.encode(c.common_headers())
    assert len(block) > 10
    c.write_headers(1, block[:5], True, end_headers=False)
    c.write_continuation(1, False, block[5:10])
    c.write_continuation(1, True, block[10:])
    verify_headers_frame(c, 1)


# ---- generic/4 HTTP Message Exchanges ----


@case("generic/4/1", "Sends a GET request")
def generic_4_1(c):
    c.handshake()
    c.get(1)
    verify_headers_frame(c, 1)


@case("generic/4/2", "Sends a HEAD request")
def generic_4_2(c):
    c.handshake()
    c.get(1, method="HEAD")
    verify_headers_frame(c, 1)


@case("generic/4/3", "Sends a POST request")
def generic_4_3(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST")
    c.write_data(1, True, b"test")
    verify_headers_frame(c, 1)


@case("generic/4/4", "Sends a POST request with trailers")
def generic_4_4(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST", extra=[("trailer", "x-test")])
    c.write_data(1, False, b"test")
    c.write_headers(1, c.encode([("x-test", "ok")]), True)
    verify_headers_frame(c, 1)


# ---- generic/5 HPACK: each representation appended to GET / ----

GENERIC_HPACK = [
    ("generic/5/1", "indexed header field representation", b"\xba", False),
    ("generic/5/2", "literal with incremental indexing - indexed name",
     b"\x40\x87\xb5\x05\xb1\x61\xcc\x5a\x93\x84\x9c\x48\xac\xa4", False),
    ("generic/5/3", "literal with incremental indexing - indexed name (with Huffman coding)",
     b"\x40\x0a\x75\x73\x65\x72\x2d\x61\x67\x65\x6e\x74\x06\x68\x32\x73\x70\x65\x63", False),
    ("generic/5/4", "literal with incremental indexing - new name",
     b"\x40\x06\x78\x2d\x74\x65\x73\x74\x06\x68\x32\x73\x70\x65\x63", False),
    ("generic/5/5", "literal with incremental indexing - new name (with Huffman coding)",
     b"\x40\x85\xf2\xb2\x4a\x84\xff\x84\x9c\x48\xac\xa4", False),
    ("generic/5/6", "literal without indexing - indexed name",
     b"\x00\x0a\x75\x73\x65\x72\x2d\x61\x67\x65\x6e\x74\x06\x68\x32\x73\x70\x65\x63", False),
    ("generic/5/7", "literal without indexing - indexed name (with Huffman coding)",
     b"\x00\x87\xb5\x05\xb1\x61\xcc\x5a\x93\x84\x9c\x48\xac\xa4", False),
    ("generic/5/8", "literal without indexing - new name",
     b"\x00\x06\x78\x2d\x74\x65\x73\x74\x06\x68\x32\x73\x70\x65\x63", False),
    ("generic/5/9", "literal without indexing - new name (huffman encoded)",
     b"\x00\x85\xf2\xb2\x4a\x84\xff\x84\x9c\x48\xac\xa4", False),
    ("generic/5/10", "literal never indexed - indexed name",
     b"\x10\x0a\x75\x73\x65\x72\x2d\x61\x67\x65\x6e\x74\x06\x68\x32\x73\x70\x65\x63", False),
    ("generic/5/11", "literal never indexed - indexed name (huffman encoded)",
     b"\x10\x87\xb5\x05\xb1\x61\xcc\x5a\x93\x84\x9c\x48\xac\xa4", False),
    ("generic/5/12", "literal never indexed - new name",
     b"\x10\x85\xf2\xb2\x4a\x84\xff\x84\x9c\x48\xac\xa4", False),
    ("generic/5/13", "literal never indexed - new name (huffman encoded)",
     b"\x10\x85\xf2\xb2\x4a\x84\xff\x84\x9c\x48\xac\xa4", False),
    ("generic/5/14", "dynamic table size update (0), before the fields", b"\x20", True),
    ("generic/5/15", "multiple dynamic table size updates (0 and 4096), before the fields", b"\x20\x3f\xe1\x1f", True),
]


def _generic_hpack(rep, prepend):
    def run(c):
        c.handshake()
        block = c.encode(c.common_headers())
        c.write_headers(1, rep + block if prepend else block + rep, True)
        verify_headers_frame(c, 1)
    return run


for _cid, _desc, _rep, _pre in GENERIC_HPACK:
    case(_cid, "Sends a " + _desc)(_generic_hpack(_rep, _pre))


# ---- http2/3.5 HTTP/2 Connection Preface ----


@case("http2/3.5/1", "Sends client connection preface")
def http2_3_5_1(c):
    c.send(PREFACE)
    c.write_settings((S_INITIAL_WINDOW_SIZE, DEFAULT_WINDOW))
    f = wait_type(c, SETTINGS)
    assert not f.flags & ACK, f


@case("http2/3.5/2", "Sends invalid connection preface")
def http2_3_5_2(c):
    c.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
    verify_connection_close(c)
    # h2spec's frame reader fails on bytes that are not frames (an HTTP/1
    # error response would be); only frames or nothing may come back
    assert not c.buf, bytes(c.buf[:64])


# ---- http2/4.1 Frame Format ----


@case("http2/4.1/1", "Sends a frame with unknown type")
def http2_4_1_1(c):
    c.handshake()
    c.send(b"\x00\x00\x08\x16\x00\x00\x00\x00\x00" + b"\0" * 8)
    c.write_ping(False)
    wait_type(c, PING)


@case("http2/4.1/2", "Sends a frame with undefined flag")
def http2_4_1_2(c):
    c.handshake()
    c.send(b"\x00\x00\x08\x06\x16\x00\x00\x00\x00" + b"\0" * 8)
    wait_type(c, PING)


@case("http2/4.1/3", "Sends a frame with reserved field bit")
def http2_4_1_3(c):
    c.handshake()
    c.send(b"\x00\x00\x08\x06\x16\x80\x00\x00\x00" + b"\0" * 8)
    wait_type(c, PING)


# ---- http2/4.2 Frame Size ----


@case("http2/4.2/1", "Sends a DATA frame with 2^14 octets in length")
def http2_4_2_1(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST")
    c.write_data(1, True, b"x" * c.max_frame_size())
    wait_type(c, HEADERS)


@case("http2/4.2/2", "Sends a large size DATA frame that exceeds the SETTINGS_MAX_FRAME_SIZE")
def http2_4_2_2(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST")
    c.write_data(1, True, b"x" * (c.max_frame_size() + 1))
    verify_stream_error(c, FRAME_SIZE_ERROR)


@case("http2/4.2/3", "Sends a large size HEADERS frame that exceeds the SETTINGS_MAX_FRAME_SIZE")
def http2_4_2_3(c):
    c.handshake()
    block = c.encode(c.common_headers() + dummy_headers(5))
    assert len(block) > c.max_frame_size()
    c.write_headers(1, block, True)
    verify_connection_error(c, FRAME_SIZE_ERROR)


# ---- http2/4.3 Header Compression and Decompression ----


@case("http2/4.3/1", "Sends invalid header block fragment")
def http2_4_3_1(c):
    c.handshake()
    c.send(b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x40")
    verify_connection_error(c, COMPRESSION_ERROR)


@case("http2/4.3/2", "Sends a PRIORITY frame while sending the header blocks")
def http2_4_3_2(c):
    c.handshake()
    c.get(1, end_stream=False, end_headers=False)
    c.write_priority(1)
    c.write_continuation(1, True, c.encode(dummy_headers(1)))
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/4.3/3", "Sends a HEADERS frame to another stream while sending the header blocks")
def http2_4_3_3(c):
    c.handshake()
    c.get(1, end_stream=False, end_headers=False)
    c.get(3)
    c.write_continuation(1, True, c.encode(dummy_headers(1)))
    verify_connection_error(c, PROTOCOL_ERROR)


# ---- http2/5.1 Stream States ----


@case("http2/5.1/1", "idle: Sends a DATA frame")
def http2_5_1_1(c):
    c.handshake()
    c.write_data(1, True, b"test")
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/5.1/2", "idle: Sends a RST_STREAM frame")
def http2_5_1_2(c):
    c.handshake()
    c.write_rst(1, CANCEL)
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/5.1/3", "idle: Sends a WINDOW_UPDATE frame")
def http2_5_1_3(c):
    c.handshake()
    c.write_window_update(1, 100)
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/5.1/4", "idle: Sends a CONTINUATION frame")
def http2_5_1_4(c):
    c.handshake()
    c.write_continuation(1, True, c.encode(c.common_headers()))
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/5.1/5", "half closed (remote): Sends a DATA frame")
def http2_5_1_5(c):
    c.handshake()
    c.get(1)
    c.write_data(1, True, b"test")
    verify_stream_error(c, STREAM_CLOSED)


@case("http2/5.1/6", "half closed (remote): Sends a HEADERS frame")
def http2_5_1_6(c):
    c.handshake()
    c.get(1)
    c.get(1)
    verify_stream_error(c, STREAM_CLOSED)


@case("http2/5.1/7", "half closed (remote): Sends a CONTINUATION frame")
def http2_5_1_7(c):
    c.handshake()
    block = c.encode(c.common_headers())
    c.write_headers(1, block, True)
    c.write_continuation(1, True, block)
    verify_stream_error(c, STREAM_CLOSED, PROTOCOL_ERROR)


@case("http2/5.1/8", "closed: Sends a DATA frame after sending RST_STREAM frame")
def http2_5_1_8(c):
    c.handshake()
    c.get(1, end_stream=False)
    c.write_rst(1, CANCEL)
    c.write_data(1, True, b"test")
    verify_stream_error(c, STREAM_CLOSED)


@case("http2/5.1/9", "closed: Sends a HEADERS frame after sending RST_STREAM frame")
def http2_5_1_9(c):
    c.handshake()
    c.get(1, end_stream=False)
    c.write_rst(1, CANCEL)
    c.get(1)
    verify_stream_error(c, STREAM_CLOSED)


@case("http2/5.1/10", "closed: Sends a CONTINUATION frame after sending RST_STREAM frame")
def http2_5_1_10(c):
    c.handshake()
    c.get(1, end_stream=False)
    c.write_rst(1, CANCEL)
    c.write_continuation(1, True, c.encode(dummy_headers(1)))
    verify_stream_error(c, STREAM_CLOSED, PROTOCOL_ERROR)


@case("http2/5.1/11", "closed: Sends a DATA frame")
def http2_5_1_11(c):
    c.handshake()
    c.get(1)
    verify_stream_close(c)
    c.write_data(1, True, b"test")
    verify_connection_error(c, STREAM_CLOSED)


@case("http2/5.1/12", "closed: Sends a HEADERS frame")
def http2_5_1_12(c):
    c.handshake()
    block = c.encode(c.common_headers())
    c.write_headers(1, block, True)
    verify_stream_close(c)
    c.write_headers(1, block, True)  # the same bytes again, as h2spec resends its frame
    verify_connection_error(c, STREAM_CLOSED)


@case("http2/5.1/13", "closed: Sends a CONTINUATION frame")
def http2_5_1_13(c):
    c.handshake()
    c.get(1)
    verify_stream_close(c)
    c.write_continuation(1, True, c.encode(dummy_headers(1)))
    verify_connection_error(c, STREAM_CLOSED, PROTOCOL_ERROR)


# ---- http2/5.1.1 Stream Identifiers ----


@case("http2/5.1.1/1", "Sends even-numbered stream identifier")
def http2_5_1_1_1(c):
    c.handshake()
    c.get(2)
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/5.1.1/2", "Sends stream identifier that is numerically smaller than previous")
def http2_5_1_1_2(c):
    c.handshake()
    c.get(5)
    c.get(3)
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/5.1.1/3", "Sends HEADERS frame with the stream which is in half-closed (remote) state")
def http2_5_1_1_3(c):
    c.handshake()
    c.get(5)
    c.get(5)
    verify_stream_error(c, STREAM_CLOSED)


# ---- http2/5.1.2 Stream Concurrency ----


@case("http2/5.1.2/1", "Sends HEADERS frames that causes their advertised concurrent stream limit to be exceeded")
def http2_5_1_2_1(c):
    c.handshake()
    max_streams = c.settings.get(S_MAX_CONCURRENT_STREAMS)
    assert max_streams is not None, "h2spec skips this case without SETTINGS_MAX_CONCURRENT_STREAMS"
    c.write_settings((S_INITIAL_WINDOW_SIZE, 0))
    block = c.encode(c.common_headers())
    for i in range(max_streams + 1):
        c.write_headers(1 + 2 * i, block, True)
    verify_stream_error(c, PROTOCOL_ERROR, REFUSED_STREAM)


# ---- http2/5.3.1 Stream Dependencies ----


@case("http2/5.3.1/1", "Sends HEADERS frame that depends on itself")
def http2_5_3_1_1(c):
    c.handshake()
    c.get(1, prio=(1, False, 255))
    verify_stream_error(c, PROTOCOL_ERROR)


@case("http2/5.3.1/2", "Sends PRIORITY frame that depend on itself")
def http2_5_3_1_2(c):
    c.handshake()
    c.write_priority(1, 1, False, 255)
    verify_stream_error(c, PROTOCOL_ERROR)


# ---- http2/5.4.1 Connection Error Handling ----


@case("http2/5.4.1/1", "Sends an invalid PING frame for connection close")
def http2_5_4_1_1(c):
    c.handshake()
    c.send(b"\x00\x00\x08\x06\x00\x00\x00\x00\x03" + b"\0" * 8)
    verify_connection_close(c)


@case("http2/5.4.1/2", "Sends an invalid PING frame to receive GOAWAY frame (strict)")
def http2_5_4_1_2(c):
    c.handshake()
    c.send(b"\x00\x00\x08\x06\x00\x00\x00\x00\x03" + b"\0" * 8)
    f = wait_type(c, GOAWAY)
    assert f.error_code == PROTOCOL_ERROR, f


# ---- http2/5.5 Extending HTTP/2 ----


@case("http2/5.5/1", "Sends an unknown extension frame")
def http2_5_5_1(c):
    c.handshake()
    c.send(b"\x00\x00\x08\x16\x00\x00\x00\x00\x00" + b"\0" * 8)
    c.write_ping(False)
    wait_type(c, PING)


@case("http2/5.5/2", "Sends an unknown extension frame in the middle of a header block")
def http2_5_5_2(c):
    c.handshake()
    c.get(1, end_headers=False)
    c.send(b"\x00\x00\x08\x16\x00\x00\x00\x00\x00" + b"\0" * 8)
    verify_connection_error(c, PROTOCOL_ERROR)


# ---- http2/6.1 DATA ----


@case("http2/6.1/1", "Sends a DATA frame with 0x0 stream identifier")
def http2_6_1_1(c):
    c.handshake()
    c.write_data(0, True, b"test")
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.1/2", "Sends a DATA frame on the stream that is not in \"open\" or \"half-closed (local)\" state")
def http2_6_1_2(c):
    c.handshake()
    c.get(1, method="POST")
    c.write_data(1, True, b"test")
    verify_stream_error(c, STREAM_CLOSED)


@case("http2/6.1/3", "Sends a DATA frame with invalid pad length")
def http2_6_1_3(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST", extra=[("content-length", "4")])
    c.send(b"\x00\x00\x05\x00\x09\x00\x00\x00\x01" + b"\x06Test")
    verify_connection_error(c, PROTOCOL_ERROR)


# ---- http2/6.2 HEADERS ----


@case("http2/6.2/1", "Sends a HEADERS frame without the END_HEADERS flag, and a PRIORITY frame")
def http2_6_2_1(c):
    http2_4_3_2(c)


@case("http2/6.2/2", "Sends a HEADERS frame to another stream while sending a HEADERS frame")
def http2_6_2_2(c):
    http2_4_3_3(c)


@case("http2/6.2/3", "Sends a HEADERS frame with 0x0 stream identifier")
def http2_6_2_3(c):
    c.handshake()
    c.get(0)
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.2/4", "Sends a HEADERS frame with invalid pad length")
def http2_6_2_4(c):
    c.handshake()
    block = c.encode(c.common_headers())
    c.send(struct.pack(">I", len(block) + 1)[1:] + b"\x01\x0d\x00\x00\x00\x01" + bytes([len(block) + 2]) + block)
    verify_stream_error(c, PROTOCOL_ERROR)


# ---- http2/6.3 PRIORITY ----


@case("http2/6.3/1", "Sends a PRIORITY frame with 0x0 stream identifier")
def http2_6_3_1(c):
    c.handshake()
    c.write_priority(0)
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.3/2", "Sends a PRIORITY frame with a length other than 5 octets")
def http2_6_3_2(c):
    c.handshake()
    c.get(1)
    c.send(b"\x00\x00\x04\x02\x00\x00\x00\x00\x01" + b"\x80\x00\x00\x01")
    verify_stream_error(c, FRAME_SIZE_ERROR)


@case("http2/6.3/3",
      "Sends a PRIORITY frame for an idle stream, then send a HEADER frame for a lower stream ID (strict)")
def http2_6_3_3(c):
    c.handshake()
    c.write_priority(3)
    c.get(1)
    wait_type(c, HEADERS)


# ---- http2/6.4 RST_STREAM ----


@case("http2/6.4/1", "Sends a RST_STREAM frame with 0x0 stream identifier")
def http2_6_4_1(c):
    c.handshake()
    c.write_rst(0, CANCEL)
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.4/2", "Sends a RST_STREAM frame on a idle stream")
def http2_6_4_2(c):
    c.handshake()
    c.write_rst(1, CANCEL)
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.4/3", "Sends a RST_STREAM frame with a length other than 4 octets")
def http2_6_4_3(c):
    c.handshake()
    c.get(1)
    c.send(b"\x00\x00\x03\x03\x00\x00\x00\x00\x01" + b"\x00\x00\x00")
    verify_stream_error(c, FRAME_SIZE_ERROR)


# ---- http2/6.5 SETTINGS ----


@case("http2/6.5/1", "Sends a SETTINGS frame with ACK flag and payload")
def http2_6_5_1(c):
    c.handshake()
    c.send(b"\x00\x00\x01\x04\x01\x00\x00\x00\x00" + b"\x00")
    verify_connection_error(c, FRAME_SIZE_ERROR)


@case("http2/6.5/2", "Sends a SETTINGS frame with 0x1 stream identifier")
def http2_6_5_2(c):
    c.handshake()
    c.send(b"\x00\x00\x06\x04\x00\x00\x00\x00\x01" + b"\x00\x03\x00\x00\x00\x64")
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.5/3", "Sends a SETTINGS frame with a length other than a multiple of 6 octets")
def http2_6_5_3(c):
    c.handshake()
    c.send(b"\x00\x00\x09\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00\x00\x00\x64\x00\x02\x00")
    verify_stream_error(c, PROTOCOL_ERROR, FRAME_SIZE_ERROR)


# ---- http2/6.5.2 Defined SETTINGS Parameters ----


@case("http2/6.5.2/1", "SETTINGS_ENABLE_PUSH (0x2): Sends the value other than 0 or 1")
def http2_6_5_2_1(c):
    c.handshake()
    c.write_settings((S_ENABLE_PUSH, 2))
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.5.2/2", "SETTINGS_INITIAL_WINDOW_SIZE (0x4): Sends the value above the maximum flow control window size")
def http2_6_5_2_2(c):
    c.handshake()
    c.write_settings((S_INITIAL_WINDOW_SIZE, 2147483648))
    verify_connection_error(c, FLOW_CONTROL_ERROR)


@case("http2/6.5.2/3", "SETTINGS_MAX_FRAME_SIZE (0x5): Sends the value below the initial value")
def http2_6_5_2_3(c):
    c.handshake()
    c.write_settings((S_MAX_FRAME_SIZE, 16383))
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.5.2/4", "SETTINGS_MAX_FRAME_SIZE (0x5): Sends the value above the maximum allowed frame size")
def http2_6_5_2_4(c):
    c.handshake()
    c.write_settings((S_MAX_FRAME_SIZE, 16777216))
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.5.2/5", "Sends a SETTINGS frame with unknown identifier")
def http2_6_5_2_5(c):
    c.handshake()
    c.write_settings((0xFF, 1))
    c.write_ping(False)
    wait_type(c, PING)


# ---- http2/6.5.3 Settings Synchronization ----


@case("http2/6.5.3/1", "Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE")
def http2_6_5_3_1(c):
    assert server_data_length(c.target) >= 1
    c.handshake()
    c.write_settings((S_INITIAL_WINDOW_SIZE, 100), (S_INITIAL_WINDOW_SIZE, 1))
    wait_type(c, SETTINGS)
    c.get(1)
    verify_data_length_1(c)


@case("http2/6.5.3/2", "Sends a SETTINGS frame without ACK flag")
def http2_6_5_3_2(c):
    c.handshake()
    c.write_settings((S_ENABLE_PUSH, 0))
    verify_settings_ack(c)


# ---- http2/6.7 PING ----


@case("http2/6.7/1", "Sends a PING frame")
def http2_6_7_1(c):
    c.handshake()
    c.write_ping(False, H2SPEC_PING)
    for ev in events(c):
        assert ev not in (CLOSED, TIMEOUT_EV), "no PING ACK: %s after %r" % (ev, _seen(c))
        if ev.type == PING and ev.flags & ACK and ev.payload == H2SPEC_PING:
            return


@case("http2/6.7/2", "Sends a PING frame with ACK")
def http2_6_7_2(c):
    c.handshake()
    unexpected = b"invalid\0"
    c.write_ping(True, unexpected)
    c.write_ping(False, H2SPEC_PING)
    for ev in events(c):
        assert ev not in (CLOSED, TIMEOUT_EV), "no PING ACK: %s after %r" % (ev, _seen(c))
        if ev.type == PING:
            assert ev.payload != unexpected, "answered a PING with ACK"
            if ev.flags & ACK and ev.payload == H2SPEC_PING:
                return


@case("http2/6.7/3", "Sends a PING frame with a stream identifier field value other than 0x0")
def http2_6_7_3(c):
    c.handshake()
    c.send(b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"\0" * 8)
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.7/4", "Sends a PING frame with a length field value other than 8")
def http2_6_7_4(c):
    c.handshake()
    c.send(b"\x00\x00\x06\x06\x00\x00\x00\x00\x00" + b"\0" * 6)
    verify_connection_error(c, FRAME_SIZE_ERROR)


@case("http2/6.7/4b", "Sends a PING frame with a length other than 8 on stream 1 (older h2spec)")
def http2_6_7_4b(c):
    c.handshake()
    c.send(b"\x00\x00\x06\x06\x00\x00\x00\x00\x01" + b"\0" * 6)
    verify_connection_error(c, PROTOCOL_ERROR, FRAME_SIZE_ERROR)


# ---- http2/6.8 GOAWAY ----


@case("http2/6.8/1", "Sends a GOAWAY frame with a stream identifier other than 0x0")
def http2_6_8_1(c):
    c.handshake()
    c.send(b"\x00\x00\x08\x07\x00\x00\x00\x00\x01" + b"\0" * 8)
    verify_connection_error(c, PROTOCOL_ERROR)


# ---- http2/6.9 WINDOW_UPDATE ----


@case("http2/6.9/1", "Sends a WINDOW_UPDATE frame with a flow control window increment of 0")
def http2_6_9_1(c):
    c.handshake()
    c.write_window_update(0, 0)
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.9/2", "Sends a WINDOW_UPDATE frame with a flow control window increment of 0 on a stream")
def http2_6_9_2(c):
    c.handshake()
    c.get(1, end_stream=False)
    c.write_window_update(1, 0)
    verify_stream_error(c, PROTOCOL_ERROR)


@case("http2/6.9/3", "Sends a WINDOW_UPDATE frame with a length other than 4 octets")
def http2_6_9_3(c):
    c.handshake()
    c.send(b"\x00\x00\x03\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x01")
    verify_connection_error(c, FRAME_SIZE_ERROR)


# ---- http2/6.9.1 The Flow-Control Window ----


@case("http2/6.9.1/1", "Sends SETTINGS frame to set the initial window size to 1 and sends HEADERS frame")
def http2_6_9_1_1(c):
    assert server_data_length(c.target) >= 1
    c.handshake()
    c.write_settings((S_INITIAL_WINDOW_SIZE, 1))
    wait_type(c, SETTINGS)
    c.get(1)
    verify_data_length_1(c)


@case("http2/6.9.1/2", "Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1")
def http2_6_9_1_2(c):
    c.handshake()
    c.write_window_update(0, 2147483647)
    c.write_window_update(0, 2147483647)
    f = wait_type(c, GOAWAY)
    assert f.error_code == FLOW_CONTROL_ERROR, f


@case("http2/6.9.1/3",
      "Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1 on a stream")
def http2_6_9_1_3(c):
    c.handshake()
    c.get(1, end_stream=False)
    c.write_window_update(1, 2147483647)
    c.write_window_update(1, 2147483647)
    f = wait_type(c, RST_STREAM)
    assert f.sid == 1 and f.error_code == FLOW_CONTROL_ERROR, f


# ---- http2/6.9.2 Initial Flow-Control Window Size ----


@case("http2/6.9.2/1", "Changes SETTINGS_INITIAL_WINDOW_SIZE after sending HEADERS frame")
def http2_6_9_2_1(c):
    assert server_data_length(c.target) >= 1
    c.handshake()
    c.write_settings((S_INITIAL_WINDOW_SIZE, 0))
    wait_type(c, SETTINGS)
    c.get(1)
    c.write_settings((S_INITIAL_WINDOW_SIZE, 1))
    wait_type(c, SETTINGS)
    verify_data_length_1(c)


@case("http2/6.9.2/2", "Sends a SETTINGS frame for window size to be negative")
def http2_6_9_2_2(c):
    assert server_data_length(c.target) >= 5
    c.handshake()
    c.write_settings((S_INITIAL_WINDOW_SIZE, 3))
    wait_type(c, SETTINGS)
    c.get(1)
    wait_type(c, DATA)
    c.write_settings((S_INITIAL_WINDOW_SIZE, 2))
    wait_type(c, SETTINGS)
    c.write_window_update(1, 2)
    verify_data_length_1(c)


@case("http2/6.9.2/3", "Sends a SETTINGS_INITIAL_WINDOW_SIZE settings with an exceeded maximum window size value")
def http2_6_9_2_3(c):
    c.handshake()
    c.send(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + b"\x00\x04\x80\x00\x00\x00")
    verify_connection_error(c, FLOW_CONTROL_ERROR)


# ---- http2/6.10 CONTINUATION ----


@case("http2/6.10/1", "Sends multiple CONTINUATION frames preceded by a HEADERS frame")
def http2_6_10_1(c):
    c.handshake()
    c.get(1, end_headers=False)
    dummy = dummy_headers(1)
    c.write_continuation(1, False, c.encode(dummy))
    c.write_continuation(1, True, c.encode(dummy))
    wait_type(c, HEADERS)


@case("http2/6.10/2", "Sends a CONTINUATION frame followed by any frame other than CONTINUATION")
def http2_6_10_2(c):
    c.handshake()
    c.get(1, end_stream=False, end_headers=False, method="POST")
    c.write_continuation(1, False, c.encode(dummy_headers(1)))
    c.write_data(1, True, b"test")
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.10/3", "Sends a CONTINUATION frame with 0x0 stream identifier")
def http2_6_10_3(c):
    c.handshake()
    c.get(1, end_headers=False)
    c.write_continuation(0, True, c.encode(dummy_headers(1)))
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.10/4", "Sends a CONTINUATION frame preceded by a HEADERS frame with END_HEADERS flag")
def http2_6_10_4(c):
    c.handshake()
    c.get(1)
    c.write_continuation(1, True, c.encode(dummy_headers(1)))
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.10/5", "Sends a CONTINUATION frame preceded by a CONTINUATION frame with END_HEADERS flag")
def http2_6_10_5(c):
    c.handshake()
    c.get(1, end_headers=False)
    dummy = dummy_headers(1)
    c.write_continuation(1, True, c.encode(dummy))
    c.write_continuation(1, True, c.encode(dummy))
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.10/6", "Sends a CONTINUATION frame preceded by a DATA frame")
def http2_6_10_6(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST")
    c.write_data(1, False, b"test")
    c.write_continuation(1, True, c.encode(dummy_headers(1)))
    verify_connection_error(c, PROTOCOL_ERROR)


@case("http2/6.10/6b", "Sends DATA inside an open header block, then CONTINUATION frames (older h2spec)")
def http2_6_10_6b(c):
    c.handshake()
    c.get(1, end_stream=False, end_headers=False, method="POST")
    c.write_data(1, True, b"test")
    dummy = dummy_headers(1)
    c.write_continuation(1, False, c.encode(dummy))
    c.write_continuation(0, True, c.encode(dummy))
    verify_connection_error(c, PROTOCOL_ERROR)


# ---- http2/7 Error Codes ----


@case("http2/7/1", "Sends a GOAWAY frame with unknown error code")
def http2_7_1(c):
    c.handshake()
    c.write_goaway(0, 0xff)
    verify_connection_close(c)


@case("http2/7/2", "Sends a RST_STREAM frame with unknown error code")
def http2_7_2(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST")
    c.write_rst(1, 0xff)
    c.write_ping(False)
    wait_type(c, PING)


# ---- http2/8.1 HTTP Request/Response Exchange ----


@case("http2/8.1/1", "Sends a second HEADERS frame without the END_STREAM flag")
def http2_8_1_1(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST")
    c.write_data(1, False, b"test")
    c.write_headers(1, c.encode([("x-test", "ok")]), False)
    verify_stream_error(c, PROTOCOL_ERROR)


# ---- http2/8.1.2 HTTP Header Fields: malformed requests ----


def _malformed(headers):
    def run(c):
        c.handshake()
        c.write_headers(1, c.encode(headers(c)), True)
        verify_stream_error(c, PROTOCOL_ERROR)
    return run


def _without(name):
    return lambda c: [h for h in c.common_headers() if h[0] != name]


def _with(*extra):
    return lambda c: c.common_headers() + list(extra)


def _dup(name):
    return lambda c: c.common_headers() + [h for h in c.common_headers() if h[0] == name]


MALFORMED = [
    ("http2/8.1.2/1", "Sends a HEADERS frame that contains the header field name in uppercase letters",
     _with(("X-TEST", "ok"))),
    ("http2/8.1.2.1/1", "Sends a HEADERS frame that contains a unknown pseudo-header field", _with((":test", "ok"))),
    ("http2/8.1.2.1/2", "Sends a HEADERS frame that contains the pseudo-header field defined for response",
     _with((":status", "200"))),
    ("http2/8.1.2.1/4", "Sends a HEADERS frame that contains a pseudo-header field that appears in a header block "
     "after a regular header field", lambda c: [("x-test", "ok")] + c.common_headers()),
    ("http2/8.1.2.2/1", "Sends a HEADERS frame that contains the connection-specific header field",
     _with(("connection", "keep-alive"))),
    ("http2/8.1.2.2/2", "Sends a HEADERS frame that contains the TE header field with any value other than "
     "\"trailers\"", _with(("trailers", "test"), ("te", "trailers, deflate"))),
    ("http2/8.1.2.3/1", "Sends a HEADERS frame with empty \":path\" pseudo-header field",
     lambda c: [(k, "" if k == ":path" else v) for k, v in c.common_headers()]),
    ("http2/8.1.2.3/2", "Sends a HEADERS frame that omits \":method\" pseudo-header field", _without(":method")),
    ("http2/8.1.2.3/3", "Sends a HEADERS frame that omits \":scheme\" pseudo-header field", _without(":scheme")),
    ("http2/8.1.2.3/4", "Sends a HEADERS frame that omits \":path\" pseudo-header field", _without(":path")),
    ("http2/8.1.2.3/5", "Sends a HEADERS frame with duplicated \":method\" pseudo-header field", _dup(":method")),
    ("http2/8.1.2.3/6", "Sends a HEADERS frame with duplicated \":scheme\" pseudo-header field", _dup(":scheme")),
    ("http2/8.1.2.3/7", "Sends a HEADERS frame with duplicated \":path\" pseudo-header field", _dup(":path")),
    ("http2/8.1.2.3/7b", "Sends a HEADERS frame with a second \":method\" whose value is \"/\" (older h2spec)",
     _with((":method", "/"))),
]

for _cid, _desc, _hdrs in MALFORMED:
    case(_cid, _desc)(_malformed(_hdrs))


@case("http2/8.1.2.1/3", "Sends a HEADERS frame that contains a pseudo-header field as trailers")
def http2_8_1_2_1_3(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST")
    c.write_data(1, False, b"test")
    c.write_headers(1, c.encode([(":method", "POST")]), False)
    verify_stream_error(c, PROTOCOL_ERROR)


@case("http2/8.1.2.6/1",
      "Sends a HEADERS frame with the \"content-length\" header field which does not equal the DATA frame payload "
      "length")
def http2_8_1_2_6_1(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST", extra=[("content-length", "1")])
    c.write_data(1, True, b"test")
    verify_stream_error(c, PROTOCOL_ERROR)


@case("http2/8.1.2.6/2",
      "Sends a HEADERS frame with the \"content-length\" header field which does not equal the sum of the multiple "
      "DATA frames payload length")
def http2_8_1_2_6_2(c):
    c.handshake()
    c.get(1, end_stream=False, method="POST", extra=[("content-length", "1")])
    c.write_data(1, False, b"test")
    c.write_data(1, True, b"test")
    verify_stream_error(c, PROTOCOL_ERROR)


# ---- http2/8.2 Server Push ----


@case("http2/8.2/1", "Sends a PUSH_PROMISE frame")
def http2_8_2_1(c):
    c.handshake()
    c.send_frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 3) + c.encode(c.common_headers()))
    verify_connection_error(c, PROTOCOL_ERROR)


# ---- hpack ----

def _hpack_error(rep, prepend=False):
    def run(c):
        c.handshake()
        block = c.encode(c.common_headers())
        r = rep(c) if callable(rep) else rep
        c.write_headers(1, r + block if prepend else block + r, True)
        verify_connection_error(c, COMPRESSION_ERROR)
    return run


def _table_size_update_above_limit(c):
    """h2spec encodes SETTINGS_HEADER_TABLE_SIZE (as the server announced it,
    4096 when absent) + 1 as a dynamic table size update."""
    size = c.settings.get(S_HEADER_TABLE_SIZE, 4096) + 1
    if size < 31:
        return bytes([0x20 | size])
    out, size = [0x20 | 31], size - 31
    while size >= 128:
        out.append(0x80 | (size & 0x7F))
        size >>= 7
    return bytes(out + [size])


HPACK = [
    ("hpack/2.3.3/1", "Sends a header field representation with invalid index", b"\xfe", False),
    ("hpack/4.2/1", "Sends a dynamic table size update at the end of header block", b"\x21", False),
    ("hpack/5.2/1", "Sends a Huffman-encoded string literal representation with padding longer than 7 bits",
     b"\x00\x85\xf2\xb2\x4a\x84\xff\x84\x49\x50\x9f\xff", False),
    ("hpack/5.2/2", "Sends a Huffman-encoded string literal representation padded by zero",
     b"\x00\x85\xf2\xb2\x4a\x84\xff\x83\x49\x50\x90", False),
    ("hpack/5.2/3", "Sends a Huffman-encoded string literal representation containing the EOS symbol",
     b"\x00\x85\xf2\xb2\x4a\x87\xff\xff\xff\xfd\x25\x42\x7f", False),
    ("hpack/6.1/1", "Sends a indexed header field representation with index 0", b"\x80", False),
    ("hpack/6.3/1", "Sends a dynamic table size update larger than the value of SETTINGS_HEADER_TABLE_SIZE",
     _table_size_update_above_limit, True),
]

for _cid, _desc, _rep, _pre in HPACK:
    case(_cid, _desc)(_hpack_error(_rep, _pre))


# --------------------------------------------------------------------------
# the runs
# --------------------------------------------------------------------------

def test_catalogue_is_complete():
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids))
    base = [i for i in ids if not i.endswith("b")]
    assert len(base) == 148, len(base)
    assert sum(i.startswith("generic/") for i in base) == 44
    assert sum(i.startswith("http2/") for i in base) == 97
    assert sum(i.startswith("hpack/") for i in base) == 7


@pytest.mark.parametrize("transport", ["h2c", "tls"])
@pytest.mark.parametrize("run", CASES)
def test_h2spec(targets, transport, run):
    with SpecConn(targets[transport]) as c:
        run(c)
