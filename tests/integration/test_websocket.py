"""WebSocket upgrade tunnelled after the upstream's 101 (SPEC 3.6)."""
import base64
import hashlib
import os
import socket
import threading
import time

from conftest import SLOW, HttpConn, keepalive_handler, read_request, simple_config

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
GREETING = b"server-says-hi"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def ws_echo_handler(sock, reader, up):
    """Answers an upgrade with 101, sends a greeting, then echoes raw bytes."""
    req = read_request(reader)
    up.record(req)
    method, target, headers, _ = req
    h = {k.lower(): v for k, v in headers}
    if "websocket" not in h.get("upgrade", "").lower() or "upgrade" not in h.get("connection", "").lower():
        body = b"no upgrade\n"
        sock.sendall(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return
    sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\n\r\n" % ws_accept(h.get("sec-websocket-key", ""))).encode()
                 + GREETING)
    if reader.buf:
        sock.sendall(bytes(reader.buf))
        reader.buf.clear()
    while True:
        d = sock.recv(65536)
        if not d:
            return
        sock.sendall(d)


def upgrade_request(key, path="/chat"):
    return ("GET %s HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n" % (path, key)).encode()


def recv_exact(c, n, what="bytes"):
    c.sock.settimeout(5 * SLOW)
    try:
        return c.reader.read_exact(n)
    except socket.timeout:
        raise AssertionError("tunnel stalled: %s, got %d of %d bytes back" % (what, len(c.reader.buf), n))


def test_websocket_upgrade_and_bidirectional_bytes(meridian, pyupstream):
    up = pyupstream.start(ws_echo_handler)
    m = meridian.start(simple_config([up.address]))
    key = base64.b64encode(os.urandom(16)).decode()
    with HttpConn(m.port) as c:
        c.send(upgrade_request(key))
        r = c.response()
        assert r.status == 101, r
        assert r.header("Upgrade", "").lower() == "websocket"
        assert r.has_token("Connection", "upgrade")
        assert r.header("Sec-WebSocket-Accept") == ws_accept(key)
        # upstream -> client without any client bytes first
        assert recv_exact(c, len(GREETING), "upstream->client greeting") == GREETING
        # client -> upstream -> client, small and large
        for payload in (b"\x81\x05hello", os.urandom(256 * 1024), b"x"):
            # send from another thread: the echo path only buffers so much
            sender = threading.Thread(target=c.send, args=(payload,))
            sender.start()
            got = recv_exact(c, len(payload), "client->upstream->client echo of %d bytes" % len(payload))
            sender.join()
            assert got == payload
    # the upstream saw the upgrade headers (hop-by-hop, but needed here)
    _, target, headers, _ = up.requests[0]
    h = {k.lower(): v for k, v in headers}
    assert target == "/chat"
    assert h.get("upgrade", "").lower() == "websocket"
    assert "upgrade" in h.get("connection", "").lower()
    assert h.get("sec-websocket-key") == key


def test_websocket_client_close_closes_upstream(meridian, pyupstream):
    up = pyupstream.start(ws_echo_handler)
    m = meridian.start(simple_config([up.address]))
    s = socket.create_connection(("127.0.0.1", m.port), timeout=5 * SLOW)
    s.sendall(upgrade_request(base64.b64encode(os.urandom(16)).decode()))
    data = b""
    while GREETING not in data:
        d = s.recv(4096)
        assert d, data
        data += d
    assert data.startswith(b"HTTP/1.1 101 ")
    s.close()
    # the tunnel's upstream side is closed too: the echo thread ends, and
    # meridian keeps serving other clients
    time.sleep(0.3)
    assert m.alive()
    with HttpConn(m.port) as c:
        c.send(upgrade_request(base64.b64encode(os.urandom(16)).decode(), "/second"))
        assert c.response().status == 101
        assert recv_exact(c, len(GREETING)) == GREETING


def test_upstream_refusing_upgrade_passes_response_through(meridian, pyupstream):
    up = pyupstream.start(keepalive_handler("plain"))
    m = meridian.start(simple_config([up.address]))
    with HttpConn(m.port) as c:
        c.send(upgrade_request("dGhlIHNhbXBsZSBub25jZQ=="))
        r = c.response()
        assert r.status == 200
        assert r.body == b"plain\n"
        # not switched: the connection still speaks HTTP
        r2 = c.request("GET", "/next")
        assert r2.status == 200


def test_websocket_through_ipv4_with_mrd_backend_plain_get(meridian, backend):
    """A GET without Upgrade is plain HTTP even with Connection: upgrade."""
    m = meridian.start(simple_config([backend.address]))
    r = m.request("GET", "/echo", headers=[("Connection", "upgrade")])
    assert r.status == 200
    names = [k.lower() for k, _ in r.json()["headers"]]
    assert "upgrade" not in names
