"""PROXY protocol (doc/configuration.md 4.2.1): `proxy_protocol: true` on a
listener (v1 and v2 headers from trusted peers set the client address seen in
X-Forwarded-For and used for geo routing; split headers; garbage, bad
signatures, oversize headers, untrusted peers, missing headers closed without
an answer; LOCAL/UNKNOWN keep the real peer; TLS, h2 over TLS and h2c after
the header), `send_proxy: v1 | v2` on upstreams (byte-exact headers seen by
a raw upstream, one connection per request, health checks with UNKNOWN /
LOCAL), and configuration errors with their line:col."""
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events
import pytest

from conftest import GEO_DB, MERIDIAN_BIN, SLOW, Reader, connect, read_request, read_response, simple_config

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(src, dst, sport, dport, cmd=0x21, tlvs=b""):
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    a = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst) + struct.pack(">HH", sport, dport)
    body = a + tlvs
    return SIG + bytes([cmd, 0x21 if fam == socket.AF_INET6 else 0x11]) + struct.pack(">H", len(body)) + body


V2_LOCAL = SIG + b"\x20\x00\x00\x00"


def pp_config(upstreams, trusted=("127.0.0.1",), listener_extra="", extra="", protocols=None):
    y = ("listeners:\n"
         '  - address: "127.0.0.1:@PORT@"\n'
         "    proxy_protocol: true\n" + listener_extra)
    if protocols:
        y += "    protocols: %s\n" % protocols
    y += "client_ip: {trusted_proxies: [%s]}\n" % ", ".join('"%s"' % t for t in trusted)
    return y + simple_config(upstreams, extra=extra)


def recording_upstream(pyupstream, host="127.0.0.1"):
    """An HTTP/1.1 keep-alive upstream recording each request's headers."""

    def handler(sock, reader, up):
        while True:
            req = read_request(reader)
            if req is None:
                return
            up.record(req)
            body = b"ok\n"
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    return pyupstream.start(handler, host)


def xff_of(req):
    return [v for k, v in req[2] if k.lower() == "x-forwarded-for"]


def send_get(sock, path="/", extra=b""):
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n")
    return read_response(Reader(sock))


def exchange_after(port, header, chunks=None, path="/"):
    """Connects, sends header (whole or in `chunks` pieces) and a GET."""
    s = connect(port)
    try:
        if chunks:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(header), chunks):
                s.sendall(header[i:i + chunks])
                time.sleep(0.01)
        else:
            s.sendall(header)
        return send_get(s, path)
    finally:
        s.close()


def closed_without_answer(port, data, within):
    """The connection is closed (EOF or reset) within `within` seconds with
    no byte answered."""
    s = connect(port)
    t0 = time.monotonic()
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return True, b"", time.monotonic() - t0
        s.settimeout(within * SLOW)
        out = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
        except ConnectionResetError:
            pass
        except socket.timeout:
            return False, out, time.monotonic() - t0
        return True, out, time.monotonic() - t0
    finally:
        s.close()


# --------------------------------------------------------------------------
# listener side
# --------------------------------------------------------------------------

@pytest.mark.parametrize("header,client", [
    (b"PROXY TCP4 203.0.113.50 127.0.0.1 40000 80\r\n", "203.0.113.50"),
    (b"PROXY TCP6 2001:db8::50 ::1 40000 80\r\n", "2001:db8::50"),
    (v2("198.51.100.23", "127.0.0.1", 1234, 80), "198.51.100.23"),
    (v2("2001:db8:1::23", "2001:db8::1", 1234, 443), "2001:db8:1::23"),
    (v2("192.0.2.77", "127.0.0.1", 1, 2, tlvs=b"\x01\x00\x02h2\x04\x00\x03abc"), "192.0.2.77"),
], ids=["v1-tcp4", "v1-tcp6", "v2-ipv4", "v2-ipv6", "v2-tlvs"])
def test_header_source_is_the_client(meridian, pyupstream, header, client):
    up = recording_upstream(pyupstream)
    m = meridian.start(pp_config([up.address]))
    r = exchange_after(m.port, header)
    assert r.status == 200, r
    assert xff_of(up.requests[-1]) == [client], up.requests[-1]


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.51 127.0.0.1 40000 80\r\n",
    v2("2001:db8::51", "::1", 40000, 80),
], ids=["v1", "v2-ipv6"])
def test_header_split_byte_by_byte(meridian, pyupstream, header):
    up = recording_upstream(pyupstream)
    m = meridian.start(pp_config([up.address]))
    r = exchange_after(m.port, header, chunks=1)
    assert r.status == 200, r
    assert xff_of(up.requests[-1])[0] in ("203.0.113.51", "2001:db8::51")


