"""Reload opens and closes listeners to match the file (SPEC 6): a listener
added on SIGHUP accepts, a removed one stops accepting while its open
connections finish, one whose protocols or TLS change keeps its socket, the
admin listener follows its address, and a listener that cannot be bound fails
the whole reload without changing anything."""
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import SLOW, HttpConn, admin_get, free_port, request, simple_config, wait_for
from test_admin import parse_metrics, value
from test_tls import _cert


def _reload(m, text):
    with open(m.conf, "w") as f:
        f.write(text)
    m.signal(signal.SIGHUP)


def _listeners(*entries):
    return "listeners:\n" + "".join("  - %s\n" % e for e in entries)


def _accepts(port):
    s = socket.socket()
    try:
        return s.connect_ex(("127.0.0.1", port)) == 0
    finally:
        s.close()


def _backend_at(port):
    try:
        r = request(port, "GET", "/")
        return r.header("X-Backend") if r.status == 200 else None
    except OSError:
        return None


def _config(listeners, upstream, workers=2, extra=""):
    return listeners + simple_config([upstream], workers=workers, extra=extra)


def test_reload_adds_a_listener(meridian, backends):
    a, b = backends.start("a"), backends.start("b")
    m = meridian.start(_config(_listeners('{address: "127.0.0.1:@PORT@"}'), a.address))
    extra = free_port()
    assert not _accepts(extra)
    _reload(m, _config(_listeners('{address: "127.0.0.1:%d"}' % m.port, '{address: "127.0.0.1:%d"}' % extra),
                       b.address))
    assert wait_for(lambda: _backend_at(extra) == "b", 5 * SLOW, 0.05), m.stderr()
    assert _backend_at(m.port) == "b"
    assert "2 listeners" in m.stderr()
    # every worker accepts on the new socket: many connections all succeed
    for _ in range(40):
        assert _backend_at(extra) == "b"


def test_reload_removes_a_listener_open_connections_finish(meridian, backends):
    a, b = backends.start("a"), backends.start("b")
    second = free_port()
    m = meridian.start(_config(_listeners('{address: "127.0.0.1:@PORT@"}', '{address: "127.0.0.1:%d"}' % second),
                               a.address))
    assert _backend_at(second) == "a"
    with HttpConn(second) as keep:
        assert keep.request("GET", "/").header("X-Backend") == "a"
        _reload(m, _config(_listeners('{address: "127.0.0.1:%d"}' % m.port), b.address))
        assert wait_for(lambda: not _accepts(second), 5 * SLOW, 0.05), "removed listener still accepts"
        # the connection accepted before the reload is still served, on the new file
        r = keep.request("GET", "/")
        assert r.status == 200 and r.header("X-Backend") == "b", r
    assert _backend_at(m.port) == "b"
    assert m.alive()


def test_reload_changes_protocols_on_the_same_socket(meridian, backend):
    m = meridian.start(_config(_listeners('{address: "127.0.0.1:@PORT@", protocols: [http1]}'), backend.address))
    url = "http://127.0.0.1:%d/" % m.port

    def h2c_status():
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                            "--max-time", str(int(3 * SLOW)), url], capture_output=True, text=True)
        return p.stdout

    assert h2c_status() != "200"  # HTTP/1 only: the preface is a bad request
    with HttpConn(m.port) as keep:
        assert keep.request("GET", "/").status == 200
        _reload(m, m.yaml_text.replace("protocols: [http1]", "protocols: [http1, h2c]"))
        assert wait_for(lambda: h2c_status() == "200", 5 * SLOW, 0.1), m.stderr()
        # the socket was kept: a connection from before is untouched
        assert keep.request("GET", "/").status == 200


def test_reload_turns_on_tls_on_the_same_address(meridian, backend, tmp_path):
    crt, key = _cert(str(tmp_path), "a.test")
    m = meridian.start(_config(_listeners('{address: "127.0.0.1:@PORT@"}'), backend.address))
    assert _backend_at(m.port) is not None
    tls = '{address: "127.0.0.1:%d", tls: {certificates: [{cert: %s, key: %s}]}}' % (m.port, crt, key)
    _reload(m, _config(_listeners(tls), backend.address))

    def https_status():
        p = subprocess.run(["curl", "-sSk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(int(3 * SLOW)),
                            "https://127.0.0.1:%d/" % m.port], capture_output=True, text=True)
        return p.stdout

    assert wait_for(lambda: https_status() == "200", 5 * SLOW, 0.1), m.stderr()


