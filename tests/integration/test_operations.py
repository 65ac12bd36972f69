"""Operations (SPEC 1, 6): daemon mode with a pid file, and reloads under
load that fail no request while routing follows each file."""
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import SLOW, HttpConn, admin_get, free_port, request, simple_config, wait_for


def test_daemon_writes_and_removes_pid_file(backend, tmp_path):
    port = free_port()
    conf = tmp_path / "d.yaml"
    pidfile = tmp_path / "meridian.pid"
    conf.write_text('listeners: [{address: "127.0.0.1:%d"}]\n' % port + simple_config([backend.address]))
    p = subprocess.run([os.environ["MERIDIAN_BIN"], "-d", "-p", str(pidfile), "-c", str(conf)],
                       capture_output=True, text=True, timeout=20 * SLOW)
    assert p.returncode == 0, p.stderr
    assert wait_for(lambda: pidfile.exists(), 5 * SLOW), "no pid file"
    pid = int(pidfile.read_text().strip())
    try:
        os.kill(pid, 0)  # alive
        with open("/proc/%d/status" % pid) as f:
            ppid = [int(ln.split()[1]) for ln in f if ln.startswith("PPid:")][0]
        assert ppid != os.getpid(), "not detached"
        c = HttpConn(port)
        assert c.request("GET", "/").status == 200
        c.close()
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not pidfile.exists(), 10 * SLOW), "pid file not removed on SIGTERM"
    assert wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                    open("/proc/%d/status" % pid).read().find("zombie") >= 0, 10 * SLOW)


def test_reload_under_load_fails_nothing_and_routes_by_the_new_file(meridian, backends):
    a, b = backends.start("A"), backends.start("B")
    admin = free_port()
    extra = 'admin: {address: "127.0.0.1:%d"}\nworkers: 2\n' % admin
    text_a = simple_config([a.address], region="region-a", extra=extra).replace("workers: 1\n", "", 1)
    text_b = simple_config([b.address], region="region-b", extra=extra).replace("workers: 1\n", "", 1)
    m = meridian.start(text_a)
    prefix = m.yaml_text[:m.yaml_text.index(text_a)]  # the listener the fixture added
    stop = threading.Event()
    results, errors = [], []

    def client():
        c = HttpConn(m.port)
        while not stop.is_set():
            try:
                r = c.request("GET", "/")
                results.append(r.status)
            except Exception as e:  # noqa: BLE001 - any failure counts
                errors.append(repr(e))
                c = HttpConn(m.port)
        c.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    followed = 0
    try:
        for i in range(16):
            text, want = (text_b, "region-b") if i % 2 == 0 else (text_a, "region-a")
            with open(m.conf, "w") as f:
                f.write(prefix + text)
            m.signal(signal.SIGHUP)

            def routed():
                j = json.loads(admin_get(admin, "/v1/route?ip=127.0.0.1").body)
                return j["decision"]["region"] == want
            if wait_for(routed, 3 * SLOW, 0.02):
                followed += 1
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    print("\nreload under load: %d requests, %d non-2xx, %d errors, 16 reloads, routing followed %d"
          % (len(results), sum(1 for s in results if not 200 <= s < 300), len(errors), followed))
    assert not errors, errors[:5]
    assert all(200 <= s < 300 for s in results)
    assert len(results) > 500
    assert followed == 16
    assert m.alive()


def _start_daemon(conf, pidfile):
    p = subprocess.run([os.environ["MERIDIAN_BIN"], "-d", "-p", str(pidfile), "-c", str(conf)],
                       capture_output=True, text=True, timeout=20 * SLOW)
    assert p.returncode == 0, p.stderr
    assert wait_for(lambda: pidfile.exists(), 5 * SLOW), "no pid file"
    return int(pidfile.read_text().strip())


def _stop_daemon(pid, pidfile):
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not pidfile.exists(), 10 * SLOW), "pid file not removed on SIGTERM"


