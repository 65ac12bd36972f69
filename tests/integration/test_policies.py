"""Policies (SPEC 2 `policies`, 3.2, 3.4, 3.5, 5): data residency under upstream
failure, geo_block (default and configured status) and the per-client rate
limit."""
import collections
import os
import socket
import time

from conftest import GEO_DB, HttpConn, REPO, Reader, admin_get, free_port, request
from geodata import place

# source address -> (country, continent, lat, lon)
NETS = {
    "127.0.0.2": ("US", "NA", 40.7128, -74.006),     # New York
    "127.0.0.3": ("GB", "EU", 51.5074, -0.1278),     # London: Dublin 464 km, Frankfurt 640 km
    "127.0.0.5": ("KP", "AS", 39.0392, 125.7625),    # Pyongyang
    "127.0.0.6": ("IS", "EU", 64.1466, -21.9426),    # Reykjavik
}




def conn_from(port, src, timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    c = HttpConn.__new__(HttpConn)
    c.sock = s
    c.reader = Reader(s)
    return c


def get_from(port, src, headers=None):
    with conn_from(port, src) as c:
        return c.request("GET", "/", headers)


def route_info(admin, ip):
    r = admin_get(admin, "/v1/route?ip=" + ip)
    assert r.status == 200, r
    return r.json()


def config(admin, regions, policies="", database=False, trusted=None, workers=2, nets=NETS):
    """regions: [(name, lat, lon, upstream, extra_yaml)]"""
    y = "workers: %d\n" % workers
    y += "admin: {address: \"127.0.0.1:%d\"}\n" % admin
    y += "timeouts: {connect: 1s, shutdown: 5s}\n"
    y += "geo:\n"
    if database:
        y += "  database: \"%s\"\n" % GEO_DB
    y += "  networks:\n"
    for ip, (cc, cont, lat, lon) in nets.items():
        y += ("    - {cidr: \"%s/32\", country: %s, continent: %s, latitude: %s, longitude: %s}\n"
              % (ip, cc, cont, lat, lon))
    if trusted:
        y += "client_ip:\n  trusted_proxies: [%s]\n" % ", ".join('"%s"' % t for t in trusted)
    y += policies
    y += "regions:\n"
    for name, lat, lon, up, rx in regions:
        y += "  - name: %s\n    location: {latitude: %s, longitude: %s}\n" % (name, lat, lon)
        y += rx
        y += "    upstreams:\n      - {address: \"%s\"}\n" % up
    return y


def closed_port():
    """a loopback port nobody listens on: connecting is refused"""
    return "127.0.0.1:%d" % free_port()


# --------------------------------------------------------------------------
# residency
# --------------------------------------------------------------------------

GDPR = ("policies:\n  residency:\n"
        "    - {name: gdpr, match: {countries: [GB, FR, DE]}, regions: [%s]}\n")


def test_residency_failover_stays_in_allowed_regions(meridian, backends):
    """eu-west-1 (nearest to London) refuses connections; its chain is
    eu-west-1 -> us-east-1 -> eu-central-1 and the rule allows only the two EU
    regions. The London client is retried on eu-central-1, skipping the
    healthy, uncapped us-east-1; never the US backend."""
    us, euc = backends.start("us-east-1"), backends.start("eu-central-1")
    admin = free_port()
    m = meridian.start(config(admin, [
        ("eu-west-1", 53.35, -6.26, closed_port(), "    fallback: us-east-1\n"),
        ("us-east-1", 38.95, -77.45, us.address, "    fallback: eu-central-1\n"),
        ("eu-central-1", 50.11, 8.68, euc.address, ""),
    ], policies=GDPR % "eu-west-1, eu-central-1"))
    j = route_info(admin, "127.0.0.3")
    assert j["decision"]["region"] == "eu-west-1", j       # before the failure
    seen = collections.Counter()
    for i in range(20):
        r = get_from(m.port, "127.0.0.3")
        seen[(r.status, r.header("X-Meridian-Region"), r.header("X-Backend"))] += 1
        assert r.header("X-Backend") != "us-east-1", (i, r)
        assert r.status == 200 and r.header("X-Backend") == "eu-central-1", (i, r)
        assert r.header("X-Meridian-Region") == "eu-central-1", (i, r)
    print("\nLondon client, eu-west-1 down: %s" % dict(seen))
    assert us.stats()["requests"] == 1          # the /stats request itself
    # the US region is out by residency; eu-west-1 may or may not be marked
    # down (passive marks only apply to health-checked upstreams)
    j = route_info(admin, "127.0.0.3")
    why = {x["name"]: (x["eligible"], x.get("why")) for x in j["regions"]}
    assert why["us-east-1"] == (False, "residency"), j
    assert why["eu-central-1"] == (True, None), j
    assert why["eu-west-1"] in ((True, None), (False, "unhealthy")), j
    assert j["decision"]["region"] in ("eu-west-1", "eu-central-1"), j
    # a US client is not bound by the rule and uses us-east-1
    r = get_from(m.port, "127.0.0.2")
    assert r.status == 200 and r.header("X-Backend") == "us-east-1", r


def test_residency_no_allowed_region_left_is_an_error_never_the_us(meridian, backends):
    """The rule allows only eu-west-1, whose upstream refuses connections; its
    fallback is us-east-1 (healthy). A London client gets 502 (the attempt
    failed) or, once eu-west-1 is marked down, 503 + Retry-After (no eligible
    region); never us-east-1."""
    us = backends.start("us-east-1")
    admin = free_port()
    m = meridian.start(config(admin, [
        ("eu-west-1", 53.35, -6.26, closed_port(), "    fallback: us-east-1\n"),
        ("us-east-1", 38.95, -77.45, us.address, ""),
    ], policies=GDPR % "eu-west-1"))
    statuses = []
    for i in range(10):
        r = get_from(m.port, "127.0.0.3")
        statuses.append(r.status)
        assert r.header("X-Backend") is None, (i, r)
        assert r.header("X-Meridian-Region") != "us-east-1", (i, r)
        assert r.status in (502, 503), (i, r)
        if r.status == 503:
            ra = r.header("Retry-After")
            assert ra is not None and ra.isdigit() and int(ra) >= 1, r
            assert r.header("X-Meridian-Shed") is None, r     # not a capacity shed
    print("\nLondon client, only allowed region down: %s" % statuses)
    assert statuses[0] == 502, statuses
    assert us.stats()["requests"] == 1          # the /stats request itself
    j = route_info(admin, "127.0.0.3")
    if 503 in statuses:      # eu-west-1 marked down: no eligible region
        assert {k: j["decision"].get(k) for k in ("region", "reason", "status")} == \
            {"region": None, "reason": "none", "status": 503}, j
    else:
        assert j["decision"]["region"] == "eu-west-1", j
    assert [x.get("why") for x in j["regions"] if x["name"] == "us-east-1"] == ["residency"], j
    # the rest of the world still gets us-east-1
    r = get_from(m.port, "127.0.0.2")
    assert r.status == 200 and r.header("X-Backend") == "us-east-1", r


def test_without_residency_a_failed_region_falls_back_across(meridian, backends):
    """Contrast: Reykjavik (IS) is not matched by the rule (countries GB, FR,
    DE), so when its nearest region eu-west-1 fails it is retried on the
    fallback us-east-1."""
    us = backends.start("us-east-1")
    admin = free_port()
    m = meridian.start(config(admin, [
        ("eu-west-1", 53.35, -6.26, closed_port(), "    fallback: us-east-1\n"),
        ("us-east-1", 38.95, -77.45, us.address, ""),
    ], policies=GDPR % "eu-west-1"))
    assert route_info(admin, "127.0.0.6")["decision"]["region"] == "eu-west-1"
    r = get_from(m.port, "127.0.0.6")
    assert r.status == 200 and r.header("X-Backend") == "us-east-1", r
    assert r.header("X-Meridian-Region") == "us-east-1", r


def test_residency_by_continent_with_database_addresses(meridian, backends):
    """match {continents: [EU]}: database clients from GB and SE never reach
    us-east-1 even when the EU region's only upstream is down."""
    eu_ips = ("81.2.69.142", "89.160.20.128", "2a02:cf40::1", "2.3.3.1")
    assert all(place(ip).continent == "EU" for ip in eu_ips)   # what the bundled database says
    assert place("216.160.83.58").continent == "NA"
    us = backends.start("us-east-1")
    admin = free_port()
    m = meridian.start(config(admin, [
        ("eu-west-1", 53.35, -6.26, closed_port(), "    fallback: us-east-1\n"),
        ("us-east-1", 38.95, -77.45, us.address, ""),
    ], policies=("policies:\n  residency:\n"
                 "    - {name: eu, match: {continents: [EU]}, regions: [eu-west-1]}\n"),
        database=True, trusted=["127.0.0.1/32"]))
    for ip in eu_ips:
        for _ in range(3):
            r = get_from(m.port, "127.0.0.1", [("X-Forwarded-For", ip)])
            assert r.status in (502, 503) and r.header("X-Backend") is None, (ip, r)
        j = route_info(admin, ip)
        assert j["decision"]["region"] in (None, "eu-west-1"), j
        assert [x.get("why") for x in j["regions"] if x["name"] == "us-east-1"] == ["residency"], j
    # a US database client is served
    r = get_from(m.port, "127.0.0.1", [("X-Forwarded-For", "216.160.83.58")])
    assert r.status == 200 and r.header("X-Backend") == "us-east-1", r
    assert us.stats()["requests"] == 1 + 1


# --------------------------------------------------------------------------
# geo_block
# --------------------------------------------------------------------------

def _block_setup(meridian, backends, status_yaml):
    b = backends.start("eu-west-1")
    admin = free_port()
    m = meridian.start(config(admin, [("eu-west-1", 53.35, -6.26, b.address, "")],
                              policies="policies:\n  geo_block: {countries: [KP, GB]%s}\n" % status_yaml,
                              database=True, trusted=["127.0.0.1/32"]))
    return m, admin, b


def _check_block(m, admin, b, status):
    # what the bundled database says about the addresses used here
    assert place("81.2.69.142").country == place("2.125.160.216").country == "GB"
    assert [getattr(place(ip), "country", None) for ip in ("89.160.20.128", "216.160.83.58", "1.1.1.1", "2.3.3.1")] \
        == ["SE", "US", None, None]
    # /v1/route
    for ip in ("127.0.0.5", "81.2.69.142", "2.125.160.216", "::ffff:81.2.69.142"):
        j = route_info(admin, ip)
        d = {k: j["decision"].get(k) for k in ("region", "reason", "status")}
        assert d == {"region": None, "reason": "blocked", "status": status}, (ip, j)
    for ip in ("89.160.20.128", "216.160.83.58", "127.0.0.2", "1.1.1.1", "2.3.3.1"):
        j = route_info(admin, ip)
        assert j["decision"]["region"] == "eu-west-1", (ip, j)
    # real requests: by source address and by X-Forwarded-For
    r = get_from(m.port, "127.0.0.5")
    assert r.status == status and r.header("X-Backend") is None, r
    assert 0 < len(r.body) < 200, r
    for ip in ("81.2.69.142", "2.125.160.216"):
        r = get_from(m.port, "127.0.0.1", [("X-Forwarded-For", ip)])
        assert r.status == status and r.header("X-Backend") is None, (ip, r)
    for ip in ("89.160.20.128", "2.3.3.1"):
        r = get_from(m.port, "127.0.0.1", [("X-Forwarded-For", ip)])
        assert r.status == 200 and r.header("X-Backend") == "eu-west-1", (ip, r)
    # an untrusted peer's header is ignored both ways
    r = get_from(m.port, "127.0.0.2", [("X-Forwarded-For", "81.2.69.142")])
    assert r.status == 200, r
    assert b.stats()["requests"] == 2 + 1 + 1   # the two allowed + the untrusted + /stats itself


def test_geo_block_default_status_403(meridian, backends):
    m, admin, b = _block_setup(meridian, backends, "")
    _check_block(m, admin, b, 403)


def test_geo_block_configured_status_451(meridian, backends):
    m, admin, b = _block_setup(meridian, backends, ", status: 451")
    _check_block(m, admin, b, 451)


def test_geo_block_keeps_the_connection_usable(meridian, backends):
    m, admin, b = _block_setup(meridian, backends, "")
    with conn_from(m.port, "127.0.0.1") as c:
        r1 = c.request("GET", "/", [("X-Forwarded-For", "81.2.69.142")])
        r2 = c.request("GET", "/", [("X-Forwarded-For", "89.160.20.128")])
    assert r1.status == 403 and r2.status == 200, (r1, r2)


# --------------------------------------------------------------------------
# client_rate_limit
# --------------------------------------------------------------------------

def _rl_setup(meridian, backends, rl):
    b = backends.start("eu-west-1")
    admin = free_port()
    return meridian.start(config(admin, [("eu-west-1", 53.35, -6.26, b.address, "")],
                                 policies="policies:\n  client_rate_limit: {%s}\n" % rl,
                                 trusted=["127.0.0.1/32"])), b


def _burst(m, src, n, headers=None):
    with conn_from(m.port, src) as c:
        return [c.request("GET", "/", headers) for _ in range(n)]


def _retry_after(r):
    ra = r.header("Retry-After")
    assert ra is not None and ra.isdigit(), r
    return int(ra)


def test_client_rate_limit_429_after_burst_and_per_client(meridian, backends):
    m, b = _rl_setup(meridian, backends, "rate: 2/s, burst: 5")
    rs = _burst(m, "127.0.0.2", 8)
    st = [r.status for r in rs]
    print("\nrate 2/s burst 5, 8 requests at once from 127.0.0.2: %s, Retry-After %s"
          % (st, [r.header("Retry-After") for r in rs if r.status == 429]))
    assert st[:5] == [200] * 5, st
    assert st[5:] == [429] * 3, st
    for r in rs[5:]:
        assert 1 <= _retry_after(r) <= 1, r     # next token in <= 500 ms: rounded up to 1
        assert r.header("X-Backend") is None, r
    # another client is independent
    st2 = [r.status for r in _burst(m, "127.0.0.3", 5)]
    assert st2 == [200] * 5, st2
    # and the first one is still limited, then recovers after Retry-After
    r = _burst(m, "127.0.0.2", 1)[0]
    assert r.status == 429, r
    time.sleep(_retry_after(r) + 0.05)
    r = _burst(m, "127.0.0.2", 1)[0]
    assert r.status == 200, r


def test_client_rate_limit_per_minute_retry_after(meridian, backends):
    m, b = _rl_setup(meridian, backends, "rate: 1/min, burst: 2")
    rs = _burst(m, "127.0.0.2", 4)
    assert [r.status for r in rs] == [200, 200, 429, 429], rs
    ra = [_retry_after(r) for r in rs[2:]]
    print("\nrate 1/min burst 2: Retry-After %s" % ra)
    for v in ra:
        assert 55 <= v <= 60, ra


def test_client_rate_limit_default_burst_is_one_second(meridian, backends):
    m, b = _rl_setup(meridian, backends, "rate: 3/s")
    st = [r.status for r in _burst(m, "127.0.0.2", 5)]
    assert st == [200, 200, 200, 429, 429], st


def test_client_rate_limit_keys_on_forwarded_client(meridian, backends):
    """behind a trusted proxy every client has its own bucket, not the proxy's"""
    m, b = _rl_setup(meridian, backends, "rate: 1/min, burst: 3")
    a = [r.status for r in _burst(m, "127.0.0.1", 4, [("X-Forwarded-For", "81.2.69.142")])]
    c = [r.status for r in _burst(m, "127.0.0.1", 3, [("X-Forwarded-For", "216.160.83.58")])]
    v6 = [r.status for r in _burst(m, "127.0.0.1", 3, [("X-Forwarded-For", "2001:218::1")])]
    assert a == [200, 200, 200, 429], a
    assert c == [200, 200, 200], c
    assert v6 == [200, 200, 200], v6
    # IPv4-mapped spelling of the same client shares its bucket
    r = _burst(m, "127.0.0.1", 1, [("X-Forwarded-For", "::ffff:81.2.69.142")])[0]
    assert r.status == 429, r
    assert b.stats()["requests"] == 3 + 3 + 3 + 1
