"""The latency factor steers traffic (SPEC 3.3, 2 health_check).

Two regions at the same place (geography ties), same cost, one upstream each,
both capped at CAP req/s so that the health headroom term
`h = 1 - rate / capacity_rps` shares the load: with equal latency the scores
are equal when the rates are, so traffic splits about evenly.

Slowing one backend by 150 ms (POST /admin/delay, which also slows its
/healthz) lowers that region's latency factor `l = 1 - L / 500ms` by ~0.3,
worth 0.2 * 0.3 = 0.06 of score; the scores balance again when the fast
region's headroom is 0.06 / 0.3 = 0.2 lower, i.e. when it carries 0.2 * CAP
req/s more than the slow one. With CAP 600 and ~160 req/s offered, SPEC 3.3
predicts ~(160 + 120) / 2 = 140 req/s (~88%) on the fast region. Removing
the delay: the latency EWMA (alpha 1/8, fed by requests and health-check
round trips) decays within a second or two and the split is even again.
"""
import json
import threading
import time

from conftest import SLOW, HttpConn, free_port, request

CAP = 600
HC = "{path: /healthz, interval: 100ms, timeout: 500ms, rise: 2, fall: 1, expect_status: 200}"
CEILING_MS = 500.0
W = {"geography": 0.4, "health": 0.3, "latency": 0.2, "cost": 0.1}


class PacedLoad:
    """`threads` keep-alive clients, each sending a GET every 1/rps_each s
    (no catch-up bursts). records: (t_done, status, region)."""

    def __init__(self, port, threads=8, rps_each=20):
        self.port = port
        self.period = 1.0 / rps_each
        self.records = []
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, idx):
        conn = None
        nxt = time.monotonic() + idx * self.period / len(self.threads)
        while not self.stopping.is_set():
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
            nxt += self.period
            if nxt < time.monotonic():
                nxt = time.monotonic()
            try:
                if conn is None:
                    conn = HttpConn(self.port, timeout=10)
                r = conn.request("GET", "/")
                with self.lock:
                    self.records.append((time.monotonic(), r.status, r.header("X-Meridian-Region")))
            except Exception as e:  # noqa: BLE001
                with self.lock:
                    self.errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(10 * SLOW)

    def window(self, seconds):
        """Sleeps `seconds`, returns the responses completed meanwhile."""
        t0 = time.monotonic()
        time.sleep(seconds)
        t1 = time.monotonic()
        with self.lock:
            return [r for r in self.records if t0 <= r[0] < t1], t1 - t0


def share(recs, region):
    ok = [r for r in recs if r[1] == 200]
    return sum(1 for r in ok if r[2] == region) / max(1, len(ok))


def route_factors(admin_port):
    r = request(admin_port, "GET", "/v1/route?ip=127.0.0.2")
    assert r.status == 200, r
    return {x["name"]: x for x in json.loads(r.body)["regions"]}


def predicted_fast_share(total_rps, l_fast, l_slow):
    """SPEC 3.3 equilibrium: W_h * (r_f - r_s) / CAP = W_l * (l_f - l_s)."""
    diff = W["latency"] * (l_fast - l_slow) / W["health"] * CAP
    r_fast = min(total_rps, (total_rps + diff) / 2.0)
    return max(0.0, r_fast / total_rps)


def test_slow_region_loses_traffic_and_wins_it_back(meridian, backends, capsys):
    slow = backends.start("slow")
    fast = backends.start("fast")
    admin_port = free_port()
    cfg = (
        "workers: 2\n"
        'admin: {address: "127.0.0.1:%d"}\n' % admin_port
        + "geo:\n"
        "  networks:\n"
        "    - {cidr: \"127.0.0.0/8\", country: DE, continent: EU, latitude: 52.52, longitude: 13.40}\n"
        "response_headers: {region: true}\n"
        "regions:\n"
        "  - name: slow\n"             # listed first: ties go to it
        "    location: {latitude: 50.1, longitude: 8.7}\n"
        "    capacity_rps: %d\n" % CAP
        + "    health_check: " + HC + "\n"
        "    upstreams:\n"
        '      - {address: "%s"}\n' % slow.address
        + "  - name: fast\n"
        "    location: {latitude: 50.1, longitude: 8.7}\n"
        "    capacity_rps: %d\n" % CAP
        + "    health_check: " + HC + "\n"
        "    upstreams:\n"
        '      - {address: "%s"}\n' % fast.address
    )
    m = meridian.start(cfg)
    load = PacedLoad(m.port, threads=8, rps_each=20)
    try:
        time.sleep(1.5)
        base, d0 = load.window(2.0)
        f0 = route_factors(admin_port)

        r = request(slow.port, "POST", "/admin/delay?ms=150")
        assert r.status == 200, r
        time.sleep(2.5)
        slowed, d1 = load.window(2.5)
        f1 = route_factors(admin_port)

        r = request(slow.port, "POST", "/admin/delay?ms=0")
        assert r.status == 200, r
        time.sleep(2.5)
        after, d2 = load.window(2.5)
        f2 = route_factors(admin_port)
    finally:
        load.stop()

    def line(name, recs, dur, f):
        rps = len(recs) / dur
        pred = predicted_fast_share(rps, f["fast"]["latency"], f["slow"]["latency"])
        return ("%-9s %5.0f req/s  fast %5.1f%% (SPEC 3.3 predicts %5.1f%%)  latency factor slow %.4f fast %.4f"
                % (name, rps, 100 * share(recs, "fast"), 100 * pred, f["slow"]["latency"], f["fast"]["latency"]),
                pred)

    l0, p0 = line("baseline", base, d0, f0)
    l1, p1 = line("slowed", slowed, d1, f1)
    l2, p2 = line("restored", after, d2, f2)
    with capsys.disabled():
        print("\nlatency steering (capacity_rps %d per region, delay 150 ms on 'slow'):\n  %s\n  %s\n  %s"
              % (CAP, l0, l1, l2))
    summary = "\n".join([l0, l1, l2])
    assert not load.errors, load.errors[:5]
    bad = [r for r in base + slowed + after if r[1] != 200]
    assert not bad, bad[:5]
    assert len(slowed) > 150, "too little traffic to judge: %d responses\n%s" % (len(slowed), summary)
    # the slowed backend's check round trips are seen in the factor
    assert f1["slow"]["latency"] < 0.8, summary
    assert 0.3 < share(base, "fast") < 0.7, "equal latency, equal caps: should split\n" + summary
    assert share(slowed, "fast") > 0.8, "the slow region kept its traffic\n" + summary
    assert abs(share(slowed, "fast") - p1) < 0.1, "split far from the SPEC 3.3 equilibrium\n" + summary
    assert share(after, "slow") > 0.3, "the formerly slow region did not win back its share\n" + summary
