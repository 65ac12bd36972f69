"""Basic proxying (SPEC 3.6): methods, status pass-through, added and removed headers."""
import http.client

import pytest

from conftest import (SLOW, HttpConn, ipv6_available, keepalive_handler, read_request, simple_config)


def echo_headers(resp):
    """(name lower, value) pairs the upstream saw, from /echo JSON."""
    return [(k.lower(), v) for k, v in resp.json()["headers"]]


def values(pairs, name):
    return [v for k, v in pairs if k == name]


def split_list(vals):
    out = []
    for v in vals:
        out += [t.strip() for t in v.split(",") if t.strip()]
    return out


@pytest.fixture
def proxy(meridian, backend):
    m = meridian.start(simple_config([backend.address], region="eu-central"))
    m.backend = backend
    return m


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_reach_upstream(proxy, method):
    body = b"payload-" + method.encode() if method in ("POST", "PUT", "PATCH") else b""
    r = proxy.request(method, "/echo?x=1&y=%20z", body=body)
    assert r.status == 200, r
    j = r.json()
    assert j["method"] == method
    assert j["uri"] == "/echo?x=1&y=%20z"
    assert j["version"] == "HTTP/1.1"
    assert j["body_bytes"] == len(body)
    assert r.header("X-Backend") == "b1"


def test_head_has_no_body_but_length(proxy):
    with proxy.conn() as c:
        r = c.request("HEAD", "/?size=12345")
        assert r.status == 200
        assert r.header("Content-Length") == "12345"
        assert r.body == b""
        # the connection is still usable: a body leaking from HEAD would break this
        r2 = c.request("GET", "/echo")
        assert r2.status == 200 and r2.json()["method"] == "GET"


@pytest.mark.parametrize("status", [201, 204, 301, 304, 404, 418, 500, 503])
def test_status_codes_passed_through(proxy, status):
    with proxy.conn() as c:
        r = c.request("GET", "/?status=%d" % status)
        assert r.status == status, r
        assert r.header("X-Backend") == "b1", "status %d was not the upstream's" % status
        if status in (204, 304):
            assert r.body == b""
        # keep-alive survives every status
        r2 = c.request("GET", "/echo")
        assert r2.status == 200


def test_region_and_via_on_response(proxy):
    r = proxy.request("GET", "/")
    assert r.status == 200
    assert r.header_all("X-Meridian-Region") == ["eu-central"]
    assert any("1.1 meridian" in v for v in r.header_all("Via")), r.headers
    assert r.body == b"b1\n"


def test_region_header_can_be_disabled(meridian, backend):
    m = meridian.start(simple_config([backend.address], extra="response_headers: {region: false}\n"))
    r = m.request("GET", "/")
    assert r.status == 200
    assert r.header("X-Meridian-Region") is None


def test_request_forwarding_headers(proxy):
    r = proxy.request("GET", "/echo", headers=[("X-Forwarded-For", "203.0.113.7"), ("Via", "1.0 edge")])
    h = echo_headers(r)
    assert split_list(values(h, "x-forwarded-for")) == ["203.0.113.7", "127.0.0.1"], h
    assert values(h, "x-forwarded-proto") == ["http"], h
    assert split_list(values(h, "via")) == ["1.0 edge", "1.1 meridian"], h
    assert values(h, "host") == ["test"], h


def test_xff_added_when_absent_and_spoofed_proto_replaced(proxy):
    r = proxy.request("GET", "/echo", headers=[("X-Forwarded-Proto", "https")])
    h = echo_headers(r)
    assert split_list(values(h, "x-forwarded-for")) == ["127.0.0.1"], h
    assert values(h, "x-forwarded-proto") == ["http"], h


def test_end_to_end_headers_preserved(proxy):
    hdrs = [("X-Custom", "a b  c"), ("Accept", "*/*"), ("Cookie", "a=1"), ("Cookie", "b=2"),
            ("Authorization", "Bearer xyz")]
    r = proxy.request("GET", "/echo", headers=hdrs)
    h = echo_headers(r)
    assert values(h, "x-custom") == ["a b  c"]
    assert values(h, "accept") == ["*/*"]
    assert values(h, "cookie") in (["a=1", "b=2"], ["a=1; b=2"])
    assert values(h, "authorization") == ["Bearer xyz"]


def test_hop_by_hop_request_headers_removed(proxy):
    hdrs = [("Connection", "keep-alive, X-Hop-One, x-hop-two"), ("X-Hop-One", "1"), ("X-Hop-Two", "2"),
            ("Keep-Alive", "timeout=77, max=99"), ("TE", "trailers"), ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "h2c"), ("X-End", "kept")]
    r = proxy.request("GET", "/echo", headers=hdrs)
    assert r.status == 200
    h = echo_headers(r)
    names = [k for k, _ in h]
    # RFC 9110 7.6.1: Connection-listed names, Proxy-Connection, Keep-Alive, TE, Upgrade
    for hop in ("x-hop-one", "x-hop-two", "keep-alive", "te", "proxy-connection", "upgrade"):
        assert hop not in names, "%s reached the upstream: %r" % (hop, h)
    for v in values(h, "connection"):
        assert "x-hop" not in v.lower(), h
    assert values(h, "x-end") == ["kept"]


