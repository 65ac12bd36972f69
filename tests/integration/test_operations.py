"""Operations (SPEC 1, 6): daemon mode with a pid file, and reloads under
load that fail no request while routing follows each file."""
import json
import os
import signal
import subprocess
import threading
import time

from conftest import SLOW, HttpConn, admin_get, free_port, simple_config, wait_for


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
