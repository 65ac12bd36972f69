"""Active and passive upstream health (SPEC 2 health_check, 3.2, 3.5)."""
import time

from conftest import SLOW, simple_config


def test_503_when_no_upstream_is_healthy(meridian, backend):
    hc = ("    health_check: {path: /healthz, interval: 100ms, timeout: 500ms, rise: 1, fall: 1,"
          " expect_status: 200}\n")
    m = meridian.start(simple_config([backend.address], region_extra=hc))
    assert m.request("GET", "/echo").status == 200
    backend.set_health(False)
    deadline = time.monotonic() + 5 * SLOW
    r = None
    while time.monotonic() < deadline:
        r = m.request("GET", "/echo")
        if r.status == 503:
            break
        time.sleep(0.05)
    assert r is not None and r.status == 503, "still %r after the only upstream failed its health check" % r
    assert r.status_line == "HTTP/1.1 503 Service Unavailable"
    assert r.header("X-Backend") is None
    ra = r.header("Retry-After")
    assert ra is not None and ra.isdigit(), r.headers
    assert 0 < len(r.body) <= 512
    backend.set_health(True)
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline:
        r = m.request("GET", "/echo")
        if r.status == 200:
            break
        time.sleep(0.05)
    assert r.status == 200, "upstream did not come back after passing health checks"




# --------------------------------------------------------------------------
# fall / rise counts, status-based checks, reload carry-over
# --------------------------------------------------------------------------

import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402

from conftest import HttpConn, free_port, read_request, request, wait_for  # noqa: E402


