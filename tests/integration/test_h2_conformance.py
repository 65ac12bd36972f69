"""HTTP/2 conformance at the frame level (RFC 9113 sections 3-8, RFC 7541)
against an h2c prior-knowledge listener. Each test asserts the error code the
RFC names; a connection error may also end with the connection closed after
the GOAWAY. The frame client is tests/integration/h2conformance/h2raw.py."""
import os
import struct
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "h2conformance"))

from conftest import SLOW, simple_config  # noqa: E402
from h2raw import *  # noqa: E402,F401,F403
from h2raw import H2Raw, Closed, frame, settings  # noqa: E402

H2C = 'listeners: [{address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}]\n'


@pytest.fixture
def proxy(meridian, backend):
    return meridian.start(H2C + simple_config([backend.address]))


@pytest.fixture
def h2(proxy):
    c = H2Raw(proxy.port, timeout=5.0 * SLOW)
    c.handshake()
    yield c
    c.close()


def conn_error(c, code):
    g = c.expect_goaway()
    if isinstance(g, Closed):
        pytest.fail("connection closed without GOAWAY(%d)" % code)
    assert g.error_code == code, g


def stream_or_conn_error(c, sid, code):
    f = c.expect_error(sid)
    assert not isinstance(f, Closed), "closed without RST_STREAM/GOAWAY(%d)" % code
    assert f.error_code == code, f


# ---- 3.4 / 3.5 connection preface and settings ----

def test_server_settings(h2):
    f = [f for f in h2.frames if f.type == SETTINGS][0]
    vals = {struct.unpack(">H", f.payload[i:i + 2])[0]: struct.unpack(">I", f.payload[i + 2:i + 6])[0]
            for i in range(0, len(f.payload), 6)}
    assert vals[S_MAX_CONCURRENT_STREAMS] == 128
    assert vals[S_ENABLE_PUSH] == 0
    assert vals[S_INITIAL_WINDOW_SIZE] == 256 * 1024
    assert vals[S_MAX_HEADER_LIST_SIZE] == 16384


def test_bad_preface(proxy):
    with H2Raw(proxy.port, preface=False) as c:
        c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(SETTINGS, 0, 0))
        g = c.expect_goaway()
        assert isinstance(g, Closed) or g.error_code == PROTOCOL_ERROR


def test_settings_ack_and_ping(h2):
    h2.send_frame(PING, 0, 0, b"12345678")
    f = h2.expect(lambda f: f.type == PING)
    assert f.flags & ACK and f.payload == b"12345678"
    assert any(f.type == SETTINGS and f.flags & ACK for f in h2.frames)


def test_ping_bad_length(h2):
    h2.send_frame(PING, 0, 0, b"1234567")
    conn_error(h2, FRAME_SIZE_ERROR)


def test_ping_on_stream(h2):
    h2.send_frame(PING, 0, 1, b"12345678")
    conn_error(h2, PROTOCOL_ERROR)


# ---- 6.5 SETTINGS ----

def test_settings_initial_window_too_large(h2):
    h2.send_frame(SETTINGS, 0, 0, settings((S_INITIAL_WINDOW_SIZE, 1 << 31)))
    conn_error(h2, FLOW_CONTROL_ERROR)


def test_settings_enable_push_2(h2):
    h2.send_frame(SETTINGS, 0, 0, settings((S_ENABLE_PUSH, 2)))
    conn_error(h2, PROTOCOL_ERROR)


def test_settings_bad_length(h2):
    h2.send_frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00")
    conn_error(h2, FRAME_SIZE_ERROR)


def test_settings_ack_with_payload(h2):
    h2.send_frame(SETTINGS, ACK, 0, settings((S_ENABLE_PUSH, 0)))
    conn_error(h2, FRAME_SIZE_ERROR)


def test_settings_on_stream(h2):
    h2.send_frame(SETTINGS, 0, 1, b"")
    conn_error(h2, PROTOCOL_ERROR)


def test_settings_max_frame_size_too_small(h2):
    h2.send_frame(SETTINGS, 0, 0, settings((S_MAX_FRAME_SIZE, 16383)))
    conn_error(h2, PROTOCOL_ERROR)


def test_settings_unknown_ignored(h2):
    h2.send_frame(SETTINGS, 0, 0, settings((0xff, 1)))
    assert h2.expect(lambda f: f.type == SETTINGS and f.flags & ACK) is not None
    h2.request(1)
    status, _, _ = h2.response(1)
    assert status == 200


