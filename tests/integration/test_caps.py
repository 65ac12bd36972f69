"""Region caps and fallback chains (SPEC 3.4) and soft steering by the health
factor (SPEC 3.3), measured under real load from a paced, pipelining,
keep-alive load generator (one thread, selectors, many connections).

Per-second figures are printed; run with -s to see them."""
import collections
import re
import selectors
import socket
import time

from conftest import HttpConn, Reader, admin_get, free_port, request

# --------------------------------------------------------------------------
# load generator
# --------------------------------------------------------------------------

_HDR = {
    "region": re.compile(rb"\r\nX-Meridian-Region:[ \t]*([^\r]*)", re.I),
    "backend": re.compile(rb"\r\nX-Backend:[ \t]*([^\r]*)", re.I),
    "shed": re.compile(rb"\r\nX-Meridian-Shed:[ \t]*([^\r]*)", re.I),
    "retry": re.compile(rb"\r\nRetry-After:[ \t]*([^\r]*)", re.I),
    "clen": re.compile(rb"\r\nContent-Length:[ \t]*(\d+)", re.I),
}


class Result:
    __slots__ = ("t_send", "t_recv", "status", "region", "backend", "shed", "retry")

    def __init__(self, t_send, t_recv, status, region, backend, shed, retry):
        self.t_send, self.t_recv = t_send, t_recv
        self.status, self.region, self.backend, self.shed, self.retry = status, region, backend, shed, retry