def test_hop_by_hop_response_headers_removed(meridian, pyupstream):
    up = pyupstream.start(keepalive_handler("py", extra_headers=[
        ("Connection", "X-Resp-Hop"), ("X-Resp-Hop", "secret"), ("Keep-Alive", "timeout=77, max=99"),
        ("Proxy-Connection", "keep-alive"), ("Upgrade", "h2c"),
        ("X-End", "kept")]))
    m = meridian.start(simple_config([up.address]))
    with m.conn() as c:
        r = c.request("GET", "/")
        assert r.status == 200
        assert r.body == b"py\n"
        names = [k.lower() for k, _ in r.headers]
        assert "x-resp-hop" not in names, r.headers
        assert "proxy-connection" not in names, r.headers
        assert "upgrade" not in names, r.headers
        assert "timeout=77, max=99" not in r.header_all("Keep-Alive"), r.headers
        assert all("x-resp-hop" not in v.lower() for v in r.header_all("Connection")), r.headers
        assert r.header("X-End") == "kept"
        # the upstream's "Connection: X-Resp-Hop" must not close the client side
        r2 = c.request("GET", "/again")
        assert r2.status == 200


def test_client_keepalive_via_http_client(proxy):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10 * SLOW)
    try:
        for i in range(5):
            conn.request("GET", "/echo?i=%d" % i)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200
            assert b'"uri":"/echo?i=%d"' % i in body
    finally:
        conn.close()


def test_http10_client_gets_complete_response_and_close(proxy):
    data, closed = proxy.raw_closed(b"GET /echo HTTP/1.0\r\nX-A: 1\r\n\r\n", timeout=5)
    assert closed, "HTTP/1.0 connection without keep-alive was not closed"
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") or head.startswith(b"HTTP/1.0 200 "), data
    lines = head.split(b"\r\n")[1:]
    hdrs = {l.split(b":", 1)[0].strip().lower(): l.split(b":", 1)[1].strip() for l in lines}
    assert b"transfer-encoding" not in hdrs, "chunked sent to an HTTP/1.0 client: %r" % data
    if b"content-length" in hdrs:
        assert int(hdrs[b"content-length"]) == len(body), data
    assert body.startswith(b"{") and body.endswith(b"}\n"), data


def test_http10_client_chunked_upstream_body_is_dechunked(proxy):
    # the upstream answers HTTP/1.1 chunked to meridian; an HTTP/1.0 client
    # must not see chunk framing
    data, closed = proxy.raw_closed(b"GET /?size=5000&chunked=1 HTTP/1.0\r\n\r\n", timeout=5)
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], data[:300]
    assert b"chunked" not in head.lower(), head
    assert body == b"x" * 5000, (len(body), body[:64])


def test_http10_keepalive_honoured(proxy):
    with proxy.conn() as c:
        c.send(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.response()
        assert r.status == 200
        assert r.header("Content-Length") is not None, "keep-alive 1.0 response needs a length"
        c.send(b"GET /echo?second HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r2 = c.response()
        assert r2.json()["uri"] == "/echo?second"


def test_connection_close_from_client(proxy):
    with proxy.conn() as c:
        r = c.request("GET", "/echo", headers=[("Connection", "close")])
        assert r.status == 200
        assert r.has_token("Connection", "close")
        assert c.closed(timeout=3), "meridian kept the connection open after Connection: close"


def test_absolute_form_target_forwarded_in_origin_form(meridian, pyupstream):
    # RFC 9112 3.2.2: a server MUST accept absolute-form; 3.2.1: towards an
    # origin server only the path and query are sent
    up = pyupstream.start(keepalive_handler("py"))
    m = meridian.start(simple_config([up.address]))
    r = m.request("GET", "http://test/echo?abs=1")
    assert r.status == 200, r
    assert len(up.requests) == 1
    method, target, headers, _ = up.requests[0]
    assert target == "/echo?abs=1", "upstream got request-target %r" % target


needs_v6 = pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback on this machine")


@needs_v6
def test_ipv6_listener(meridian, backend):
    m = meridian.start(simple_config([backend.address]), listen_host="::1")
    r = m.request("GET", "/echo")
    assert r.status == 200
    h = echo_headers(r)
    assert split_list(values(h, "x-forwarded-for")) == ["::1"], h
    assert r.header("X-Meridian-Region") == "r1"


@needs_v6
def test_ipv6_upstream(meridian, backends):
    b6 = backends.start("v6", hosts=("::1",))
    assert b6.address.startswith("[::1]:")
    m = meridian.start(simple_config([b6.address]))
    r = m.request("GET", "/echo", body=b"")
    assert r.status == 200
    assert r.header("X-Backend") == "v6"
    assert r.json()["method"] == "GET"


def test_large_number_of_headers_forwarded_intact(proxy):
    hdrs = [("X-H%02d" % i, "v%d" % i * 10) for i in range(60)]
    r = proxy.request("GET", "/echo", headers=hdrs)
    assert r.status == 200
    h = echo_headers(r)
    for k, v in hdrs:
        assert values(h, k.lower()) == [v]


def test_response_with_upstream_close_delimited_body(meridian, pyupstream):
    """An upstream body delimited by connection close still reaches the client whole."""
    payload = b"z" * 70000

    def handler(sock, reader, up):
        read_request(reader)
        sock.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: eof\r\n\r\n" + payload)
        sock.shutdown(2)

    up = pyupstream.start(handler)
    m = meridian.start(simple_config([up.address]))
    with m.conn() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.response()
        assert r.status == 200
        assert r.body == payload