# ---- 5.1 stream states ----

def test_data_on_idle_stream(h2):
    h2.send_frame(DATA, 0, 1, b"hello")
    conn_error(h2, PROTOCOL_ERROR)


def test_rst_on_idle_stream(h2):
    h2.send_frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL))
    conn_error(h2, PROTOCOL_ERROR)


def test_window_update_on_idle_stream(h2):
    h2.send_frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 100))
    conn_error(h2, PROTOCOL_ERROR)


def test_data_on_closed_stream(h2):
    h2.request(1)
    status, _, _ = h2.response(1)
    assert status == 200
    h2.send_frame(DATA, 0, 1, b"late")
    stream_or_conn_error(h2, 1, STREAM_CLOSED)


def test_data_on_stream_we_reset_is_ignored(meridian, backend):
    """RFC 9113 5.4.2: after meridian resets a stream (here: a 413 before the
    body, then RST_STREAM NO_ERROR), DATA the client had already sent on it
    is ignored, not a connection error; the connection serves on."""
    m = meridian.start(H2C + simple_config([backend.address], extra="limits: {max_body_bytes: 100}\n"))
    with H2Raw(m.port, timeout=5.0 * SLOW) as c:
        c.handshake()
        c.request(1, method="POST", extra=[("content-length", "1000")], end_stream=False)
        status, _, _ = c.response(1)
        assert status == 413
        rst = c.expect(lambda f: f.type in (RST_STREAM, GOAWAY) and f.sid in (0, 1))
        assert rst is not None and rst.type == RST_STREAM and rst.error_code == NO_ERROR, rst
        c.send_frame(DATA, 0, 1, b"x" * 500)
        c.send_frame(DATA, END_STREAM, 1, b"x" * 500)
        c.request(3)
        status, _, _ = c.response(3)
        assert status == 200
        assert not any(f.type == GOAWAY for f in c.frames), c.frames[-10:]


def test_data_after_client_reset_in_one_segment(meridian, backend):
    """Telling a stream the client closed from one meridian reset must use the
    state the earlier frames of the same read left: HEADERS(3), the client's
    RST_STREAM(3), then DATA(3), in one segment, is STREAM_CLOSED."""
    m = meridian.start(H2C + simple_config([backend.address]))
    with H2Raw(m.port, timeout=5.0 * SLOW) as c:
        c.handshake()
        c.request(1)
        assert c.response(1)[0] == 200
        block = c.header_block([(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "t")])
        c.send(frame(HEADERS, END_HEADERS, 3, block) + frame(RST_STREAM, 0, 3, struct.pack(">I", CANCEL))
               + frame(DATA, 0, 3, b"late"))
        stream_or_conn_error(c, 3, STREAM_CLOSED)


def test_headers_on_half_closed_stream(h2):
    """HEADERS again on a stream the client already ended (half-closed remote)."""
    h2.request(1, path="/?delay=300")
    h2.request(1, path="/")
    stream_or_conn_error(h2, 1, STREAM_CLOSED)


def test_even_stream_id(h2):
    h2.request(2)
    conn_error(h2, PROTOCOL_ERROR)


def test_decreasing_stream_id(h2):
    h2.request(5)
    h2.response(5)
    h2.request(3)
    conn_error(h2, PROTOCOL_ERROR)


def test_push_promise_from_client(h2):
    h2.send_frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + h2.header_block([(":method", "GET")]))
    conn_error(h2, PROTOCOL_ERROR)


def test_concurrent_streams_limit(h2):
    """Beyond SETTINGS_MAX_CONCURRENT_STREAMS: REFUSED_STREAM (or PROTOCOL_ERROR)."""
    for i in range(129):
        h2.request(1 + 2 * i, path="/?delay=500", end_stream=True)
    f = h2.expect(lambda f: f.type == GOAWAY or f.type == RST_STREAM)
    assert f is not None
    assert f.error_code in (REFUSED_STREAM, PROTOCOL_ERROR), f


# ---- 6.9 flow control ----

def test_window_update_zero_on_connection(h2):
    h2.send_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0))
    conn_error(h2, PROTOCOL_ERROR)


def test_window_update_zero_on_stream(h2):
    h2.request(1, path="/?delay=300")
    h2.send_frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0))
    stream_or_conn_error(h2, 1, PROTOCOL_ERROR)


