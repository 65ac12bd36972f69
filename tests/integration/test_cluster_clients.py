"""Client rate limits of scope cluster (SPEC 8, issue 14): one client's
limit holds across the fleet. Two meridian instances share one Redis
(Debian's redis-server, started here on a free loopback port with a
password and stopped by pid); each keeps its own table as the fast path and
settles with Redis every sync_interval. The contrast with scope: instance
shows what the fleet prevents: one burst per instance."""
import http.client
import time

import pytest

from conftest import admin_get, free_port, simple_config, wait_for
from redis_harness import RedisServer
from test_cluster import cluster_block

SYNC = 0.1


@pytest.fixture
def redis(tmp_path):
    r = RedisServer(tmp_path)  # started, with a password file
    yield r
    r.stop()


def start_pair(meridian, backend, redis, tmp_path, rate, burst, scope="cluster", name="clients"):
    pf = redis.password_file
    out = []
    for ident in ("a", "b"):
        admin = free_port()
        extra = ('admin: {address: "127.0.0.1:%d"}\n' % admin +
                 cluster_block(redis.address, pf, instance=ident, name=name) +
                 "policies:\n  client_rate_limit: {rate: %s, burst: %d, scope: %s}\n" % (rate, burst, scope))
        m = meridian.start(simple_config([backend.address], workers=1, extra=extra))
        out.append((m, admin))
    for m, admin in out:
        assert wait_for(lambda: admin_get(admin, "/v1/status").json()["cluster"]["mode"] == "shared", 5), \
            admin_get(admin, "/v1/status").json()["cluster"]
    return out


def burst_of(port, n):
    """n requests on one keep-alive connection; the statuses"""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    out = []
    for _ in range(n):
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        out.append(r.status)
    c.close()
    return out


def test_one_burst_for_the_whole_fleet(meridian, backend, redis, tmp_path):
    (a, _), (b, _) = start_pair(meridian, backend, redis, tmp_path, "60/min", 10)
    first = burst_of(a.port, 10)
    assert first == [200] * 10, first
    time.sleep(4 * SYNC)  # reported by a, imported by b
    second = burst_of(b.port, 10)
    print("\nscope cluster: a %s, then b %s" % (first, second))
    # 1 token a second: at most one came back since a's burst
    assert second.count(200) <= 1, second
    assert set(second) <= {200, 429}, second
    # and the limited answers say when to come back
    c = http.client.HTTPConnection("127.0.0.1", b.port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    assert r.status == 429 and int(r.getheader("Retry-After")) >= 1


def test_scope_instance_gives_one_burst_per_instance(meridian, backend, redis, tmp_path):
    (a, _), (b, _) = start_pair(meridian, backend, redis, tmp_path, "60/min", 10, scope="instance",
                                name="clients-instance")
    assert burst_of(a.port, 10) == [200] * 10
    time.sleep(4 * SYNC)
    second = burst_of(b.port, 10)
    # the contrast: without the fleet, b knows nothing of a's burst
    assert second == [200] * 10, second


def test_sustained_rate_across_two_instances_within_10_percent(meridian, backend, redis, tmp_path):
    rate, burst, window = 10.0, 5, 5.0
    (a, _), (b, _) = start_pair(meridian, backend, redis, tmp_path, "600/min", burst, name="clients-rate")
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=5) for p in (a.port, b.port)]
    ok = [0, 0]
    limited = 0
    t0 = time.monotonic()
    i = 0
    # 40 requests a second from one client, alternately to a and b: four
    # times its limit, spread over the fleet
    while True:
        t = t0 + i / 40.0
        if t - t0 >= window:
            break
        d = t - time.monotonic()
        if d > 0:
            time.sleep(d)
        c = conns[i % 2]
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        if r.status == 200:
            ok[i % 2] += 1
        else:
            assert r.status == 429, r.status
            limited += 1
        i += 1
    for c in conns:
        c.close()
    total = sum(ok)
    expected = rate * window + burst
    print("\nscope cluster, 40 rps over a and b for %.0f s: admitted a %d + b %d = %d (limit %.0f + burst %d = %.0f),"
          " limited %d" % (window, ok[0], ok[1], total, rate * window, burst, expected, limited))
    # one limit for the fleet, within 10% (scope instance would give twice it)
    assert total <= 1.10 * rate * window + burst, total
    assert total >= 0.90 * rate * window, total
    assert ok[0] > 0 and ok[1] > 0


def test_redis_down_keeps_limiting_per_instance(meridian, backend, redis, tmp_path):
    (a, admin_a), (b, _) = start_pair(meridian, backend, redis, tmp_path, "60/min", 5, name="clients-down")
    redis.kill()
    assert wait_for(lambda: admin_get(admin_a, "/v1/status").json()["cluster"]["redis"]["state"] == "down", 5)
    # each instance still limits by itself: one burst each, then 429
    got = burst_of(a.port, 8)
    assert got[:5] == [200] * 5 and set(got[5:]) == {429}, got
    got = burst_of(b.port, 8)
    assert got.count(200) <= 5 and got[-1] == 429, got
