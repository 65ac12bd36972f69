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