def test_reload_with_an_unbindable_listener_changes_nothing(meridian, backends):
    a, b = backends.start("a"), backends.start("b")
    admin = free_port()
    m = meridian.start(_config(_listeners('{address: "127.0.0.1:@PORT@"}'), a.address,
                               extra='admin: {address: "127.0.0.1:%d"}\n' % admin))
    busy = socket.socket()          # held by someone else, without SO_REUSEPORT
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    fresh = free_port()
    try:
        text = _config(_listeners('{address: "127.0.0.1:%d"}' % m.port, '{address: "127.0.0.1:%d"}' % fresh,
                                  '{address: "127.0.0.1:%d"}' % busy.getsockname()[1]),
                       b.address, extra='admin: {address: "127.0.0.1:%d"}\n' % admin)
        _reload(m, text)
        line = text.splitlines().index('  - {address: "127.0.0.1:%d"}' % busy.getsockname()[1]) + 1
        want = "%s:%d:" % (m.conf, line)
        assert wait_for(lambda: "cannot listen on" in m.stderr(), 3 * SLOW), m.stderr()
        assert want in m.stderr() and "listeners[2]" in m.stderr(), m.stderr()
        _, smp = parse_metrics(admin_get(admin, "/metrics").body.decode())
        assert value(smp, "meridian_config_reloads_total", result="error") == 1
        assert value(smp, "meridian_config_reloads_total", result="success") == 0
        # nothing changed: the old upstream, and the listener bound for the
        # failed attempt was closed again
        for _ in range(5):
            assert _backend_at(m.port) == "a"
        assert not _accepts(fresh)
    finally:
        busy.close()
    # the same file reloads once the address is free
    m.signal(signal.SIGHUP)
    assert wait_for(lambda: _backend_at(fresh) == "b", 5 * SLOW, 0.05), m.stderr()


def test_reload_moves_the_admin_listener(meridian, backend):
    a1, a2 = free_port(), free_port()
    m = meridian.start(_config(_listeners('{address: "127.0.0.1:@PORT@"}'), backend.address,
                               extra='admin: {address: "127.0.0.1:%d"}\n' % a1))
    assert admin_get(a1, "/healthz").status == 200
    _reload(m, m.yaml_text.replace(str(a1), str(a2)))
    assert wait_for(lambda: _accepts(a2) and admin_get(a2, "/healthz").status == 200, 5 * SLOW, 0.05), m.stderr()
    assert not _accepts(a1)
    # and off again: the admin API stops when its block goes
    _reload(m, m.yaml_text.replace('admin: {address: "127.0.0.1:%d"}\n' % a1, ""))
    assert wait_for(lambda: not _accepts(a2), 5 * SLOW, 0.05)
    assert _backend_at(m.port) is not None


def _fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


@pytest.mark.parametrize("workers", [1, 3])
def test_reload_listener_churn_leaks_no_sockets(meridian, backend, workers):
    """Twenty reloads adding and removing a listener leave the descriptor
    count where it was."""
    m = meridian.start(_config(_listeners('{address: "127.0.0.1:@PORT@"}'), backend.address, workers=workers))
    base_text = m.yaml_text
    time.sleep(0.2 * SLOW)          # the readiness probe's connection closes
    before = _fds(m.pid)
    extra = free_port()
    two = _config(_listeners('{address: "127.0.0.1:%d"}' % m.port, '{address: "127.0.0.1:%d"}' % extra),
                  backend.address, workers=workers)
    for i in range(20):
        _reload(m, two if i % 2 == 0 else base_text)
        # one signal at a time (signals coalesce); the workers may lag behind
        assert wait_for(lambda: "generation %d," % (i + 2) in m.stderr(), 5 * SLOW, 0.01), m.stderr()
    assert wait_for(lambda: not _accepts(extra), 3 * SLOW, 0.05)
    assert wait_for(lambda: _fds(m.pid) == before, 3 * SLOW, 0.05), (before, _fds(m.pid))
    assert _backend_at(m.port) is not None


def test_reload_picks_up_a_renewed_certificate(meridian, backend, tmp_path):
    """Certificates are loaded with each generation: a renewed certificate
    written over the same files is served to new connections after SIGHUP,
    while the listener's socket stays."""
    import ssl
    import shutil
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    crt, key = _cert(str(old_dir), "a.test")
    crt2, key2 = _cert(str(new_dir), "a.test")      # same name, new key and serial
    live_crt, live_key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")
    shutil.copy(crt, live_crt)
    shutil.copy(key, live_key)
    tls = '{address: "127.0.0.1:@PORT@", tls: {certificates: [{cert: %s, key: %s}]}}' % (live_crt, live_key)
    m = meridian.start(_config(_listeners(tls), backend.address))

    def served():
        return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", m.port))))

    def pem(path):
        with open(path) as f:
            return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(f.read()))

    assert served() == pem(crt)
    shutil.copy(crt2, live_crt)
    shutil.copy(key2, live_key)
    assert served() == pem(crt), "served the new certificate before SIGHUP"
    m.signal(signal.SIGHUP)
    assert wait_for(lambda: served() == pem(crt2), 5 * SLOW, 0.05), m.stderr()
