"""
h2raw: a frame-level HTTP/2 client for meridian's conformance tests. It
writes frames byte by byte (struct) so that tests can break the rules on
purpose, and uses python3-hpack only to encode valid header blocks.
"""
import socket
import ssl
import struct
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = range(12)

S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, \
    S_MAX_HEADER_LIST_SIZE = range(1, 7)


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, sid & 0x7FFFFFFF) + payload


def settings(*pairs):
    return b"".join(struct.pack(">HI", k, v) for k, v in pairs)


class Frame:
    def __init__(self, ftype, flags, sid, payload):
        self.type, self.flags, self.sid, self.payload = ftype, flags, sid, payload

    @property
    def error_code(self):
        if self.type == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        if self.type == RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0]
        return None

    def __repr__(self):
        return "<Frame type=%d flags=%#x sid=%d len=%d code=%r>" % (
            self.type, self.flags, self.sid, len(self.payload), self.error_code)


class Closed:
    """What expect_error returns when the peer closed without a GOAWAY."""
    type = None
    error_code = None

    def __repr__(self):
        return "<closed>"


class H2Raw:
    def __init__(self, port, host="127.0.0.1", preface=True, client_settings=(), timeout=5.0, tls=False,
                 window_updates=True):
        """tls: TLS with ALPN h2 (certificate not verified, as h2spec -k);
        window_updates: give back every received DATA byte at once (off:
        the caller manages the windows)."""
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname=host)
            assert self.sock.selected_alpn_protocol() == "h2", self.sock.selected_alpn_protocol()
        self.window_updates = window_updates
        self.timeout = timeout
        self.buf = bytearray()
        self.closed = False
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.frames = []  # everything received
        self.streams = {}  # sid -> [headers dict, body, ended, rst frame]
        if preface:
            self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings(*client_settings)))

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:  # BrokenPipe, ConnectionReset, ssl errors after the peer closed
            self.closed = True

    def send_frame(self, ftype, flags, sid, payload=b""):
        self.send(frame(ftype, flags, sid, payload))

    def header_block(self, headers):
        return self.enc.encode(headers)

    def request(self, sid, method="GET", path="/", authority="test", extra=(), end_stream=True, scheme="http"):
        hdrs = [(":method", method), (":scheme", scheme), (":path", path), (":authority", authority)] + list(extra)
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        self.send_frame(HEADERS, flags, sid, self.header_block(hdrs))

    def recv_frame(self, timeout=None):
        """The next frame, or None when the peer closed or nothing came in time."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + n:
                    ftype, flags = self.buf[3], self.buf[4]
                    sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                    f = Frame(ftype, flags, sid, bytes(self.buf[9:9 + n]))
                    del self.buf[:9 + n]
                    self.frames.append(f)
                    if ftype == SETTINGS and not flags & ACK:
                        self.send_frame(SETTINGS, ACK, 0)
                    self._track(f)
                    return f
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            except (ConnectionResetError, OSError):
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk

    def handshake(self):
        """Reads until the server's SETTINGS; returns them as a dict."""
        while True:
            f = self.recv_frame()
            assert f is not None, "no SETTINGS from the server"
            if f.type == SETTINGS and not f.flags & ACK:
                p = f.payload
                return {struct.unpack(">H", p[i:i + 2])[0]: struct.unpack(">I", p[i + 2:i + 6])[0]
                        for i in range(0, len(p), 6)}

    def expect(self, pred, timeout=None):
        """Reads until pred(frame); None when the connection closed or timed out."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                return None
            if pred(f):
                return f

    def expect_goaway(self, timeout=None):
        """The GOAWAY frame, or Closed() when the peer closed without one."""
        f = self.expect(lambda f: f.type == GOAWAY, timeout)
        if f is None:
            assert self.closed, "neither GOAWAY nor close (frames: %r)" % self.frames[-10:]
            return Closed()
        return f

    def expect_error(self, sid, timeout=None):
        """A stream error (RST_STREAM on sid) or a connection error (GOAWAY)."""
        f = self.expect(lambda f: f.type == GOAWAY or (f.type == RST_STREAM and f.sid == sid), timeout)
        if f is None:
            assert self.closed, "no error frame (frames: %r)" % self.frames[-10:]
            return Closed()
        return f

    def _track(self, f):
        """Response state per stream; HPACK decoding must follow arrival order."""
        if f.type not in (HEADERS, DATA, RST_STREAM) or f.sid == 0:
            return
        st = self.streams.setdefault(f.sid, [{}, bytearray(), False, None])
        if f.type == HEADERS:
            for k, v in self.dec.decode(f.payload):
                st[0][k] = v
        elif f.type == DATA:
            st[1] += f.payload
            if f.payload and self.window_updates:
                self.send_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(f.payload)))
                if not f.flags & END_STREAM:
                    self.send_frame(WINDOW_UPDATE, 0, f.sid, struct.pack(">I", len(f.payload)))
        else:
            st[3] = f
        if f.type in (HEADERS, DATA) and f.flags & END_STREAM:
            st[2] = True

    def response(self, sid, timeout=None):
        """(status, headers dict, body) of the response on sid."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            st = self.streams.get(sid)
            if st is not None and st[2]:
                return int(st[0].get(":status", 0)), st[0], bytes(st[1])
            if st is not None and st[3] is not None:
                raise AssertionError("RST_STREAM %r on stream %d" % (st[3], sid))
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            assert f is not None, "no complete response on stream %d (frames: %r)" % (sid, self.frames[-10:])
            if f.type == GOAWAY and f.error_code != NO_ERROR:
                raise AssertionError("GOAWAY %r while waiting for stream %d" % (f, sid))
