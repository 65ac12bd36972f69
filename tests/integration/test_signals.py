"""Signals (SPEC 1 and 6): SIGTERM drains in-flight requests; SIGHUP reloads."""
import signal
import socket
import threading
import time

from conftest import SLOW, HttpConn, simple_config, wait_for


def test_sigterm_finishes_in_flight_request_then_exits_0(meridian, backend):
    m = meridian.start(simple_config([backend.address], extra="timeouts: {shutdown: 10s}\n"))
    result = {}

    def client():
        try:
            with HttpConn(m.port, timeout=15) as c:
                result["t_start"] = time.monotonic()
                r = c.request("GET", "/echo?delay=2000")
                result["t_done"] = time.monotonic()
                result["status"] = r.status
                result["body"] = r.body
        except Exception as e:
            result["error"] = repr(e)

    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.8)                           # the request is at the upstream now, mid-way
    m.signal(signal.SIGTERM)

    # new connections are refused once the signal is handled
    def refused():
        s = socket.socket()
        try:
            return s.connect_ex(("127.0.0.1", m.port)) != 0
        finally:
            s.close()

    assert wait_for(refused, 1.0 * SLOW), "listener still accepting after SIGTERM"
    assert m.alive(), "meridian exited before its in-flight request finished"
    t.join(15 * SLOW)
    assert result.get("status") == 200, result
    assert b'"uri":"/echo?delay=2000"' in result["body"]
    rc = m.proc.wait(10 * SLOW)
    t_exit = time.monotonic()
    m.stopped_by_test = True
    assert rc == 0
    assert result["t_done"] - result["t_start"] >= 1.9, "the delayed response came too early"
    assert t_exit >= result["t_done"], "exited before the in-flight request finished"


def test_sigterm_with_idle_keepalive_connection_exits_promptly(meridian, backend):
    m = meridian.start(simple_config([backend.address], extra="timeouts: {shutdown: 20s}\n"))
    c = HttpConn(m.port)
    try:
        assert c.request("GET", "/echo").status == 200
        t0 = time.monotonic()
        m.signal(signal.SIGTERM)
        rc = m.proc.wait(10 * SLOW)
        m.stopped_by_test = True
        assert rc == 0
        assert time.monotonic() - t0 < 5 * SLOW, "an idle keep-alive connection held up shutdown"
        assert c.closed(timeout=2)
    finally:
        c.close()


def test_sigint_stops_gracefully(meridian, backend):
    m = meridian.start(simple_config([backend.address]))
    assert m.request("GET", "/").status == 200
    m.signal(signal.SIGINT)
    rc = m.proc.wait(10 * SLOW)
    m.stopped_by_test = True
    assert rc == 0


def test_shutdown_timeout_bounds_drain(meridian, backend):
    m = meridian.start(simple_config([backend.address], extra="timeouts: {shutdown: 500ms}\n"))
    result = {}

    def client():
        try:
            with HttpConn(m.port, timeout=15) as c:
                result["resp"] = c.request("GET", "/?delay=8000")
        except Exception as e:
            result["error"] = repr(e)

    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.3 * SLOW)
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    rc = m.proc.wait(10 * SLOW)
    m.stopped_by_test = True
    elapsed = time.monotonic() - t0
    t.join(10)
    assert rc == 0
    assert elapsed < 4 * SLOW, "shutdown took %.1fs with timeouts.shutdown 500ms" % elapsed
    assert "resp" not in result or result["resp"].status != 200


def _reload(m, text):
    with open(m.conf, "w") as f:
        f.write(text)
    m.signal(signal.SIGHUP)


def test_sighup_valid_config_switches_upstream(meridian, backends):
    a, b = backends.start("a"), backends.start("b")
    m = meridian.start(simple_config([a.address]))
    with HttpConn(m.port) as keep:
        assert keep.request("GET", "/").header("X-Backend") == "a"
        _reload(m, m.yaml_text.replace(a.address, b.address))

        def on_b():
            return m.request("GET", "/").header("X-Backend") == "b"

        assert wait_for(on_b, 5 * SLOW, 0.1), "requests still go to a after SIGHUP:\n" + m.stderr()
        # every new request now goes to b, none fail
        for _ in range(20):
            r = m.request("GET", "/")
            assert r.status == 200 and r.header("X-Backend") == "b"
        # an existing keep-alive client connection works too (new requests, new config)
        r = keep.request("GET", "/")
        assert r.status == 200
    assert m.alive()


def test_sighup_under_load_no_request_fails(meridian, backends):
    a, b = backends.start("a"), backends.start("b")
    m = meridian.start(simple_config([a.address]))
    stop = threading.Event()
    failures = []
    seen = set()

    def load():
        while not stop.is_set():
            try:
                with HttpConn(m.port) as c:
                    for _ in range(5):
                        r = c.request("GET", "/echo")
                        if r.status != 200:
                            failures.append(r.status_line)
                        seen.add(r.header("X-Backend"))
            except Exception as e:
                failures.append(repr(e))

    ts = [threading.Thread(target=load) for _ in range(4)]
    for t in ts:
        t.start()
    try:
        time.sleep(0.3)
        for i in range(4):
            _reload(m, m.yaml_text.replace(a.address, b.address if i % 2 == 0 else a.address))
            time.sleep(0.25 * SLOW)
    finally:
        stop.set()
        for t in ts:
            t.join(10)
    assert m.alive()
    assert not failures, failures[:10]
    assert seen == {"a", "b"}, seen


def test_sighup_invalid_config_keeps_old_one(meridian, backends):
    a, b = backends.start("a"), backends.start("b")
    m = meridian.start(simple_config([a.address]))
    assert m.request("GET", "/").header("X-Backend") == "a"
    bad = m.yaml_text.replace(a.address, b.address) + "bogus_key: 1\n"
    bad_line = bad.count("\n")                # the last line holds bogus_key
    _reload(m, bad)
    # give it time to (not) switch
    assert wait_for(lambda: "bogus_key" in m.stderr(), 3 * SLOW), "reload error not logged:\n" + m.stderr()
    assert "%s:%d:" % (m.conf, bad_line) in m.stderr(), m.stderr()
    for _ in range(10):
        r = m.request("GET", "/")
        assert r.status == 200 and r.header("X-Backend") == "a", r
    assert m.alive()
    # and a later valid reload still works
    _reload(m, m.yaml_text.replace(a.address, b.address))
    assert wait_for(lambda: m.request("GET", "/").header("X-Backend") == "b", 5 * SLOW, 0.1)


def test_sighup_unreadable_file_keeps_serving(meridian, backend):
    import os
    m = meridian.start(simple_config([backend.address]))
    os.unlink(m.conf)
    m.signal(signal.SIGHUP)
    time.sleep(0.3 * SLOW)
    assert m.alive()
    assert m.request("GET", "/").status == 200
