"""TLS termination (SPEC 2 listeners.tls): TLS 1.3 by default, SNI certificate
choice, ALPN, session tickets, X-Forwarded-Proto, bad certificates."""
import json
import os
import subprocess

import pytest

from conftest import simple_config

CURL = "curl"


def _cert(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=DNS:" + name], check=True, capture_output=True)
    return crt, key


@pytest.fixture
def certs(tmp_path):
    return {n: _cert(str(tmp_path), n) for n in ("a.test", "b.test")}


def tls_config(backend, certs, protocols="[http1]", min_version=None, extra_listener=""):
    (ac, ak), (bc, bk) = certs["a.test"], certs["b.test"]
    y = ("listeners:\n"
         '  - address: "127.0.0.1:@PORT@"\n'
         "    tls:\n"
         "      certificates:\n"
         "        - {cert: %s, key: %s}\n"
         "        - {cert: %s, key: %s}\n" % (ac, ak, bc, bk))
    if min_version:
        y += '      min_version: "%s"\n' % min_version
    y += "    protocols: %s\n" % protocols + extra_listener
    return y + simple_config([backend.address])


def curl(port, host, cacert, *args, path="/echo"):
    cmd = [CURL, "-sS", "--max-time", "10", "--cacert", cacert, "--resolve", "%s:%d:127.0.0.1" % (host, port),
           "-o", "-", "-w", "\n%{http_code} %{http_version} %{ssl_verify_result}"] + list(args) + \
          ["https://%s:%d%s" % (host, port, path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    body, _, tail = p.stdout.rpartition("\n")
    return p.returncode, body, tail.split(), p.stderr


def s_client(port, *args, data=b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"):
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-ign_eof"] + list(args),
                       input=data, capture_output=True, timeout=20)
    return p.stdout.decode(errors="replace")


def test_tls13_request_routed_with_forwarded_proto(meridian, backend, certs):
    m = meridian.start(tls_config(backend, certs))
    rc, body, (code, version, verify), _ = curl(m.port, "a.test", certs["a.test"][0])
    assert rc == 0 and code == "200" and verify == "0", (rc, code, verify)
    echo = json.loads(body)
    headers = {k.lower(): v for k, v in echo["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    out = s_client(m.port, "-servername", "a.test")
    assert "TLSv1.3" in out and "HTTP/1.1 200 OK" in out, out[-2000:]


def test_tls12_client_refused_when_min_is_13(meridian, backend, certs):
    m = meridian.start(tls_config(backend, certs))
    rc, _, _, err = curl(m.port, "a.test", certs["a.test"][0], "--tlsv1.2", "--tls-max", "1.2")
    assert rc != 0, "a TLS 1.2-only client was served"
    assert m.alive()


def test_tls12_allowed_with_modern_suites_only(meridian, backend, certs):
    m = meridian.start(tls_config(backend, certs, min_version="1.2"))
    rc, _, (code, _, _), _ = curl(m.port, "a.test", certs["a.test"][0], "--tlsv1.2", "--tls-max", "1.2")
    assert rc == 0 and code == "200"
    out = s_client(m.port, "-tls1_2", "-cipher", "AES128-SHA")  # no forward secrecy, CBC: refused
    assert "HTTP/1.1 200" not in out
    out = s_client(m.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA")  # CBC: refused
    assert "HTTP/1.1 200" not in out
    out = s_client(m.port, "-tls1_2")
    assert "HTTP/1.1 200" in out and ("GCM" in out or "CHACHA20" in out), out[-1500:]


def test_sni_picks_the_certificate(meridian, backend, certs):
    m = meridian.start(tls_config(backend, certs))
    for name in ("a.test", "b.test"):
        rc, _, (code, _, verify), err = curl(m.port, name, certs[name][0])
        assert rc == 0 and code == "200" and verify == "0", (name, rc, err)
    # an unknown name, or none, gets the first (default) certificate
    out = s_client(m.port, "-servername", "zzz.test")
    assert "CN = a.test" in out or "CN=a.test" in out, out[:1500]
    out = s_client(m.port, "-noservername")
    assert "CN = a.test" in out or "CN=a.test" in out, out[:1500]


def test_alpn_http11_and_fallback_without_alpn(meridian, backend, certs):
    m = meridian.start(tls_config(backend, certs, protocols="[h2, http1]"))
    rc, _, (code, version, _), _ = curl(m.port, "a.test", certs["a.test"][0], "--http1.1")
    assert rc == 0 and code == "200" and version == "1.1"
    out = s_client(m.port, "-servername", "a.test")  # no ALPN at all
    assert "HTTP/1.1 200 OK" in out and "No ALPN negotiated" in out, out[-1500:]


def test_session_ticket_resumption(meridian, backend, certs, tmp_path):
    m = meridian.start(tls_config(backend, certs))
    sess = str(tmp_path / "sess.pem")
    first = s_client(m.port, "-servername", "a.test", "-sess_out", sess)
    assert "New, TLSv1.3" in first and "HTTP/1.1 200" in first
    second = s_client(m.port, "-servername", "a.test", "-sess_in", sess)
    assert "Reused, TLSv1.3" in second and "HTTP/1.1 200" in second, second[-1500:]


def test_garbage_instead_of_handshake(meridian, backend, certs):
    m = meridian.start(tls_config(backend, certs))
    got = m.raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", timeout=3)
    assert b"200 OK" not in got
    assert m.alive()
    rc, _, (code, _, _), _ = curl(m.port, "a.test", certs["a.test"][0])
    assert rc == 0 and code == "200"


def test_bad_certificate_is_a_config_error(meridian, backend, certs, tmp_path):
    bad = tmp_path / "bad.yaml"
    (ac, ak), (bc, bk) = certs["a.test"], certs["b.test"]
    bad.write_text("listeners:\n  - address: \"127.0.0.1:1\"\n    tls:\n      certificates:\n"
                   "        - {cert: %s, key: %s}\n" % (ac, bk) + simple_config([backend.address]))
    p = subprocess.run([os.environ["MERIDIAN_BIN"], "-t", "-c", str(bad)], capture_output=True, text=True)
    assert p.returncode == 1
    assert "%s:5:11: cannot load private key" % bad in p.stderr and "mismatch" in p.stderr, p.stderr
    bad.write_text("listeners:\n  - address: \"127.0.0.1:1\"\n    tls:\n      certificates:\n"
                   "        - {cert: /nonexistent.crt, key: %s}\n" % ak + simple_config([backend.address]))
    p = subprocess.run([os.environ["MERIDIAN_BIN"], "-t", "-c", str(bad)], capture_output=True, text=True)
    assert p.returncode == 1 and "%s:5:11: cannot load certificate \"/nonexistent.crt\"" % bad in p.stderr, p.stderr


def test_h2_over_tls_by_alpn(meridian, backend, certs):
    m = meridian.start(tls_config(backend, certs, protocols="[h2, http1]"))
    rc, body, (code, version, verify), err = curl(m.port, "a.test", certs["a.test"][0], "--http2")
    assert rc == 0 and code == "200" and version == "2" and verify == "0", (rc, code, version, err)
    headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    assert headers["via"] == "2 meridian"  # the protocol the request came in with
    p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10", "https://127.0.0.1:%d/" % m.port],
                       capture_output=True, text=True, timeout=60)
    assert "Application protocol: h2" in p.stdout, p.stdout
    assert "2000 succeeded, 0 failed, 0 errored" in p.stdout, p.stdout


def test_h2_not_offered_when_not_listed(meridian, backend, certs):
    m = meridian.start(tls_config(backend, certs, protocols="[http1]"))
    rc, _, (code, version, _), err = curl(m.port, "a.test", certs["a.test"][0], "--http2")
    assert rc == 0 and code == "200" and version == "1.1", (rc, version, err)