def test_window_update_overflow(h2):
    h2.send_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF))
    conn_error(h2, FLOW_CONTROL_ERROR)


def test_window_update_bad_length(h2):
    h2.send_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1) + b"\0")
    conn_error(h2, FRAME_SIZE_ERROR)


def test_data_beyond_window(meridian, pyupstream):
    """The upstream does not read: the proxy pauses the body, meridian stops
    reopening the stream window, and DATA beyond it is FLOW_CONTROL_ERROR."""
    def sink(sock, reader, up):
        sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
        time.sleep(20)
    up = pyupstream.start(sink)
    m = meridian.start(H2C + simple_config([up.address]))
    with H2Raw(m.port, timeout=5.0 * SLOW) as c:
        c.handshake()
        c.request(1, method="POST", path="/echo", end_stream=False)
        window = {0: 65535, 1: 256 * 1024}
        chunk = b"x" * 16384
        sent = 0
        while sent < 200 * (1 << 20):
            if min(window[0], window[1]) >= len(chunk):
                c.send_frame(DATA, 0, 1, chunk)
                window[0] -= len(chunk)
                window[1] -= len(chunk)
                sent += len(chunk)
                continue
            f = c.expect(lambda f: f.type in (WINDOW_UPDATE, GOAWAY, RST_STREAM), timeout=1.0 * SLOW)
            if f is None:
                break  # stalled: the windows stay closed
            assert f.type == WINDOW_UPDATE, f
            window[f.sid] = window.get(f.sid, 0) + struct.unpack(">I", f.payload)[0]
        assert sent < 200 * (1 << 20), "the stream window never closed"
        c.send_frame(DATA, 0, 1, b"y" * (min(window[0], window[1]) + 16384 if min(window[0], window[1]) >= 0 else 16384))
        stream_or_conn_error(c, 1, FLOW_CONTROL_ERROR)


# ---- 8.3 request pseudo-headers and fields ----

def _bad_request(h2, headers):
    h2.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, h2.header_block(headers))
    stream_or_conn_error(h2, 1, PROTOCOL_ERROR)


BASE = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "test")]


def test_missing_method(h2):
    _bad_request(h2, [h for h in BASE if h[0] != ":method"])


def test_missing_path(h2):
    _bad_request(h2, [h for h in BASE if h[0] != ":path"])


def test_empty_path(h2):
    _bad_request(h2, [(":method", "GET"), (":scheme", "http"), (":path", ""), (":authority", "t")])


def test_uppercase_header_name(h2):
    _bad_request(h2, BASE + [("X-Upper", "1")])


def test_connection_specific_header(h2):
    _bad_request(h2, BASE + [("connection", "keep-alive")])


def test_te_other_than_trailers(h2):
    _bad_request(h2, BASE + [("te", "gzip")])


def test_pseudo_after_regular(h2):
    _bad_request(h2, [(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":path", "/")])


def test_unknown_pseudo_header(h2):
    _bad_request(h2, BASE + [(":foo", "bar")])


def test_response_pseudo_in_request(h2):
    _bad_request(h2, BASE + [(":status", "200")])


def test_duplicate_pseudo_header(h2):
    _bad_request(h2, BASE + [(":path", "/again")])


def test_content_length_mismatch(h2):
    h2.request(1, method="POST", path="/echo", extra=[("content-length", "10")], end_stream=False)
    h2.send_frame(DATA, END_STREAM, 1, b"abc")
    stream_or_conn_error(h2, 1, PROTOCOL_ERROR)


def test_te_trailers_allowed(h2):
    h2.request(1, extra=[("te", "trailers")])
    status, _, _ = h2.response(1)
    assert status == 200


# ---- 6.2 / 6.10 HEADERS and CONTINUATION ----

def test_continuation_without_headers(h2):
    h2.send_frame(CONTINUATION, END_HEADERS, 1, h2.header_block(BASE))
    conn_error(h2, PROTOCOL_ERROR)


def test_headers_then_other_frame(h2):
    block = h2.header_block(BASE)
    h2.send_frame(HEADERS, END_STREAM, 1, block[:3])
    h2.send_frame(PING, 0, 0, b"12345678")
    conn_error(h2, PROTOCOL_ERROR)


def test_continuation_assembled(h2):
    block = h2.header_block(BASE + [("x-long", "v" * 100)])
    h2.send_frame(HEADERS, END_STREAM, 1, block[:5])
    h2.send_frame(CONTINUATION, 0, 1, block[5:20])
    h2.send_frame(CONTINUATION, END_HEADERS, 1, block[20:])
    status, _, _ = h2.response(1)
    assert status == 200