def test_daemon_error_log_file_reload_reopen_and_stop(backend, tmp_path):
    """error_log.path (an extension, README): the daemon's own messages go to
    the file; SIGUSR1 reopens it after rotation; a reload's error lands there
    with its line."""
    port = free_port()
    log, rotated = tmp_path / "error.log", tmp_path / "error.log.1"
    conf, pidfile = tmp_path / "d.yaml", tmp_path / "meridian.pid"
    text = ('listeners: [{address: "127.0.0.1:%d"}]\nerror_log: {path: %s}\n' % (port, log)
            + simple_config([backend.address]))
    conf.write_text(text)
    pid = _start_daemon(conf, pidfile)
    try:
        assert wait_for(lambda: log.exists() and "started" in log.read_text(), 5 * SLOW), "no start line"
        assert request(port, "GET", "/").status == 200
        conf.write_text(text + "bogus_key: 1\n")
        os.kill(pid, signal.SIGHUP)
        bad_line = len(text.splitlines()) + 1
        assert wait_for(lambda: "%s:%d:1: unknown key" % (conf, bad_line) in log.read_text(), 5 * SLOW), \
            log.read_text()
        os.rename(log, rotated)
        os.kill(pid, signal.SIGUSR1)
        assert wait_for(lambda: log.exists(), 5 * SLOW), "SIGUSR1 did not reopen the error log"
        conf.write_text(text)
        os.kill(pid, signal.SIGHUP)
        assert wait_for(lambda: "configuration reloaded" in log.read_text(), 5 * SLOW), log.read_text()
        assert "configuration reloaded" not in rotated.read_text()
    finally:
        _stop_daemon(pid, pidfile)
    assert wait_for(lambda: "stopped" in log.read_text(), 5 * SLOW), log.read_text()


def test_error_log_level_filters_and_unopenable_file_fails_start(meridian, backend, tmp_path):
    m = meridian.start(simple_config([backend.address], extra="error_log: {path: \"-\", level: warn}\n"))
    assert m.request("GET", "/").status == 200
    m.signal(signal.SIGHUP)                    # an info line, filtered out
    time.sleep(0.3 * SLOW)
    assert "started" not in m.stderr() and "reloaded" not in m.stderr(), m.stderr()
    conf = tmp_path / "bad.yaml"
    conf.write_text('listeners: [{address: "127.0.0.1:%d"}]\nerror_log: {path: %s}\n' % (free_port(), tmp_path)
                    + simple_config([backend.address]))
    p = subprocess.run([os.environ["MERIDIAN_BIN"], "-c", str(conf)], capture_output=True, text=True,
                       timeout=10 * SLOW)
    assert p.returncode == 1 and "error_log: cannot open %s" % tmp_path in p.stderr, p.stderr


def test_daemon_without_error_log_writes_to_syslog(backend, tmp_path):
    """A daemon with no error_log logs to syslog (LOG_DAEMON), as operators
    expect of a daemon; checked with our own datagram socket at /dev/log, in a
    private mount namespace when the machine has a syslog daemon."""
    import shutil
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to stand in for /dev/log")
    sock_path = str(tmp_path / "log.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(5 * SLOW)
    port = free_port()
    conf, pidfile = tmp_path / "d.yaml", tmp_path / "meridian.pid"
    conf.write_text('listeners: [{address: "127.0.0.1:%d"}]\n' % port + simple_config([backend.address]))
    # a private mount namespace: an empty file at /dev/log (created there
    # only if the machine has none) gets our socket bind-mounted over it
    script = ('[ -e /dev/log ] || touch /dev/log; '
              'mount --bind "$0" /dev/log && exec "$1" -d -p "$2" -c "$3"')
    created_here = not os.path.exists("/dev/log")
    try:
        p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, sock_path,
                            os.environ["MERIDIAN_BIN"], str(pidfile), str(conf)],
                           capture_output=True, text=True, timeout=20 * SLOW)
        assert p.returncode == 0, p.stderr
        assert wait_for(lambda: pidfile.exists(), 5 * SLOW), "no pid file"
        pid = int(pidfile.read_text().strip())
        try:
            msgs = []
            while not any("started" in x for x in msgs):
                msgs.append(s.recv(4096).decode())
            start = [x for x in msgs if "started" in x][0]
            # <30> = facility daemon (3) * 8 + info (6)
            assert start.startswith("<30>") and "meridian[%d]: meridian " % pid in start, start
        finally:
            _stop_daemon(pid, pidfile)
    finally:
        s.close()
        if created_here and os.path.exists("/dev/log") and os.path.getsize("/dev/log") == 0:
            os.unlink("/dev/log")