class _Conn:
    def __init__(self, port, src):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind((src, 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.out = bytearray()
        self.inb = bytearray()
        self.pending = collections.deque()   # send times of requests in flight




def _get(rx, head):
    m = rx.search(head)
    return m.group(1).decode("latin-1").strip() if m else None


def load(port, rate, duration, src="127.0.0.1", conns=16, depth=16, path="/"):
    """Sends `rate` requests/s (paced in 1 ms steps, spread over `conns`
    keep-alive connections, at most `depth` pipelined on each) for `duration`
    seconds, then collects the outstanding responses. Returns (results, t0,
    sent); result times are seconds since t0."""
    req = ("GET %s HTTP/1.1\r\nHost: test\r\n\r\n" % path).encode()
    sel = selectors.DefaultSelector()
    cs = [_Conn(port, src) for _ in range(conns)]
    for c in cs:
        sel.register(c.sock, selectors.EVENT_READ, c)
    results = []
    sent = 0
    rr = 0
    t0 = time.monotonic()
    end = t0 + duration
    drain_deadline = end + 10.0
    while True:
        now = time.monotonic()
        if now < end:
            due = int(rate * (now - t0)) + 1 - sent
            while due > 0:
                for _ in range(conns):
                    c = cs[rr]
                    rr = (rr + 1) % conns
                    if len(c.pending) < depth:
                        break
                else:
                    break        # every connection is full: the server is behind
                c.out += req
                c.pending.append(now - t0)
                sent += 1
                due -= 1
        for c in cs:
            if c.out:
                try:
                    n = c.sock.send(c.out)
                    del c.out[:n]
                except BlockingIOError:
                    pass
        outstanding = sum(len(c.pending) for c in cs)
        if now >= end and outstanding == 0:
            break
        if now >= drain_deadline:
            raise AssertionError("%d responses still outstanding 10 s after the load stopped" % outstanding)
        timeout = 0.001 if now < end else 0.05
        for key, _ in sel.select(timeout):
            c = key.data
            try:
                chunk = c.sock.recv(262144)
            except BlockingIOError:
                continue
            if not chunk:
                raise AssertionError("meridian closed a keep-alive connection with %d requests in flight"
                                     % len(c.pending))
            c.inb += chunk
            t_recv = time.monotonic() - t0
            while True:
                i = c.inb.find(b"\r\n\r\n")
                if i < 0:
                    break
                head = bytes(c.inb[:i + 2])
                m = _HDR["clen"].search(head)
                blen = int(m.group(1)) if m else 0
                if len(c.inb) < i + 4 + blen:
                    break
                del c.inb[:i + 4 + blen]
                status = int(head[9:12])
                results.append(Result(c.pending.popleft(), t_recv, status, _get(_HDR["region"], head),
                                      _get(_HDR["backend"], head), _get(_HDR["shed"], head),
                                      _get(_HDR["retry"], head)))
    for c in cs:
        sel.unregister(c.sock)
        c.sock.close()
    sel.close()
    return results, t0, sent


def conn_from(port, src, timeout=10.0):
    """A keep-alive HttpConn whose source address is `src`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    c = HttpConn.__new__(HttpConn)
    c.sock = s
    c.reader = Reader(s)
    return c


def per_second(results, seconds, key):
    """{key value: [count in second 0, 1, ...]} binned by send time"""
    out = collections.defaultdict(lambda: [0] * seconds)
    for r in results:
        s = int(r.t_send)
        if 0 <= s < seconds:
            out[key(r)][s] += 1
    return out


def outcome(r):
    if r.status == 200:
        return r.region
    if r.status == 503 and r.shed == "capacity":
        return "shed"
    return "status %d" % r.status


def config(regions, nets, weights=None, workers=2, admin=None, extra=""):
    """regions: [(name, lat, lon, upstream, extra_yaml)]; nets: [(ip, lat, lon, cc, continent)]"""
    y = "workers: %d\n" % workers
    if admin:
        y += "admin: {address: \"127.0.0.1:%d\"}\n" % admin
    y += "geo:\n  networks:\n"
    for ip, lat, lon, cc, cont in nets:
        y += ("    - {cidr: \"%s/32\", country: %s, continent: %s, latitude: %s, longitude: %s}\n"
              % (ip, cc, cont, lat, lon))
    if weights:
        y += "scoring:\n  weights: {%s}\n" % ", ".join("%s: %s" % kv for kv in weights.items())
    y += extra
    y += "regions:\n"
    for name, lat, lon, up, rx in regions:
        y += "  - name: %s\n    location: {latitude: %s, longitude: %s}\n" % (name, lat, lon)
        y += rx
        y += "    upstreams:\n      - {address: \"%s\"}\n" % up
    return y


# --------------------------------------------------------------------------
# cap accuracy under sustained overload
# --------------------------------------------------------------------------

CAP_A, BURST_A = 200, 20
CAP_B, BURST_B = 200, 20


def test_cap_accuracy_and_fallback_under_overload(meridian, backends):
    """weights {geography: 1}: A always wins the score. 3.25x A's cap for 5 s:
    A admits capacity_rps per second within 5% (+ burst), the overflow goes to
    A's fallback B, and only when B's bucket is empty too is a request shed
    (503, Retry-After: 1, X-Meridian-Shed: capacity)."""
    a, b = backends.start("A"), backends.start("B")
    m = meridian.start(config(
        [("A", 48.0, 11.0, a.address, "    capacity_rps: %d\n    capacity_burst: %d\n    fallback: B\n" % (CAP_A, BURST_A)),
         ("B", 40.0, -74.0, b.address, "    capacity_rps: %d\n    capacity_burst: %d\n" % (CAP_B, BURST_B))],
        [("127.0.0.2", 48.1, 11.5, "DE", "EU")], weights={"geography": 1}))
    rate, secs = 650, 5
    res, t0, sent = load(m.port, rate, secs, src="127.0.0.2", conns=16)
    got = collections.Counter(outcome(r) for r in res)
    bins = per_second(res, secs, outcome)
    t_last = max(r.t_send for r in res)
    print("\ncap accuracy: offered %d req/s for %d s (%d sent, %.0f/s achieved)" % (rate, secs, sent, sent / t_last))
    print("  per second  A: %s  B: %s  shed: %s" % (bins["A"], bins["B"], bins["shed"]))
    print("  totals %s; expected A = B = %d*%.2f + %d = %.0f"
          % (dict(got), CAP_A, t_last, BURST_A, CAP_A * t_last + BURST_A))
    assert len(res) == sent
    assert set(got) <= {"A", "B", "shed"}, got
    assert sent / t_last >= 3 * CAP_A, "load generator too slow for 3x the cap: %.0f/s" % (sent / t_last)
    # every response carries the right backend
    assert all(r.backend == r.region for r in res if r.status == 200)
    # sheds are exactly SPEC's
    for r in res:
        if r.status == 503:
            assert r.shed == "capacity" and r.retry == "1", (r.status, r.shed, r.retry)
    # per second: seconds 1..4 are pure refill; second 0 also holds the
    # burst. A bucket stays full (at the burst) until its first admission, so
    # second 0 refills only from then: B's first use waits for A's bucket to
    # empty, and A's for the load generator's first request.
    for name, cap, burst in (("A", CAP_A, BURST_A), ("B", CAP_B, BURST_B)):
        for s in range(1, secs):
            assert abs(bins[name][s] - cap) <= 0.05 * cap, (name, s, bins[name])
        t_first = min(r.t_send for r in res if outcome(r) == name)
        exp0 = burst + cap * (1 - t_first)
        assert abs(bins[name][0] - exp0) <= 0.05 * cap, (name, 0, bins[name], "first at %.3f s" % t_first)
        # over the run: rate * (T - first admission) + burst
        exp = cap * (t_last - t_first) + burst
        assert abs(got[name] - exp) <= 0.05 * exp, (name, got[name], exp)
    # a shed only when both buckets were empty: at every shed, A and B had
    # each admitted (within 5%) all that their buckets could give by then. A
    # bucket starts full and stays full (burst) until its first admission, so
    # B's refill counts from its first use.
    adm = {"A": 0, "B": 0}
    first = {}
    worst = 1e9
    for r in sorted(res, key=lambda r: r.t_send):
        o = outcome(r)
        if o in adm:
            adm[o] += 1
            first.setdefault(o, r.t_send)
        elif o == "shed":
            for name, cap, burst in (("A", CAP_A, BURST_A), ("B", CAP_B, BURST_B)):
                assert name in first, "shed at t=%.3f before %s admitted anything" % (r.t_send, name)
                full = burst + cap * (r.t_send - first[name])
                worst = min(worst, adm[name] / full)
                # send order is not admission order: with 16 connections in
                # flight, up to 16 earlier-sent requests may be admitted later
                assert adm[name] >= 0.95 * full - 16, (
                    "shed at t=%.3f while %s had admitted only %d of %.0f" % (r.t_send, name, adm[name], full))
    print("  at every shed, A and B had admitted >= %.1f%% of rate*t + burst" % (100 * worst))


def test_no_shed_while_the_chain_has_room(meridian, backends):
    """1.5x A's cap with B behind it (A + B = 2x): nothing is shed, A still
    admits its cap per second and B takes exactly the rest."""
    a, b = backends.start("A"), backends.start("B")
    m = meridian.start(config(
        [("A", 48.0, 11.0, a.address, "    capacity_rps: %d\n    capacity_burst: %d\n    fallback: B\n" % (CAP_A, BURST_A)),
         ("B", 40.0, -74.0, b.address, "    capacity_rps: %d\n    capacity_burst: %d\n" % (CAP_B, BURST_B))],
        [("127.0.0.2", 48.1, 11.5, "DE", "EU")], weights={"geography": 1}))
    rate, secs = 300, 3
    res, t0, sent = load(m.port, rate, secs, src="127.0.0.2", conns=8)
    got = collections.Counter(outcome(r) for r in res)
    bins = per_second(res, secs, outcome)
    print("\nno-shed: offered %d/s for %d s: A %s  B %s  shed %s" % (rate, secs, bins["A"], bins["B"], bins["shed"]))
    assert len(res) == sent
    assert got["shed"] == 0 and set(got) <= {"A", "B"}, got
    for s in range(1, secs):
        assert abs(bins["A"][s] - CAP_A) <= 0.05 * CAP_A, bins["A"]
        assert abs(bins["B"][s] - (rate - CAP_A)) <= 0.05 * CAP_A, bins["B"]


def test_shed_only_when_the_whole_chain_is_exhausted(meridian, backends):
    """A -> B -> C: with C uncapped nothing is ever shed; without C, the 503s
    start only after A's and B's bursts are both spent."""
    a, b, c = backends.start("A"), backends.start("B"), backends.start("C")
    caps = "    capacity_rps: 1\n    capacity_burst: 10\n"
    nets = [("127.0.0.2", 48.1, 11.5, "DE", "EU")]
    m = meridian.start(config(
        [("A", 48.0, 11.0, a.address, caps + "    fallback: B\n"),
         ("B", 40.0, -74.0, b.address, caps + "    fallback: C\n"),
         ("C", 35.0, 139.0, c.address, "")], nets, weights={"geography": 1}))
    with m.conn() as cn:
        seq = [outcome_of(cn.request("GET", "/")) for _ in range(60)]
    cnt = collections.Counter(seq)
    print("\nA->B->C(uncapped), 60 requests: %s" % dict(cnt))
    assert "shed" not in cnt, seq
    assert seq[:10] == ["A"] * 10, seq
    assert 10 <= cnt["A"] <= 11 and 10 <= cnt["B"] <= 11 and cnt["C"] >= 38, cnt
    # the chain walks in order: no B before A's burst is gone, no C before B's
    assert seq.index("B") >= 10 and seq.index("C") >= 20, seq

    m2 = meridian.start(config(
        [("A", 48.0, 11.0, a.address, caps + "    fallback: B\n"),
         ("B", 40.0, -74.0, b.address, caps)], nets, weights={"geography": 1}))
    with m2.conn() as cn:
        rs = [cn.request("GET", "/") for _ in range(40)]
    seq = [outcome_of(r) for r in rs]
    print("A->B, 40 requests: %s" % dict(collections.Counter(seq)))
    first_shed = seq.index("shed")
    assert seq[:10] == ["A"] * 10, seq
    assert first_shed >= 20 and seq[:first_shed].count("B") >= 10, seq
    for r in rs:
        if r.status != 200:
            assert r.status == 503, r
            assert r.header("X-Meridian-Shed") == "capacity" and r.header("Retry-After") == "1", r
            assert r.header("X-Meridian-Region") is None, r


def outcome_of(r):
    if r.status == 200:
        assert r.header("X-Backend") == r.header("X-Meridian-Region"), r
        return r.header("X-Meridian-Region")
    if r.status == 503 and r.header("X-Meridian-Shed") == "capacity":
        return "shed"
    return "status %d" % r.status


def test_fallback_outside_residency_is_skipped(meridian, backends):
    """eu-a -> us -> eu-b, residency EU -> [eu-a, eu-b]: an EU client whose
    eu-a bucket is empty skips us (never crosses) and lands on eu-b; with
    eu-b empty too it is shed, although us has room. A US client on the same
    chain may use us."""
    ea, us, eb = backends.start("eu-a"), backends.start("us"), backends.start("eu-b")
    admin = free_port()
    caps = "    capacity_rps: 1\n    capacity_burst: 5\n"
    residency = ("policies:\n  residency:\n"
                 "    - {name: gdpr, match: {continents: [EU]}, regions: [eu-a, eu-b]}\n")
    nets = [("127.0.0.3", 48.86, 2.35, "FR", "EU"), ("127.0.0.2", 40.7, -74.0, "US", "NA")]
    m = meridian.start(config(
        [("eu-a", 53.35, -6.26, ea.address, caps + "    fallback: us\n"),
         ("us", 38.95, -77.45, us.address, "    fallback: eu-b\n"),
         ("eu-b", 60.17, 24.94, eb.address, caps)],
        nets, weights={"geography": 1}, admin=admin, extra=residency))
    with conn_from(m.port, "127.0.0.3") as cn:
        rs = [cn.request("GET", "/") for _ in range(20)]
    seq = [outcome_of(r) for r in rs]
    print("\nEU client on eu-a -> us -> eu-b (residency EU: eu-a, eu-b), 20 requests: %s" % seq)
    assert "us" not in seq and all(r.header("X-Backend") != "us" for r in rs), seq
    assert seq[:5] == ["eu-a"] * 5, seq
    assert "eu-b" in seq and seq.index("eu-b") >= 5, seq
    assert seq[-1] == "shed", seq
    assert 5 <= seq.count("eu-b") <= 6 and seq.count("shed") >= 8, seq
    # the explainer says so too (peeking)
    j = admin_get(admin, "/v1/route?ip=127.0.0.3").json()
    assert j["decision"]["region"] is None and j["decision"]["reason"] == "shed", j
    assert j["decision"]["status"] == 503, j
    us_line = [x for x in j["regions"] if x["name"] == "us"][0]
    assert us_line["eligible"] is False and us_line["why"] == "residency", j
    # a US client is not bound by the rule: it uses us
    with conn_from(m.port, "127.0.0.2") as cn:
        r = cn.request("GET", "/")
    assert r.status == 200 and r.header("X-Backend") == "us", r


# --------------------------------------------------------------------------
# soft steering without swinging
# --------------------------------------------------------------------------

def test_soft_steering_shares_are_steady(meridian, backends):
    """Default weights, two capped regions (300/s each) at similar distance
    from the client, 400 req/s: the nearer one alone would take everything,
    the health factor (1 - rate/cap over a sliding window) spreads the load.
    After a 1 s warm-up, each region's per-second share over 10 s stays within
    10 points of its mean, and nothing is shed."""
    a, b = backends.start("near"), backends.start("far")
    admin = free_port()
    caps = "    capacity_rps: 300\n"
    m = meridian.start(config(
        [("near", 50.0, 3.0, a.address, caps), ("far", 50.0, -4.0, b.address, caps)],
        [("127.0.0.2", 50.0, 0.0, "FR", "EU")], admin=admin))
    j = admin_get(admin, "/v1/route?ip=127.0.0.2").json()
    assert j["decision"]["region"] == "near", j
    rate, warm, secs = 400, 1, 10
    res, t0, sent = load(m.port, rate, warm + secs, src="127.0.0.2", conns=8)
    got = collections.Counter(outcome(r) for r in res)
    bins = per_second(res, warm + secs, outcome)
    assert len(res) == sent
    assert set(got) <= {"near", "far"}, got
    totals = [bins["near"][s] + bins["far"][s] for s in range(warm + secs)]
    shares = {n: [100.0 * bins[n][s] / totals[s] for s in range(warm + secs)] for n in ("near", "far")}
    print("\nsoft steering, %d req/s, caps 300/s each, default weights" % rate)
    print("  per second near: %s" % bins["near"])
    print("  per second far:  %s" % bins["far"])
    for n in ("near", "far"):
        mean = sum(shares[n][warm:]) / secs
        dev = max(abs(x - mean) for x in shares[n][warm:])
        print("  %-4s share %%: %s  mean %.1f  max deviation %.1f points (warm-up second: %.1f)"
              % (n, " ".join("%.1f" % x for x in shares[n][warm:]), mean, dev, shares[n][0]))
        assert dev <= 10.0, (n, shares[n], mean)
        assert 20.0 <= mean <= 80.0, ("load is not spread", n, mean)
    # neither region crossed its cap in any second
    for n in ("near", "far"):
        assert max(bins[n][warm:]) <= 300 * 1.05, bins[n]