def test_continuation_flood(h2):
    """Endless CONTINUATION frames: the connection is closed (CVE-2024-27316 class)."""
    block = h2.header_block(BASE)
    h2.send_frame(HEADERS, 0, 1, block)
    for i in range(200):
        h2.send_frame(CONTINUATION, 0, 1, h2.header_block([("x-f%d" % i, "v" * 50)]))
        if h2.closed:
            break
    g = h2.expect_goaway()
    assert isinstance(g, Closed) or g.error_code != NO_ERROR


def test_headers_self_dependency(h2):
    prio = struct.pack(">IB", 1, 15)
    h2.send_frame(HEADERS, END_HEADERS | END_STREAM | PRIO, 1, prio + h2.header_block(BASE))
    stream_or_conn_error(h2, 1, PROTOCOL_ERROR)


def test_priority_bad_length(h2):
    h2.send_frame(PRIORITY, 0, 1, b"\0\0\0\0")
    stream_or_conn_error(h2, 1, FRAME_SIZE_ERROR)


def test_frame_too_large(h2):
    h2.send_frame(DATA, 0, 1, b"x" * 16385)
    conn_error(h2, FRAME_SIZE_ERROR)


def test_padded_too_long(h2):
    h2.request(1, method="POST", path="/echo", end_stream=False)
    h2.send_frame(DATA, PADDED | END_STREAM, 1, b"\x10abc")
    conn_error(h2, PROTOCOL_ERROR)


def test_unknown_frame_ignored(h2):
    h2.send_frame(0x42, 0, 0, b"whatever")
    h2.request(1)
    status, _, _ = h2.response(1)
    assert status == 200


# ---- RFC 7541 HPACK ----

def test_hpack_invalid_index(h2):
    h2.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x86\x84\xc6")  # index 70: beyond both tables
    conn_error(h2, COMPRESSION_ERROR)


def test_hpack_table_size_update_too_large(h2):
    h2.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x3f\xe2\x1f" + h2.header_block(BASE))
    conn_error(h2, COMPRESSION_ERROR)


def test_hpack_bad_huffman(h2):
    # literal without indexing, new name, Huffman flag with an invalid (all-ones, 4 bytes) code
    h2.send_frame(HEADERS, END_HEADERS | END_STREAM, 1,
                  h2.header_block(BASE) + b"\x00\x84\xff\xff\xff\xff\x01a")
    conn_error(h2, COMPRESSION_ERROR)


# ---- 5.4 / 6.8 shutdown, floods ----

def test_goaway_from_client_then_close(h2):
    h2.send_frame(GOAWAY, 0, 0, struct.pack(">II", 0, NO_ERROR))
    assert h2.expect(lambda f: False, timeout=3.0 * SLOW) is None
    assert h2.closed


def test_rapid_reset_flood(h2):
    """HEADERS + RST_STREAM in a loop (CVE-2023-44487): GOAWAY, not a crash."""
    sid = 1
    for _ in range(3000):
        h2.request(sid, path="/?delay=50")
        h2.send_frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
        sid += 2
        if h2.closed:
            break
    g = h2.expect_goaway(timeout=10.0 * SLOW)
    assert isinstance(g, Closed) or g.error_code in (ENHANCE_YOUR_CALM, INTERNAL_ERROR, PROTOCOL_ERROR), g


def test_ping_flood(proxy):
    """PINGs without reading the ACKs: the connection is closed, memory stays bounded."""
    with H2Raw(proxy.port) as c:
        c.handshake()
        payload = frame(PING, 0, 0, b"abcdefgh") * 1000
        for _ in range(20):
            c.send(payload)
            if c.closed:
                break
        g = c.expect_goaway(timeout=5.0 * SLOW)
        assert isinstance(g, Closed) or g.error_code == ENHANCE_YOUR_CALM
    assert proxy.alive()


def test_settings_flood(proxy):
    with H2Raw(proxy.port) as c:
        c.handshake()
        for _ in range(5):
            c.send(frame(SETTINGS, 0, 0, settings((S_ENABLE_PUSH, 0))) * 1000)
            if c.closed:
                break
        g = c.expect_goaway(timeout=5.0 * SLOW)
        assert isinstance(g, Closed) or g.error_code == ENHANCE_YOUR_CALM
    assert proxy.alive()
