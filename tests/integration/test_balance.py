"""Balancers inside a region: round_robin (weighted), least_connections, p2c_ewma."""
import collections
import threading

from conftest import HttpConn, keepalive_handler, simple_config


def spread(m, n, path="/"):
    counts = collections.Counter()
    with m.conn() as c:
        for _ in range(n):
            r = c.request("GET", path)
            assert r.status == 200, r
            counts[r.header("X-Backend")] += 1
    return counts


def test_round_robin_weights_3_to_1(meridian, backends):
    a, b = backends.start("a"), backends.start("b")
    m = meridian.start(simple_config([(a.address, 3), (b.address, 1)], balance="round_robin"))
    counts = spread(m, 400)
    assert sum(counts.values()) == 400
    assert 280 <= counts["a"] <= 320, counts
    assert 80 <= counts["b"] <= 120, counts


def test_round_robin_equal_weights_alternate(meridian, backends):
    bs = [backends.start(n) for n in ("a", "b", "c")]
    m = meridian.start(simple_config([b.address for b in bs], balance="round_robin"))
    counts = spread(m, 300)
    for n in ("a", "b", "c"):
        assert 90 <= counts[n] <= 110, counts
    # consecutive picks are spread, not batched
    seq = []
    with m.conn() as c:
        for _ in range(30):
            seq.append(c.request("GET", "/").header("X-Backend"))
    for i in range(0, 27, 3):
        assert len(set(seq[i:i + 3])) == 3, seq


def test_round_robin_is_per_request_not_per_connection(meridian, backends):
    a, b = backends.start("a"), backends.start("b")
    m = meridian.start(simple_config([a.address, b.address], balance="round_robin"))
    seen = set()
    for _ in range(10):
        with m.conn() as c:
            seen.add(c.request("GET", "/").header("X-Backend"))
    assert seen == {"a", "b"}


def _concurrent(m, nthreads, per_thread):
    counts = collections.Counter()
    lock = threading.Lock()
    errors = []

    def run():
        try:
            for _ in range(per_thread):
                with HttpConn(m.port) as c:
                    r = c.request("GET", "/")
                with lock:
                    counts[r.header("X-Backend")] += 1
        except Exception as e:          # reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=run) for _ in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:5]
    return counts


def test_least_connections_avoids_slow_upstream(meridian, backend, pyupstream):
    slow = pyupstream.start(keepalive_handler("slow", delay=0.25))
    fast = backend          # mrd-backend named b1 answers at once
    m = meridian.start(simple_config([slow.address, fast.address], balance="least_connections"))
    counts = _concurrent(m, 8, 10)
    total = counts["slow"] + counts["b1"]
    assert total == 80, counts
    assert counts["slow"] < 0.3 * total, counts
    assert counts["slow"] >= 1, "the slow upstream was never tried: %r" % counts


def test_p2c_ewma_prefers_faster_upstream(meridian, backend, pyupstream):
    slow = pyupstream.start(keepalive_handler("slow", delay=0.05))
    m = meridian.start(simple_config([slow.address, backend.address], balance="p2c_ewma"))
    counts = spread(m, 120)
    assert counts["slow"] + counts["b1"] == 120, counts
    assert counts["b1"] >= 0.75 * 120, counts


def test_weight_zero_or_single_upstream_gets_everything(meridian, backends):
    a = backends.start("only")
    m = meridian.start(simple_config([a.address], balance="p2c_ewma"))
    assert spread(m, 20) == {"only": 20}


def test_failed_upstream_is_skipped(meridian, backends, pyupstream):
    """A refusing upstream is taken out of rotation (passive health), the rest
    get the traffic and requests keep succeeding."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    a = backends.start("a")
    m = meridian.start(simple_config([dead, a.address], balance="round_robin"))
    statuses = collections.Counter()
    with m.conn() as c:
        for _ in range(20):
            r = c.request("GET", "/")
            statuses[(r.status, r.header("X-Backend"))] += 1
            if r.status != 200:
                c.close()
                c = HttpConn(m.port)
    bad = sum(n for (st, _), n in statuses.items() if st != 200)
    assert bad == 0, "requests failed although another upstream was healthy (retries): %r" % statuses