def test_keepalive_requests_keep_the_header_address(meridian, pyupstream):
    up = recording_upstream(pyupstream)
    m = meridian.start(pp_config([up.address]))
    s = connect(m.port)
    try:
        s.sendall(b"PROXY TCP4 203.0.113.60 127.0.0.1 1 2\r\n")
        for _ in range(3):
            assert send_get(s).status == 200
    finally:
        s.close()
    assert [xff_of(r) for r in up.requests] == [["203.0.113.60"]] * 3


def test_access_log_client_is_the_header_source(meridian, pyupstream, tmp_path):
    up = recording_upstream(pyupstream)
    log = str(tmp_path / "access.log")
    m = meridian.start(pp_config([up.address], extra="access_log: {path: %s, format: json}\n" % log))
    assert exchange_after(m.port, v2("2001:db8::99", "::1", 7, 8)).status == 200
    assert exchange_after(m.port, V2_LOCAL).status == 200
    deadline = time.monotonic() + 3 * SLOW
    entries = []
    while time.monotonic() < deadline and len(entries) < 2:
        with open(log) as f:
            entries = [json.loads(ln) for ln in f if ln.strip()]
        time.sleep(0.05)
    assert [e["client_ip"] for e in entries] == ["2001:db8::99", "127.0.0.1"], entries


def test_local_and_unknown_keep_the_real_peer(meridian, pyupstream):
    up = recording_upstream(pyupstream)
    m = meridian.start(pp_config([up.address]))
    for header in (V2_LOCAL, b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
                   SIG + b"\x21\x31\x00\x04abcd"):  # PROXY over a unix socket family: real peer too
        r = exchange_after(m.port, header)
        assert r.status == 200, (header, r)
        assert xff_of(up.requests[-1]) == ["127.0.0.1"], (header, up.requests[-1])


def test_header_address_is_trusted_proxy_for_xff(meridian, pyupstream):
    """The PROXY source is the TCP peer for client_ip: a trusted one lets the
    X-Forwarded-For walk go on, an untrusted one does not."""
    up = recording_upstream(pyupstream)
    m = meridian.start(pp_config([up.address], trusted=("127.0.0.1", "10.0.0.0/8")))
    s = connect(m.port)
    try:
        s.sendall(b"PROXY TCP4 10.1.2.3 127.0.0.1 1 2\r\n")
        r = send_get(s, extra=b"X-Forwarded-For: 198.51.100.1\r\n")
        assert r.status == 200
    finally:
        s.close()
    assert xff_of(up.requests[-1]) == ["198.51.100.1, 10.1.2.3"], up.requests[-1]


