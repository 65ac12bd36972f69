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
