"""TLS to upstreams (SPEC 7, regions[].upstream_tls): chain and name
verification (wrong CA, wrong name, expired: 502 and one log line per
upstream and minute saying why), SNI, IP literals verified without SNI,
mTLS, pooled TLS connections, session resumption, health checks over TLS,
verify: false, and every configuration error.

Certificates are made per test with `openssl` in tmp_path (an expired one
with `openssl x509 -days -1`: its notAfter is a day before its notBefore).
Upstreams are Python `ssl` servers counting handshakes, resumed sessions,
SNI names and client certificates."""
import os
import re
import signal
import ssl
import subprocess
import threading
import time

import pytest

from conftest import MERIDIAN_BIN, SLOW, HttpConn, Reader, read_request, simple_config, wait_for


def _run(*args):
    subprocess.run(list(args), check=True, capture_output=True, timeout=60)


class Pki:
    """A test CA (and a second, unrelated one) signing leaf certificates."""

    def __init__(self, d):
        self.d = str(d)
        self.ca = self._ca("ca")
        self.other_ca = self._ca("other-ca")

    def _ca(self, name):
        crt, key = os.path.join(self.d, name + ".crt"), os.path.join(self.d, name + ".key")
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + name,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        return crt, key

    def leaf(self, name, san, days=2, ca=None, client=False):
        ca_crt, ca_key = ca or self.ca
        key, csr, crt = (os.path.join(self.d, name + ext) for ext in (".key", ".csr", ".crt"))
        ext = os.path.join(self.d, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=%s\n" % (san, "clientAuth" if client else "serverAuth"))
        _run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
             "-out", csr, "-subj", "/CN=" + name)
        _run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
             "-days", str(days), "-extfile", ext, "-out", crt)
        return crt, key


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