def test_geolocation_uses_the_header_source(meridian, pyupstream):
    up1, up2 = recording_upstream(pyupstream), recording_upstream(pyupstream)
    y = ("listeners:\n"
         '  - address: "127.0.0.1:@PORT@"\n'
         "    proxy_protocol: true\n"
         'client_ip: {trusted_proxies: ["127.0.0.1"]}\n'
         'geo: {database: "%s"}\n'
         "regions:\n"
         "  - name: eu-london\n"
         "    location: {latitude: 51.5, longitude: -0.1}\n"
         '    upstreams: [{address: "%s"}]\n'
         "  - name: ap-tokyo\n"
         "    location: {latitude: 35.7, longitude: 139.7}\n"
         '    upstreams: [{address: "%s"}]\n' % (GEO_DB, up1.address, up2.address))
    m = meridian.start(y)
    # 81.2.69.142: London, 2001:218::1: Tokyo in the bundled test database
    r = exchange_after(m.port, b"PROXY TCP4 81.2.69.142 127.0.0.1 1 2\r\n")
    assert r.header("X-Meridian-Region") == "eu-london", r
    r = exchange_after(m.port, v2("2001:218::1", "2001:db8::1", 1, 2))
    assert r.header("X-Meridian-Region") == "ap-tokyo", r
    r = exchange_after(m.port, b"PROXY TCP6 2001:218::1 ::1 1 2\r\n")
    assert r.header("X-Meridian-Region") == "ap-tokyo", r
    r = exchange_after(m.port, v2("81.2.69.142", "127.0.0.1", 1, 2))
    assert r.header("X-Meridian-Region") == "eu-london", r


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",                         # no header: the first byte is wrong
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",                           # h2 preface instead of a header
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",               # a TLS ClientHello
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",                           # LF without CR
    b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",                        # double space
    b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",                       # bad address
    b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",                     # bad port
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",                        # leading zero
    b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",                      # over 107 bytes
    b"PROXY UNKNOWN " + b"x" * 200,                                # no CRLF at all
    SIG[:11] + b"\x0b" + b"\x21\x11\x00\x0c" + b"\x00" * 12,       # bad v2 signature
    SIG + b"\x11\x11\x00\x0c" + b"\x00" * 12,                      # version 1 in binary
    SIG + b"\x23\x11\x00\x0c" + b"\x00" * 12,                      # unknown command
    SIG + b"\x21\x11\x10\x00",                                     # 4096 + 16 bytes: too long
    SIG + b"\x21\x11\x00\x04" + b"\x00" * 4,                       # length below the address block
    SIG + b"\x21\x11\x00\x10" + b"\x00" * 12 + b"\x01\x00\x09x",   # TLV longer than the header
], ids=lambda d: d[:24].hex())
def test_bad_headers_are_closed_at_once(meridian, pyupstream, data):
    up = recording_upstream(pyupstream)
    m = meridian.start(pp_config([up.address], extra="timeouts: {request_header: 10s}\n"))
    closed, out, took = closed_without_answer(m.port, data + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", 3.0)
    assert closed and out == b"", (out, took)
    assert took < 3.0 * SLOW
    assert up.requests == []


def test_missing_or_incomplete_header_closed_at_request_header_timeout(meridian, pyupstream):
    up = recording_upstream(pyupstream)
    m = meridian.start(pp_config([up.address], extra="timeouts: {request_header: 1s}\n"))
    for data in (b"", b"PROXY TCP4 1.2.3.4 ", SIG + b"\x21\x11\x00\x0c\x01\x02"):
        closed, out, took = closed_without_answer(m.port, data, 4.0)
        assert closed and out == b"", (data, out)
        assert 0.8 <= took < 3.5 * SLOW, (data, took)
    # trickling does not extend it: a byte every 0.3 s
    s = connect(m.port)
    t0 = time.monotonic()
    try:
        hdr = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for i in range(len(hdr)):
                s.sendall(hdr[i:i + 1])
                time.sleep(0.3)
        assert time.monotonic() - t0 < 3.0 * SLOW
    finally:
        s.close()
    assert up.requests == []


def test_untrusted_peer_is_closed(meridian, pyupstream):
    up = recording_upstream(pyupstream)
    m = meridian.start(pp_config([up.address], trusted=("10.0.0.0/8", "::1")))
    closed, out, took = closed_without_answer(m.port, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n\r\n", 3.0)
    assert closed and out == b""
    assert took < 2.0 * SLOW
    assert up.requests == []


def test_plain_listener_does_not_take_a_header(meridian, pyupstream):
    """Without proxy_protocol a PROXY line is a bad request (400)."""
    up = recording_upstream(pyupstream)
    m = meridian.start('client_ip: {trusted_proxies: ["127.0.0.1"]}\n' + simple_config([up.address]))
    s = connect(m.port)
    try:
        s.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = read_response(Reader(s))
        assert r.status == 400, r
    finally:
        s.close()


def _cert(d):
    key, crt = os.path.join(d, "pp.key"), os.path.join(d, "pp.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=pp.test",
                    "-addext", "subjectAltName=DNS:pp.test"], check=True, capture_output=True)
    return crt, key


def h2_get(sock, authority="pp.test"):
    """One GET / over HTTP/2 on sock: (status, headers)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", authority)],
                      end_stream=True)
    sock.sendall(conn.data_to_send())
    status, done = None, False
    while not done:
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers)[":status"]
            if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        sock.sendall(conn.data_to_send())
    return status


@pytest.mark.parametrize("alpn", ["http/1.1", "h2"])
def test_tls_listener_after_the_header(meridian, pyupstream, tmp_path, alpn):
    up = recording_upstream(pyupstream)
    crt, key = _cert(str(tmp_path))
    tls = ("    tls:\n"
           "      certificates: [{cert: %s, key: %s}]\n" % (crt, key))
    m = meridian.start(pp_config([up.address], listener_extra=tls, protocols="[h2, http1]"))
    for header, client in ((b"PROXY TCP4 203.0.113.70 127.0.0.1 1 443\r\n", "203.0.113.70"),
                           (v2("2001:db8::70", "2001:db8::1", 1, 443), "2001:db8::70")):
        raw = connect(m.port)
        raw.sendall(header)
        ctx = ssl.create_default_context(cafile=crt)
        ctx.set_alpn_protocols([alpn])
        s = ctx.wrap_socket(raw, server_hostname="pp.test")
        try:
            assert s.selected_alpn_protocol() == alpn
            if alpn == "h2":
                assert h2_get(s) == "200"
            else:
                assert send_get(s).status == 200
        finally:
            s.close()
        assert xff_of(up.requests[-1]) == [client], up.requests[-1]


def test_h2c_after_the_header(meridian, pyupstream):
    up = recording_upstream(pyupstream)
    m = meridian.start(pp_config([up.address], protocols="[http1, h2c]"))
    s = connect(m.port)
    try:
        s.sendall(v2("198.51.100.80", "127.0.0.1", 5, 80))
        assert h2_get(s) == "200"
    finally:
        s.close()
    assert xff_of(up.requests[-1]) == ["198.51.100.80"], up.requests[-1]


def test_reload_turns_proxy_protocol_on_and_off(meridian, pyupstream):
    """SIGHUP: new connections follow the new setting; a connection open
    across the reload keeps the one it was accepted with."""
    up = recording_upstream(pyupstream)
    m = meridian.start('client_ip: {trusted_proxies: ["127.0.0.1"]}\n'
                       'listeners: [{address: "127.0.0.1:@PORT@"}]\n' + simple_config([up.address]))
    old = connect(m.port)
    assert send_get(old).status == 200
    with open(m.conf, "w") as f:
        f.write(m.yaml_text.replace('{address: "127.0.0.1:%d"}' % m.port,
                                    '{address: "127.0.0.1:%d", proxy_protocol: true}' % m.port))
    m.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5 * SLOW
    while "configuration reloaded" not in m.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "configuration reloaded" in m.stderr(), m.stderr()
    try:
        assert send_get(old).status == 200  # accepted before: no header expected
    finally:
        old.close()
    closed, out, _ = closed_without_answer(m.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", 3.0)
    assert closed and out == b""
    assert exchange_after(m.port, b"PROXY TCP4 203.0.113.90 127.0.0.1 1 2\r\n").status == 200
    assert xff_of(up.requests[-1]) == ["203.0.113.90"]
    with open(m.conf, "w") as f:
        f.write(m.yaml_text)
    m.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5 * SLOW
    while m.stderr().count("configuration reloaded") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert exchange_after(m.port, b"").status == 200


# --------------------------------------------------------------------------
# upstream side: send_proxy
# --------------------------------------------------------------------------

class PPUpstream:
    """A raw upstream that reads a PROXY header (v1 up to CRLF, v2 16 + len)
    before each connection's HTTP/1.1 requests, and answers keep-alive."""

    def __init__(self, pyupstream):
        self.headers = []  # (header bytes, [request, ...]) per connection
        self.lock = threading.Lock()

        def handler(sock, reader, up):
            first = reader.read_exact(1)
            if first == b"P":
                hdr = first
                while not hdr.endswith(b"\r\n"):
                    hdr += reader.read_exact(1)
            elif first != b"\r":  # no header: plain HTTP
                hdr = b""
                reader.buf[:0] = first
            else:
                hdr = first + reader.read_exact(15)
                hdr += reader.read_exact(struct.unpack(">H", hdr[14:16])[0])
            reqs = []
            with self.lock:
                self.headers.append((hdr, reqs))
            while True:
                req = read_request(reader)
                if req is None:
                    return
                reqs.append(req)
                if req[1] == "/healthz":
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")

        self.up = pyupstream.start(handler)
        self.address = self.up.address

    def served(self):
        with self.lock:
            return [(h, list(r)) for h, r in self.headers if r and r[0][1] != "/healthz"]


def send_proxy_config(address, version, listener="", extra="", region_extra=""):
    return (listener + extra +
            "regions:\n"
            "  - name: r1\n"
            "    location: {latitude: 50.1, longitude: 8.7}\n" + region_extra +
            '    upstreams: [{address: "%s", send_proxy: %s}]\n' % (address, version))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_proxy_from_a_plain_listener(meridian, pyupstream, version):
    up = PPUpstream(pyupstream)
    m = meridian.start(send_proxy_config(up.address, version))
    s = connect(m.port)
    try:
        cport = s.getsockname()[1]
        for _ in range(2):
            assert send_get(s).status == 200
    finally:
        s.close()
    served = up.served()
    # two requests on one client connection: two upstream connections (not pooled)
    assert len(served) == 2 and all(len(r) == 1 for _, r in served), served
    if version == "v1":
        want = b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (cport, m.port)
    else:
        want = v2("127.0.0.1", "127.0.0.1", cport, m.port)
    assert [h for h, _ in served] == [want, want]


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_send_proxy_from_http2_clients(meridian, pyupstream, tmp_path, tls):
    """HTTP/2 connections (h2c, TLS + ALPN h2) without a PROXY header in
    front: the header sent upstream has the real peer and local address."""
    up = PPUpstream(pyupstream)
    if tls:
        crt, key = _cert(str(tmp_path))
        listener = ('listeners:\n  - address: "127.0.0.1:@PORT@"\n    protocols: [h2, http1]\n'
                    "    tls: {certificates: [{cert: %s, key: %s}]}\n" % (crt, key))
    else:
        listener = 'listeners: [{address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}]\n'
    m = meridian.start(send_proxy_config(up.address, "v2", listener=listener))
    s = connect(m.port)
    cport = s.getsockname()[1]
    if tls:
        ctx = ssl.create_default_context(cafile=crt)
        ctx.set_alpn_protocols(["h2"])
        s = ctx.wrap_socket(s, server_hostname="pp.test")
    try:
        assert h2_get(s) == "200"
    finally:
        s.close()
    assert [h for h, _ in up.served()] == [v2("127.0.0.1", "127.0.0.1", cport, m.port)]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_proxy_passes_the_incoming_header_on(meridian, pyupstream, version):
    up = PPUpstream(pyupstream)
    listener = ('listeners: [{address: "127.0.0.1:@PORT@", proxy_protocol: true}]\n'
                'client_ip: {trusted_proxies: ["127.0.0.1"]}\n')
    m = meridian.start(send_proxy_config(up.address, version, listener=listener))
    r = exchange_after(m.port, b"PROXY TCP4 198.51.100.9 192.0.2.10 5555 443\r\n")
    assert r.status == 200
    r = exchange_after(m.port, v2("2001:db8::9", "2001:db8::10", 6666, 8443))
    assert r.status == 200
    hdrs = [h for h, _ in up.served()]
    if version == "v1":
        assert hdrs == [b"PROXY TCP4 198.51.100.9 192.0.2.10 5555 443\r\n",
                        b"PROXY TCP6 2001:db8::9 2001:db8::10 6666 8443\r\n"]
    else:
        assert hdrs == [v2("198.51.100.9", "192.0.2.10", 5555, 443), v2("2001:db8::9", "2001:db8::10", 6666, 8443)]
    # a LOCAL header: the real connection's addresses go on
    s = connect(m.port)
    try:
        cport = s.getsockname()[1]
        s.sendall(V2_LOCAL)
        assert send_get(s).status == 200
    finally:
        s.close()
    last = up.served()[-1][0]
    if version == "v1":
        assert last == b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (cport, m.port)
    else:
        assert last == v2("127.0.0.1", "127.0.0.1", cport, m.port)


@pytest.mark.parametrize("version,want", [("v1", b"PROXY UNKNOWN\r\n"), ("v2", V2_LOCAL)])
def test_health_checks_send_unknown_or_local(meridian, pyupstream, version, want):
    up = PPUpstream(pyupstream)
    hc = "    health_check: {path: /healthz, interval: 200ms, timeout: 1s}\n"
    meridian.start(send_proxy_config(up.address, version, region_extra=hc))
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline:
        with up.lock:
            checks = [h for h, r in up.headers if r and r[0][1] == "/healthz"]
        if checks:
            break
        time.sleep(0.05)
    assert checks and all(h == want for h in checks), up.headers


def test_same_address_with_and_without_send_proxy(meridian, pyupstream):
    """Two regions list one address, one with send_proxy: each entry is its
    own upstream, so a plain request never gets a PROXY connection (nor one
    pooled from the other) and each PROXY request has its own connection."""
    up = PPUpstream(pyupstream)
    y = ('client_ip: {trusted_proxies: ["127.0.0.1"]}\n'
         "geo:\n  networks:\n"
         '    - {cidr: "10.8.8.0/24", latitude: 50.0, longitude: 8.0}\n'
         '    - {cidr: "10.9.9.0/24", latitude: -33.9, longitude: 151.2}\n'
         "regions:\n"
         "  - name: near\n"
         "    location: {latitude: 50.1, longitude: 8.7}\n"
         '    upstreams: [{address: "%s", send_proxy: v1}]\n'
         "  - name: far\n"
         "    location: {latitude: -33.8, longitude: 151.0}\n"
         '    upstreams: [{address: "%s"}]\n' % (up.address, up.address))
    m = meridian.start(y)
    s = connect(m.port)
    try:
        for xff in ("10.8.8.1", "10.9.9.1", "10.9.9.1", "10.8.8.1"):
            r = send_get(s, extra=b"X-Forwarded-For: " + xff.encode() + b"\r\n")
            assert r.status == 200
            assert r.header("X-Meridian-Region") == ("near" if xff.startswith("10.8") else "far")
    finally:
        s.close()
    served = up.served()
    proxied = [h for h, r in served if h]
    plain = [r for h, r in served if not h]
    # two PROXY connections of one request each; the plain requests share a pooled connection
    assert len(proxied) == 2 and all(h.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ") for h in proxied), served
    assert sum(len(r) for r in plain) == 2 and len(plain) == 1, served


# --------------------------------------------------------------------------
# configuration errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("text,pos,msg", [
    ('listeners:\n  - address: "127.0.0.1:1"\n    proxy_protocol: true\n', "3:21",
     "listeners[0].proxy_protocol: needs client_ip.trusted_proxies"),
    ('listeners:\n  - address: "127.0.0.1:1"\n    proxy_protocol: on\n', "3:21",
     'listeners[0].proxy_protocol: expected true or false, got "on"'),
    ('listeners: [{address: "127.0.0.1:1"}]\nregions:\n  - name: a\n    location: {latitude: 1, longitude: 2}\n'
     '    upstreams: [{address: "127.0.0.1:2", send_proxy: v3}]\n', "5:54",
     'regions[0].upstreams[0].send_proxy: expected one of v1, v2, got "v3"'),
])
def test_config_errors(tmp_path, text, pos, msg):
    if "regions:" not in text:
        text += "regions:\n  - name: a\n    location: {latitude: 1, longitude: 2}\n" \
                '    upstreams: [{address: "127.0.0.1:2"}]\n'
    path = str(tmp_path / "pp.yaml")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([MERIDIAN_BIN, "-t", "-c", path], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "%s:%s: %s" % (path, pos, msg) in r.stderr, r.stderr
