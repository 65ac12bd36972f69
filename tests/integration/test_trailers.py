"""Response trailers from a chunked upstream reach HTTP/1.1 clients (chunked)
and HTTP/2 clients (a trailing HEADERS frame); connection-specific fields in
them are dropped."""
import subprocess

from conftest import read_request, simple_config

BODY = b"hello, trailers"


def trailer_handler(sock, reader, up):
    while True:
        req = read_request(reader)
        if req is None:
            return
        up.record(req)
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                     + b"%x\r\n" % len(BODY) + BODY + b"\r\n"
                     + b"0\r\nX-Checksum: abc123\r\nGrpc-Status: 0\r\nKeep-Alive: timeout=5\r\n\r\n")


def test_trailers_to_http1_client(meridian, pyupstream):
    up = pyupstream.start(trailer_handler)
    m = meridian.start(simple_config([up.address]))
    got = m.raw(b"GET / HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nConnection: close\r\n\r\n", timeout=5)
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), got
    assert b"transfer-encoding: chunked" in head.lower()
    assert rest.startswith(b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n"), rest
    assert b"X-Checksum: abc123\r\n" in rest and b"Grpc-Status: 0\r\n" in rest
    assert b"keep-alive" not in rest.lower()  # connection-specific: dropped, as for HTTP/2


def test_trailers_without_fields_end_cleanly(meridian, backend):
    m = meridian.start(simple_config([backend.address]))
    got = m.raw(b"GET /?size=10&chunked=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout=5)
    assert got.endswith(b"0\r\n\r\n"), got[-40:]


def test_trailers_to_http2_client(meridian, pyupstream):
    up = pyupstream.start(trailer_handler)
    m = meridian.start('listeners: [{address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}]\n'
                       + simple_config([up.address]))
    p = subprocess.run(["nghttp", "-v", "-n", "http://127.0.0.1:%d/" % m.port], capture_output=True, text=True,
                       timeout=20)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    # nghttp prints a frame's fields before the frame line: after the DATA
    # frame come the trailer fields, then a HEADERS frame ending the stream
    after_data = out[out.index("recv DATA frame"):]
    assert "x-checksum: abc123" in after_data and "grpc-status: 0" in after_data, out
    assert "keep-alive" not in after_data  # connection-specific: dropped
    last_headers = after_data[after_data.index("recv HEADERS frame"):]
    assert "END_STREAM" in last_headers.split("\n", 2)[1], last_headers[:200]


def _read_line(reader):
    line = reader.read_line()
    if not line:
        raise EOFError
    return line


def request_trailer_handler(sock, reader, up):
    """Reads requests with chunked (or sized) bodies; records (head, body,
    trailer lines) and answers 200."""
    while True:
        try:
            head = []
            while True:
                line = _read_line(reader)
                if line in (b"\r\n", b"\n"):
                    break
                head.append(line.decode().rstrip("\r\n"))
        except EOFError:
            return
        fields = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip() for ln in head[1:]}
        body, trailers = b"", []
        if fields.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(_read_line(reader).split(b";")[0], 16)
                if size == 0:
                    break
                body += reader.read_exact(size)
                _read_line(reader)
            while True:
                line = _read_line(reader)
                if line in (b"\r\n", b"\n"):
                    break
                trailers.append(line.decode().rstrip("\r\n"))
        elif "content-length" in fields:
            body = reader.read_exact(int(fields["content-length"]))
        up.record((head, body, trailers))
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def _h2c(up_address):
    return ('listeners: [{address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}]\n'
            + simple_config([up_address]))


def test_request_trailers_from_http1_client_reach_the_upstream(meridian, pyupstream):
    up = pyupstream.start(request_trailer_handler)
    m = meridian.start(simple_config([up.address]))
    got = m.raw(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n"
                b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42 \r\n"
                b"Content-Length: 11\r\nHost: evil\r\nX-Empty:\r\n\r\n", timeout=5)
    assert got.startswith(b"HTTP/1.1 200"), got
    head, body, trailers = up.requests[-1]
    assert body == b"hello world"
    # framing and routing fields are dropped from trailers, the rest pass
    assert trailers == ["X-Sum: 42", "X-Empty: "], trailers


def test_request_trailers_from_http2_client_reach_the_upstream(meridian, pyupstream):
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "h2conformance"))
    from h2raw import DATA, END_HEADERS, END_STREAM, HEADERS, H2Raw
    up = pyupstream.start(request_trailer_handler)
    m = meridian.start(_h2c(up.address))
    with H2Raw(m.port) as c:
        c.handshake()
        c.request(1, method="POST", path="/grpc", end_stream=False)
        c.send_frame(DATA, 0, 1, b"payload")
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1,
                     c.header_block([("grpc-timeout", "1S"), ("x-sum", "7"), ("te", "trailers")]))
        status, _, body = c.response(1)
        assert status == 200 and body == b"ok"
        # with a content-length the upstream request cannot carry trailers:
        # they are dropped and the request still succeeds
        c.request(3, method="POST", path="/sized", extra=[("content-length", "3")], end_stream=False)
        c.send_frame(DATA, 0, 3, b"abc")
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 3, c.header_block([("x-sum", "8")]))
        status, _, _ = c.response(3)
        assert status == 200
    (h1, b1, t1), (h2, b2, t2) = up.requests[-2:]
    assert h1[0].startswith("POST /grpc ") and b1 == b"payload"
    assert "grpc-timeout: 1S" in t1 and "x-sum: 7" in t1 and not any(t.startswith("te:") for t in t1), t1
    assert h2[0].startswith("POST /sized ") and b2 == b"abc" and t2 == []


def test_oversized_request_trailers_reset_the_stream_only(meridian, pyupstream):
    """HTTP/2 request trailers over limits.max_header_bytes reset that stream
    (the request never completes upstream); the connection serves on."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "h2conformance"))
    from h2raw import DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, RST_STREAM, H2Raw
    up = pyupstream.start(request_trailer_handler)
    m = meridian.start('listeners: [{address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}]\n'
                       + simple_config([up.address], extra="limits: {max_header_bytes: 2048}\n"))
    with H2Raw(m.port) as c:
        c.handshake()
        c.request(1, method="POST", path="/big", end_stream=False)
        c.send_frame(DATA, 0, 1, b"payload")
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1,
                     c.header_block([("x-a", "a" * 1000), ("x-b", "b" * 1000), ("x-c", "c" * 1000)]))
        f = c.expect(lambda f: (f.type == RST_STREAM and f.sid == 1) or f.type == GOAWAY)
        assert f is not None and f.type == RST_STREAM, f
        c.request(3)
        status, _, body = c.response(3)
        assert status == 200 and body == b"ok"
    assert not any(r[0][0].startswith("POST /big ") and r[2] for r in up.requests), up.requests
