"""The health factor sees the fleet's rate (SPEC 3.3 with SPEC 8): an
instance that serves nothing itself still scores a region's headroom by
what the whole fleet admits there. Two instances on one Redis (Debian's
redis-server, started here and stopped by pid); load on one of them only."""
import http.client
import threading
import time

from conftest import admin_get, wait_for
from redis_harness import RedisServer
from test_admin import parse_metrics, value
from test_cluster import REGION, cluster_block, start_instance

CAP = 100


def paced(port, rps, seconds, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        d = t0 + n / rps - time.monotonic()
        if d > 0:
            time.sleep(d)
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        out.append(r.status)
        n += 1
    c.close()


def health(admin):
    _, samples = parse_metrics(admin_get(admin, "/metrics").body.decode())
    return value(samples, "meridian_region_score", region=REGION, factor="health")


def test_health_factor_uses_the_fleet_rate(meridian, backend, tmp_path):
    r = RedisServer(tmp_path)
    try:
        a, b = [start_instance(meridian, backend, cluster_block(r.address, r.password_file, instance=i,
                                                                 name="health"), i, cap=CAP)
                for i in ("a", "b")]
        for x in (a, b):
            assert wait_for(lambda: x.cluster()["mode"] == "shared", 5), x.cluster()
        assert abs(health(b.admin) - 1.0) < 1e-6  # nothing admitted anywhere yet
        # a new fleet's bucket starts empty and fills at the cap from the
        # first sync (no burst after a Redis restart): let it fill
        time.sleep(0.5)
        statuses = []
        t = threading.Thread(target=paced, args=(a.port, 40, 3.0, statuses))
        t.start()
        time.sleep(2.0)
        region_b = b.region()
        h_b = health(b.admin)
        t.join()
        print("\nb (no load of its own): rate %.1f, fleet_rate %.1f, health %.3f; a answered %d x 200 of %d" % (
            region_b["rate"], region_b["fleet_rate"], h_b, statuses.count(200), len(statuses)))
        assert statuses.count(200) == len(statuses)  # 40 rps under a cap of 100: nothing shed
        assert region_b["rate"] == 0
        # a admits about 40/s: b sees it through the fleet, headroom 1 - 40/100
        assert 28 <= region_b["fleet_rate"] <= 52, region_b
        assert 0.48 <= h_b <= 0.72, h_b
    finally:
        r.stop()