class CheckedUpstream:
    """State for a Python upstream whose /healthz answers `status` (settable)
    and which records when each check was answered and with what."""

    def __init__(self, name):
        self.name = name
        self.status = 200
        self.checks = []          # (monotonic time the answer was sent, status)
        self.served = 0
        self.reset_paths = set()  # requests for these paths are reset (RST), unanswered
        self.lock = threading.Lock()

    def handler(self, sock, reader, up):
        while True:
            req = read_request(reader)
            if req is None:
                return
            up.record(req)
            _method, target, _headers, _body = req
            if target.split("?")[0] in self.reset_paths:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                return
            if target.split("?")[0] == "/healthz":
                with self.lock:
                    st = self.status
                body = b"ok\n" if st == 200 else b"failing\n"
                sock.sendall(("HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                              % (st, len(body))).encode() + body)
                with self.lock:
                    self.checks.append((time.monotonic(), st))
                return
            with self.lock:
                self.served += 1
            body = (self.name + "\n").encode()
            sock.sendall(("HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n"
                          % (self.name, len(body))).encode() + body)

    def set_status(self, st):
        with self.lock:
            self.status = st
            return time.monotonic()

    def answered(self, status, t0, t1):
        with self.lock:
            return sum(1 for t, st in self.checks if st == status and t0 <= t < t1)


def region_health(admin_port, region="r1"):
    r = request(admin_port, "GET", "/v1/route?ip=127.0.0.1")
    assert r.status == 200, r
    for x in json.loads(r.body)["regions"]:
        if x["name"] == region:
            return x["health"]
    raise AssertionError("region %s not in %r" % (region, r.body))


def wait_health(admin_port, pred, timeout):
    """Polls /v1/route every ~5 ms; returns (time first seen, value) or (None, last)."""
    deadline = time.monotonic() + timeout * SLOW
    v = None
    while time.monotonic() < deadline:
        v = region_health(admin_port)
        if pred(v):
            return time.monotonic(), v
        time.sleep(0.005)
    return None, v


def backends_of(port, n):
    out = []
    for _ in range(n):
        r = request(port, "GET", "/")
        assert r.status == 200, r
        out.append(r.header("X-Backend"))
    return out


def test_status_500_takes_upstream_out_after_fall_and_back_after_rise(meridian, backends, pyupstream, capsys):
    """/healthz answering 500 (expect_status 200): out after exactly `fall`
    failing checks, the other upstream takes all the traffic; back after
    exactly `rise` passing checks."""
    fall, rise = 2, 3
    cu = CheckedUpstream("u1")
    u1 = pyupstream.start(cu.handler)
    u2 = backends.start("u2")
    admin = free_port()
    hc = ("    health_check: {path: /healthz, interval: 150ms, timeout: 500ms, rise: %d, fall: %d,"
          " expect_status: 200}\n" % (rise, fall))
    m = meridian.start(simple_config([u1.address, u2.address], balance="round_robin",
                                     extra='admin: {address: "127.0.0.1:%d"}\n' % admin, region_extra=hc))
    assert wait_for(lambda: cu.answered(200, 0, time.monotonic() + 1) >= 2, 3 * SLOW), "no health checks seen"
    assert region_health(admin) == 1.0
    assert set(backends_of(m.port, 6)) == {"u1", "u2"}

    t_flip = cu.set_status(500)
    t_down, v = wait_health(admin, lambda h: h < 0.75, 3)
    assert t_down is not None, "u1 still in rotation 3 s after its checks started failing (health %r)" % v
    assert abs(v - 0.5) < 1e-3, v
    n_fail = cu.answered(500, t_flip, t_down)
    assert n_fail == fall, "out of rotation after %d failing checks (fall: %d)" % (n_fail, fall)
    assert backends_of(m.port, 20) == ["u2"] * 20
    served_before = cu.served

    t_flip2 = cu.set_status(200)
    t_up, v = wait_health(admin, lambda h: h > 0.75, 3)
    assert t_up is not None, "u1 not back 3 s after its checks passed again (health %r)" % v
    n_pass = cu.answered(200, t_flip2, t_up)
    assert n_pass == rise, "back in rotation after %d passing checks (rise: %d)" % (n_pass, rise)
    assert cu.served == served_before, "u1 got traffic while out of rotation"
    assert set(backends_of(m.port, 6)) == {"u1", "u2"}
    with capsys.disabled():
        print("\nhealth: out %.3f s after the first 500 (%d failing checks), back %.3f s after the first "
              "pass (%d passing checks)" % (t_down - t_flip, n_fail, t_up - t_flip2, n_pass))


def test_health_state_carries_over_a_reload(meridian, backends):
    """SIGHUP with the same upstream addresses (and one added): the upstream
    that was down stays down right after the reload (no request reaches it
    before the new checks could judge it), the new one starts healthy."""
    u1 = backends.start("u1")
    u2 = backends.start("u2")
    u1.set_health(False)
    admin = free_port()
    hc = ("    health_check: {path: /healthz, interval: 2s, timeout: 500ms, rise: 2, fall: 1,"
          " expect_status: 200}\n")
    extra = 'admin: {address: "127.0.0.1:%d"}\n' % admin
    m = meridian.start(simple_config([u1.address, u2.address], balance="round_robin", extra=extra,
                                     region_extra=hc))
    t_down, v = wait_health(admin, lambda h: h < 0.75, 3)
    assert t_down is not None, "u1 never went down (health %r)" % v
    assert backends_of(m.port, 10) == ["u2"] * 10

    u3 = backends.start("u3")
    new_text = m.yaml_text.replace(
        '      - {address: "%s"}\n' % u2.address,
        '      - {address: "%s"}\n      - {address: "%s"}\n' % (u2.address, u3.address))
    new_text = "response_headers: {region: true}\n" + new_text
    assert new_text != m.yaml_text
    with open(m.conf, "w") as f:
        f.write(new_text)
    m.signal(signal.SIGHUP)
    seen = []
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline:
        r = request(m.port, "GET", "/")
        assert r.status == 200, r
        seen.append(r.header("X-Backend"))
        if r.header("X-Meridian-Region") == "r1":
            break
    else:
        raise AssertionError("the reload never took effect:\n" + m.stderr())
    # right after the reload: the first check of the new configuration is up
    # to interval/4 = 500 ms away; u1 must not be back in rotation meanwhile
    after = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.4:
        with HttpConn(m.port) as c:
            r = c.request("GET", "/")
        assert r.status == 200, r
        after.append(r.header("X-Backend"))
    h = region_health(admin)
    assert "u1" not in seen + after, "u1 (down) got traffic around the reload: %r" % (seen + after)
    assert "u3" in after, "the upstream added by the reload did not start healthy: %r" % after
    assert abs(h - 2 / 3) < 1e-3, "health right after the reload %r (want 2/3: u1 down, u2 and u3 up)" % h
    assert m.alive()


def test_checks_follow_the_interval_with_jitter(meridian, pyupstream, capsys):
    """interval 100ms with +-10% jitter: successive checks of one upstream are
    90-110 ms apart (plus the check's own round trip), and not all equal."""
    cu = CheckedUpstream("u1")
    u1 = pyupstream.start(cu.handler)
    hc = ("    health_check: {path: /healthz, interval: 100ms, timeout: 500ms, rise: 2, fall: 2,"
          " expect_status: 200}\n")
    meridian.start(simple_config([u1.address], region_extra=hc))
    time.sleep(2.0)
    with cu.lock:
        times = [t for t, _ in cu.checks]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 12, "only %d checks in 2 s at interval 100ms" % len(times)
    with capsys.disabled():
        print("\nhealth check gaps: min %.1f ms, max %.1f ms, mean %.1f ms over %d"
              % (1000 * min(gaps), 1000 * max(gaps), 1000 * sum(gaps) / len(gaps), len(gaps)))
    assert min(gaps) > 0.085, ["%.3f" % g for g in gaps]
    # the median shows the schedule (interval +-10% plus the check's round
    # trip); single gaps may stretch when the machine is busy
    median = sorted(gaps)[len(gaps) // 2]
    assert 0.090 < median < 0.115 + 0.010 * SLOW, ["%.3f" % g for g in gaps]
    assert max(gaps) < 0.110 + 0.100 * SLOW, ["%.3f" % g for g in gaps]
    assert max(gaps) - min(gaps) > 0.004, "no jitter: %r" % ["%.4f" % g for g in gaps]


def test_check_slower_than_timeout_counts_as_failure(meridian, backends):
    """A /healthz answer later than health_check.timeout is a failed check:
    the upstream goes out after `fall` of them and comes back when it is fast
    again."""
    u1 = backends.start("u1")
    u2 = backends.start("u2")
    admin = free_port()
    hc = ("    health_check: {path: /healthz, interval: 100ms, timeout: 200ms, rise: 2, fall: 2,"
          " expect_status: 200}\n")
    m = meridian.start(simple_config([u1.address, u2.address], balance="round_robin",
                                     extra='admin: {address: "127.0.0.1:%d"}\n' % admin, region_extra=hc))
    assert region_health(admin) == 1.0
    r = request(u1.port, "POST", "/admin/delay?ms=400")
    assert r.status == 200, r
    t0 = time.monotonic()
    t_down, v = wait_health(admin, lambda h: h < 0.75, 3)
    assert t_down is not None, "u1 answering /healthz after 400 ms (timeout 200ms) stayed in (health %r)" % v
    # fall 2 checks that each need the 200 ms timeout, 100 ms apart
    assert t_down - t0 > 0.3, "out %.3f s after the slowdown: sooner than 2 timed-out checks" % (t_down - t0)
    assert backends_of(m.port, 10) == ["u2"] * 10
    r = request(u1.port, "POST", "/admin/delay?ms=0")
    assert r.status == 200, r
    t_up, v = wait_health(admin, lambda h: h > 0.75, 3)
    assert t_up is not None, "u1 did not come back once fast again (health %r)" % v


def test_passive_ejection_comes_back_after_rise_checks(meridian, pyupstream, capsys):
    """SPEC 3.5: an upstream that resets a request is out of rotation at once
    (the request itself is retried on the other upstream and succeeds), and
    comes back after the health check sees it pass `rise` times."""
    rise = 3
    cu = CheckedUpstream("u1")
    cu.reset_paths.add("/boom")
    u1 = pyupstream.start(cu.handler)
    u2 = pyupstream.start(CheckedUpstream("u2").handler)
    admin = free_port()
    hc = ("    health_check: {path: /healthz, interval: 150ms, timeout: 500ms, rise: %d, fall: 3,"
          " expect_status: 200}\n" % rise)
    m = meridian.start(simple_config([u1.address, u2.address], balance="round_robin",
                                     extra='admin: {address: "127.0.0.1:%d"}\n' % admin,
                                     region_extra="    retries: 1\n" + hc))
    assert region_health(admin) == 1.0
    boom = []
    for _ in range(2):     # round robin: one of the two goes to u1 first
        t0 = time.monotonic()
        r = request(m.port, "GET", "/boom")
        t1 = time.monotonic()
        boom.append((r.status, r.header("X-Backend")))
        if region_health(admin) < 0.75:
            break
    assert all(b == (200, "u2") for b in boom), "the reset request was not retried on u2: %r" % boom
    h = region_health(admin)
    assert abs(h - 0.5) < 1e-3, "u1 reset a request but is still in rotation (health %r)" % h
    assert backends_of(m.port, 10) == ["u2"] * 10
    t_up, v = wait_health(admin, lambda x: x > 0.75, 3)
    assert t_up is not None, "u1 never came back although its checks pass (health %r)" % v
    # a check answered while the /boom request was in flight may or may not
    # count (before or after the ejection)
    unsure = cu.answered(200, t0, t1)
    n_pass = cu.answered(200, t1, t_up)
    with capsys.disabled():
        print("\npassive ejection: back after %d passing checks (+%d unsure), %.3f s"
              % (n_pass, unsure, t_up - t1))
    assert rise - unsure <= n_pass <= rise, "back after %d passing checks (rise: %d)" % (n_pass, rise)
    assert set(backends_of(m.port, 6)) == {"u1", "u2"}


def test_passive_ejection_applies_to_all_workers_at_once(meridian, pyupstream):
    """workers: 4, fresh connections: after the first reset request, no
    worker sends u1 another request (its checks pass, but rise is 2 at a 1 s
    interval, so it cannot come back during the burst)."""
    cu = CheckedUpstream("u1")
    cu.reset_paths.add("/r")
    u1 = pyupstream.start(cu.handler)
    u2 = pyupstream.start(CheckedUpstream("u2").handler)
    hc = ("    health_check: {path: /healthz, interval: 1s, timeout: 500ms, rise: 2, fall: 3,"
          " expect_status: 200}\n")
    m = meridian.start(simple_config([u1.address, u2.address], balance="round_robin", workers=4,
                                     region_extra="    retries: 1\n" + hc))
    t0 = time.monotonic()
    results = [request(m.port, "GET", "/r") for _ in range(40)]
    elapsed = time.monotonic() - t0
    assert all((r.status, r.header("X-Backend")) == (200, "u2") for r in results), \
        [(r.status, r.header("X-Backend")) for r in results]
    hits = [req[1] for req in u1.requests if req[1] != "/healthz"]
    assert elapsed < 0.8, "burst too slow to judge (%.2f s)" % elapsed
    assert len(hits) == 1, "u1 got %d requests after it reset one (ejection not shared): %r" % (len(hits), hits)