class TlsUpstream:
    """HTTP/1.1 keep-alive over TLS on 127.0.0.1; counts what it saw."""

    def __init__(self, cert, client_ca=None, close_each=False, close_idle_after=None, hold_close=None,
                 proxy_header=False):
        self.proxy_header = proxy_header  # a PROXY protocol v1 line comes first, in clear
        self.headers = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(*cert)
        if client_ca:
            self.ctx.load_verify_locations(client_ca)
            self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.sni_callback = self._sni
        self.ctx.set_alpn_protocols(["h2", "http/1.1"])
        self.close_each = close_each
        self.close_idle_after = close_idle_after  # seconds idle, then close_notify and close
        self.hold_close = hold_close  # seconds to hold a request, then close without a response
        self.lock = threading.Lock()
        self.handshakes = self.resumed = self.failed = 0
        self.snis, self.client_cns, self.paths, self.alpn = [], [], [], []
        self.health_status = 200
        import socket
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _sni(self, sslobj, name, ctx):
        with self.lock:
            self.snis.append(name)

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, raw):
        raw.settimeout(30)
        if self.proxy_header:
            line = b""
            while not line.endswith(b"\r\n") and len(line) < 108:
                c = raw.recv(1)  # byte by byte: nothing of the ClientHello is consumed
                if not c:
                    break
                line += c
            with self.lock:
                self.headers.append(line)
        s = self.ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        try:
            s.do_handshake()
        except (OSError, ssl.SSLError):
            with self.lock:
                self.failed += 1
            # let the alert be read before the close: closing with meridian's
            # unread request (TLS 1.3 sends it before the server's verdict)
            # resets the connection and may drop the alert
            time.sleep(0.3)
            s.close()
            return
        with self.lock:
            self.handshakes += 1
            self.resumed += 1 if s.session_reused else 0
            self.alpn.append(s.selected_alpn_protocol())
            peer = s.getpeercert()
            if peer:
                self.client_cns.append(dict(x[0] for x in peer["subject"])["commonName"])
        try:
            reader = Reader(s)
            while True:
                req = read_request(reader)
                if req is None:
                    break
                with self.lock:
                    self.paths.append(req[1])
                if self.hold_close is not None:
                    time.sleep(self.hold_close)
                    break
                status = self.health_status if req[1] == "/healthz" else 200
                body = b"tls-ok\n"
                head = "HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n" % (
                    status, len(body), "Connection: close\r\n" if self.close_each else "")
                s.sendall(head.encode() + body)
                if self.close_each:
                    break
                if self.close_idle_after is not None:
                    time.sleep(self.close_idle_after)
                    s = s.unwrap()  # close_notify while meridian holds it idle
                    break
        except (OSError, ValueError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.lsock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass


@pytest.fixture
def tls_upstreams():
    started = []

    def start(*a, **kw):
        u = TlsUpstream(*a, **kw)
        started.append(u)
        return u

    yield start
    for u in started:
        u.stop()


def uptls_block(ca=None, server_name=None, verify=None, cert=None, min_version=None, extra=""):
    y = "    upstream_tls:\n"
    if ca:
        y += "      ca: %s\n" % ca
    if server_name:
        y += "      server_name: %s\n" % server_name
    if verify is not None:
        y += "      verify: %s\n" % verify
    if cert:
        y += "      certificate: {cert: %s, key: %s}\n" % cert
    if min_version:
        y += '      min_version: "%s"\n' % min_version
    if y.endswith(":\n"):
        y = y[:-1] + " {}\n"  # all defaults (the system CA store)
    return y + extra


def config(upstreams, **kw):
    return simple_config([u.address if hasattr(u, "address") else u for u in upstreams],
                         region_extra=uptls_block(**kw))


def failure_lines(m, up):
    return [l for l in m.stderr().splitlines() if ("upstream %s: TLS handshake failed" % up.address) in l]


# ---- verification ----

def test_verified_with_sni(meridian, pki, tls_upstreams):
    up = tls_upstreams(pki.leaf("good", "DNS:up.test"))
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test"))
    r = m.request(path="/x")
    assert r.status == 200 and r.body == b"tls-ok\n", (r.status, r.body, m.stderr())
    assert up.snis == ["up.test"] and up.handshakes == 1
    assert up.alpn == ["http/1.1"]  # an http1 region offers only http/1.1


def test_ip_literal_verified_without_sni(meridian, pki, tls_upstreams):
    up = tls_upstreams(pki.leaf("ipcert", "IP:127.0.0.1"))
    m = meridian.start(config([up], ca=pki.ca[0]))
    assert m.request().status == 200, m.stderr()
    assert up.snis == [None]  # RFC 6066: no SNI for an IP address
    # a certificate without the IP in its SAN: name mismatch
    up2 = tls_upstreams(pki.leaf("dnsonly", "DNS:up.test"))
    m2 = meridian.start(config([up2], ca=pki.ca[0]))
    assert m2.request().status == 502
    assert wait_for(lambda: failure_lines(m2, up2), 2 * SLOW), m2.stderr()
    assert "name mismatch" in failure_lines(m2, up2)[0] and "127.0.0.1" in failure_lines(m2, up2)[0]


@pytest.mark.parametrize("case,words", [
    ("wrong_ca", "unknown CA"),
    ("wrong_name", "name mismatch"),
    ("expired", "certificate expired"),
])
def test_verification_failure_is_502_and_logged_once(meridian, pki, tls_upstreams, case, words):
    if case == "wrong_ca":
        cert = pki.leaf("foreign", "DNS:up.test", ca=pki.other_ca)
    elif case == "wrong_name":
        cert = pki.leaf("other", "DNS:other.test")
    else:
        cert = pki.leaf("expired", "DNS:up.test", days=-1)
    up = tls_upstreams(cert)
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test"))
    for _ in range(4):
        r = m.request()
        assert r.status == 502, (r.status, r.body)
    assert up.handshakes == 0  # meridian aborted every handshake
    assert wait_for(lambda: failure_lines(m, up), 2 * SLOW), m.stderr()
    time.sleep(0.2)
    lines = failure_lines(m, up)
    assert len(lines) == 1, lines  # 4 requests x 3 attempts: one line a minute
    assert words in lines[0], lines[0]
    if case == "wrong_name":
        assert '"up.test"' in lines[0], lines[0]


def test_failure_retries_another_upstream_and_ejects(meridian, pki, tls_upstreams):
    bad = tls_upstreams(pki.leaf("foreign", "DNS:up.test", ca=pki.other_ca))
    good = tls_upstreams(pki.leaf("good", "DNS:up.test"))
    # passive ejection needs a health check to bring the upstream back
    extra = "    health_check: {path: /healthz, interval: 60s, rise: 1, fall: 1}\n"
    m = meridian.start(config([bad, good], ca=pki.ca[0], server_name="up.test", extra=extra))
    for _ in range(10):
        r = m.request()
        assert r.status == 200, (r.status, m.stderr())
    assert good.handshakes >= 1
    # a verification failure counts like a refused connection (passive health)
    assert wait_for(lambda: re.search(r"upstream %s (\(r1\) )?is down" % bad.address, m.stderr()), 2 * SLOW), \
        m.stderr()


# ---- client certificates ----

def test_mtls_with_and_without_client_certificate(meridian, pki, tls_upstreams):
    up = tls_upstreams(pki.leaf("good", "DNS:up.test"), client_ca=pki.ca[0])
    client = pki.leaf("meridian-client", "DNS:meridian.test", client=True)
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test", cert=client))
    assert m.request().status == 200, m.stderr()
    assert up.client_cns == ["meridian-client"]
    m2 = meridian.start(config([up], ca=pki.ca[0], server_name="up.test"))
    assert m2.request().status == 502
    assert up.client_cns == ["meridian-client"]
    assert wait_for(lambda: failure_lines(m2, up), 2 * SLOW), m2.stderr()
    assert "certificate required" in failure_lines(m2, up)[0], failure_lines(m2, up)


# ---- pooling and resumption ----

def test_thousand_requests_over_few_pooled_tls_connections(meridian, pki, tls_upstreams):
    up = tls_upstreams(pki.leaf("good", "DNS:up.test"))
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test"))
    errors = []

    def client():
        try:
            with HttpConn(m.port) as c:
                for _ in range(250):
                    r = c.request("GET", "/p")
                    if r.status != 200:
                        errors.append(r.status)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    assert len(up.paths) == 1000
    assert 1 <= up.handshakes <= 4, up.handshakes  # at most one per concurrent client


def test_sessions_resumed_on_new_connections(meridian, pki, tls_upstreams):
    up = tls_upstreams(pki.leaf("good", "DNS:up.test"), close_each=True)
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test"))
    for _ in range(10):
        assert m.request().status == 200, m.stderr()
    assert up.handshakes == 10
    assert up.resumed >= 8, (up.handshakes, up.resumed, m.stderr())


def test_pooled_connection_stays_idle_and_notices_close_notify(meridian, pki, tls_upstreams):
    up = tls_upstreams(pki.leaf("good", "DNS:up.test"))
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test"))
    assert m.request().status == 200
    time.sleep(0.5)  # idle in the pool (the TLS 1.3 tickets came with the response)
    assert m.request().status == 200
    assert up.handshakes == 1
    # an upstream that closes idle connections (close_notify): the pooled one is
    # dropped when it arrives, the next request gets a fresh connection
    up2 = tls_upstreams(pki.leaf("good", "DNS:up.test"), close_idle_after=0.2)
    m2 = meridian.start(config([up2], ca=pki.ca[0], server_name="up.test"))
    for i in range(3):
        assert m2.request().status == 200, m2.stderr()
        time.sleep(0.5)
    assert up2.handshakes == 3 and up2.failed == 0


# ---- health checks ----

def test_health_checks_over_tls_eject_and_restore(meridian, pki, tls_upstreams):
    up = tls_upstreams(pki.leaf("good", "DNS:up.test"))
    extra = "    health_check: {path: /healthz, interval: 200ms, timeout: 1s, rise: 1, fall: 1}\n"
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test", extra=extra))
    assert wait_for(lambda: "/healthz" in up.paths, 3 * SLOW), m.stderr()
    up.health_status = 503
    assert wait_for(lambda: "upstream %s (r1) is down" % up.address in m.stderr(), 3 * SLOW), m.stderr()
    up.health_status = 200
    assert wait_for(lambda: "upstream %s (r1) is up" % up.address in m.stderr(), 3 * SLOW), m.stderr()
    assert up.failed == 0 and up.handshakes >= 3


def test_send_proxy_header_goes_before_the_tls_handshake(meridian, pki, tls_upstreams):
    """send_proxy on a TLS upstream: the PROXY header is the first bytes on
    the wire, in clear, then the handshake; health checks send UNKNOWN first"""
    up = tls_upstreams(pki.leaf("good", "DNS:up.test"), proxy_header=True)
    m = meridian.start(
        "regions:\n  - name: r1\n    location: {latitude: 50.1, longitude: 8.7}\n"
        + uptls_block(ca=pki.ca[0], server_name="up.test")
        + "    health_check: {path: /healthz, interval: 200ms, timeout: 1s, rise: 1, fall: 1}\n"
        + "    upstreams:\n      - {address: \"%s\", send_proxy: v1}\n" % up.address)
    for _ in range(3):
        r = m.request(path="/pp")
        assert r.status == 200 and r.body == b"tls-ok\n", (r.status, r.body, m.stderr())
    assert wait_for(lambda: "/healthz" in up.paths, 3 * SLOW), m.stderr()
    heads = list(up.headers)
    assert up.failed == 0, (heads, m.stderr())
    assert b"PROXY UNKNOWN\r\n" in heads, heads  # a health check
    served = [h for h in heads if h.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ")]
    assert len(served) >= 3, heads  # one connection per request (not pooled)
    assert int(served[0].split()[5]) == m.port, heads  # the destination is meridian's listener
    assert up.paths.count("/pp") == 3


def test_health_check_fails_on_verification(meridian, pki, tls_upstreams):
    up = tls_upstreams(pki.leaf("other", "DNS:other.test"))
    extra = "    health_check: {path: /healthz, interval: 200ms, timeout: 1s, rise: 1, fall: 1}\n"
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test", extra=extra))
    assert wait_for(lambda: "upstream %s (r1) is down" % up.address in m.stderr(), 3 * SLOW), m.stderr()
    assert "/healthz" not in up.paths
    assert "name mismatch" in failure_lines(m, up)[0]


# ---- verify: false ----

def test_verify_false_works_and_warns(meridian, pki, tls_upstreams):
    up = tls_upstreams(pki.leaf("foreign", "DNS:other.test", ca=pki.other_ca))
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test", verify="false"))
    assert m.request().status == 200, m.stderr()
    assert up.snis == ["up.test"]
    line = next(i for i, l in enumerate(m.yaml_text.splitlines(), 1) if l.startswith("      verify:"))
    assert "%s:%d:15: regions[0].upstream_tls.verify is false" % (m.conf, line) in m.stderr(), m.stderr()


def test_min_version_13_refuses_a_tls12_upstream(meridian, pki, tls_upstreams):
    up = tls_upstreams(pki.leaf("good", "DNS:up.test"))
    up.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test", min_version="1.3"))
    assert m.request().status == 502
    assert wait_for(lambda: failure_lines(m, up), 2 * SLOW), m.stderr()
    m2 = meridian.start(config([up], ca=pki.ca[0], server_name="up.test"))
    assert m2.request().status == 200, m2.stderr()


# ---- reload ----

def test_reload_new_ca_takes_effect_and_bad_ca_keeps_old(meridian, pki, tls_upstreams, tmp_path):
    up = tls_upstreams(pki.leaf("foreign", "DNS:up.test", ca=pki.other_ca))
    m = meridian.start(config([up], ca=pki.ca[0], server_name="up.test"))
    assert m.request().status == 502
    with open(m.conf, "w") as f:
        f.write(m.yaml_text.replace(pki.ca[0], pki.other_ca[0]))
    m.signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reloaded" in m.stderr(), 3 * SLOW), m.stderr()
    assert wait_for(lambda: m.request().status == 200, 3 * SLOW)
    with open(m.conf, "w") as f:
        f.write(m.yaml_text.replace(pki.ca[0], str(tmp_path / "missing-ca.crt")))
    m.signal(signal.SIGHUP)
    assert wait_for(lambda: "reload failed" in m.stderr(), 3 * SLOW), m.stderr()
    assert "cannot load CA file" in m.stderr()
    assert m.request().status == 200


def test_retry_after_a_reload_dropped_the_upstream_still_uses_tls(meridian, pki, tls_upstreams):
    """A request begun on the old generation retries on an upstream the new
    one no longer lists: that connection still speaks TLS (the context its
    last connection used)."""
    cert = pki.leaf("good", "DNS:up.test")
    # b closes after each response: the retry needs a new connection
    slow, b = tls_upstreams(cert, hold_close=1.5 * SLOW), tls_upstreams(cert, close_each=True)

    def conf(ups):
        return simple_config(ups, balance="round_robin", region_extra=uptls_block(ca=pki.ca[0], server_name="up.test"))

    m = meridian.start(conf([b.address]))
    assert m.request().status == 200  # b has had a TLS connection

    def reload(ups, n):
        with open(m.conf, "w") as f:
            f.write(m.yaml_text.split("regions:")[0] + "regions:" + conf(ups).split("regions:")[1])
        m.signal(signal.SIGHUP)
        assert wait_for(lambda: m.stderr().count("configuration reloaded") == n, 3 * SLOW), m.stderr()

    reload([(slow.address, 1000), (b.address, 1)], 1)  # the next pick is `slow`
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", m.request()))
    t.start()
    assert wait_for(lambda: slow.paths, 3 * SLOW)
    reload([slow.address], 2)  # b leaves the configuration while the request waits on `slow`
    t.join(10 * SLOW)
    assert result["r"].status == 200, (result["r"].status, result["r"].body, m.stderr())
    assert b.handshakes == 2 and len(b.paths) == 2
    # `slow` closing without close_notify after its handshake is no handshake failure
    assert "TLS handshake failed" not in m.stderr(), m.stderr()


# ---- configuration errors ----

def check_t(tmp_path, region_extra):
    conf = tmp_path / "bad.yaml"
    conf.write_text('listeners: [{address: "127.0.0.1:1"}]\n'
                    + simple_config(["127.0.0.1:9"], region_extra=region_extra))
    p = subprocess.run([MERIDIAN_BIN, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr.replace(str(conf), "F")


@pytest.mark.parametrize("block,expect", [
    ('      min_version: "1.1"\n', 'F:7:20: regions[0].upstream_tls.min_version: expected "1.2" or "1.3", got "1.1"'),
    ("      verify: maybe\n", "F:7:15: regions[0].upstream_tls.verify: expected true or false, got \"maybe\""),
    ("      server_name: a..b\n", "F:7:20: regions[0].upstream_tls.server_name: \"a..b\" has an empty label"),
    ("      server_name: \"host:443\"\n", "F:7:20: regions[0].upstream_tls.server_name: \"host:443\" must be a DNS name"),
    ("      certificate: {cert: /x.crt}\n",
     'F:7:20: regions[0].upstream_tls.certificate: missing required key "key"'),
    ("      ciphers: fast\n", 'F:7:7: unknown key "ciphers" in regions[0].upstream_tls'),
    ("      ca: \"\"\n", "F:7:11: regions[0].upstream_tls.ca: must not be empty"),
])
def test_config_errors_in_the_schema(tmp_path, block, expect):
    rc, err = check_t(tmp_path, "    upstream_tls:\n" + block)
    assert rc == 1 and expect in err, err


def test_config_errors_in_files(tmp_path, pki):
    good, other = pki.leaf("client", "DNS:c.test", client=True), pki.leaf("client2", "DNS:c.test", client=True)
    missing = str(tmp_path / "missing.pem")
    rc, err = check_t(tmp_path, "    upstream_tls:\n      ca: %s\n" % missing)
    assert rc == 1 and 'F:7:11: regions[0].upstream_tls.ca: cannot load CA file "%s"' % missing in err, err
    rc, err = check_t(tmp_path, "    upstream_tls:\n      certificate: {cert: %s, key: %s}\n" % (missing, good[1]))
    assert rc == 1 and 'F:7:20: regions[0].upstream_tls.certificate: cannot load certificate "%s"' % missing in err, err
    rc, err = check_t(tmp_path, "    upstream_tls:\n      certificate: {cert: %s, key: %s}\n" % (good[0], missing))
    assert rc == 1 and 'F:7:20: regions[0].upstream_tls.certificate: cannot load private key "%s"' % missing in err, err
    rc, err = check_t(tmp_path, "    upstream_tls:\n      certificate: {cert: %s, key: %s}\n" % (good[0], other[1]))
    assert rc == 1 and "F:7:20: regions[0].upstream_tls.certificate: " in err and "mismatch" in err, err
    # a file that is not PEM at all
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    rc, err = check_t(tmp_path, "    upstream_tls:\n      ca: %s\n" % junk)
    assert rc == 1 and "F:7:11: regions[0].upstream_tls.ca: cannot load CA file" in err, err
    # all good: valid, and the system store is the default CA
    rc, err = check_t(tmp_path, "    upstream_tls:\n      certificate: {cert: %s, key: %s}\n" % good)
    assert rc == 0, err


# ---- upstreams that do not speak TLS properly ----

def test_stalled_handshake_is_a_connect_timeout(meridian, tmp_path):
    import socket
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)  # accepts (the kernel does) and never answers the ClientHello
    try:
        addr = "127.0.0.1:%d" % lsock.getsockname()[1]
        y = simple_config([addr], extra="timeouts: {connect: 300ms, shutdown: 5s}\n",
                          region_extra=uptls_block(extra="    retries: 0\n"))
        m = meridian.start(y)
        t0 = time.monotonic()
        r = m.request()
        elapsed = time.monotonic() - t0
        assert r.status == 504, (r.status, r.body)
        assert 0.25 <= elapsed < 2.0 * SLOW, elapsed
    finally:
        lsock.close()


def test_plaintext_upstream_fails_the_attempt(meridian, pyupstream):
    def handler(sock, reader, up):
        sock.recv(4096)  # the ClientHello
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    up = pyupstream.start(handler)
    m = meridian.start(config([up.address]))
    r = m.request()
    assert r.status == 502, (r.status, r.body)
    assert m.request().status == 502
    assert wait_for(lambda: failure_lines(m, up), 2 * SLOW), m.stderr()
    assert "wrong version number" in failure_lines(m, up)[0], failure_lines(m, up)
