"""Geo routing (SPEC 3.1-3.3, 4): nearest region by source address and by
X-Forwarded-For from trusted proxies, the /v1/route explanation checked
against the SPEC formula computed independently here, ties, sources, and
bad input on the admin API."""
import http.client
import json
import math
import os
import socket
import time

import pytest

from conftest import GEO_DB, HttpConn, REPO, Reader, SLOW, admin_get, free_port, request
from geodata import located, place

EARTH_R = 6371.0088
HALF_CIRC = 20015.1

# name, latitude, longitude, cost
REGIONS3 = [
    ("us-east-1", 38.95, -77.45, 1.0),
    ("eu-west-1", 53.35, -6.26, 1.2),
    ("ap-northeast-1", 35.68, 139.69, 1.4),
]

# source address -> (place, country, continent, latitude, longitude)
NETWORKS = {
    "127.0.0.2": ("New York", "US", "NA", 40.7128, -74.006),
    "127.0.0.3": ("Paris", "FR", "EU", 48.8566, 2.3522),
    "127.0.0.4": ("Tokyo", "JP", "AS", 35.6895, 139.6917),
}

# addresses in the bundled test database: ip -> (country, continent, lat, lon),
# the values read from its table (tests/geo/places.tsv, see geodata.py)
DB = {ip: located(ip) for ip in (
    "81.2.69.142", "89.160.20.128", "216.160.83.58", "214.78.120.1", "175.16.199.5",
    "202.196.224.1", "2001:218::1", "2001:2e0::1", "2a02:cf40::1")}

DEFAULT_LOC = (38.9, -77.0)


# --------------------------------------------------------------------------
# helpers (kept here: conftest has no geo/admin helpers)
# --------------------------------------------------------------------------



def haversine_km(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_R * math.asin(min(1.0, math.sqrt(a)))


def expected_factors(client, regions, weights=None, health=None, latency=None):
    """SPEC 3.3 computed from scratch. client: (lat, lon) or None (unknown).
    regions: [(name, lat, lon, cost)]. weights: dict of given weights (omitted
    ones are 0) or None for the default. Returns {name: (g, h, l, c, score)}."""
    if weights is None:
        weights = {"geography": 0.4, "health": 0.3, "latency": 0.2, "cost": 0.1}
    total = sum(weights.values())
    w = {k: weights.get(k, 0.0) / total for k in ("geography", "health", "latency", "cost")}
    min_cost = min(r[3] for r in regions)
    out = {}
    for name, lat, lon, cost in regions:
        g = 0.5 if client is None else 1 - haversine_km(client[0], client[1], lat, lon) / HALF_CIRC
        h = 1.0 if health is None else health[name]
        lf = 0.5 if latency is None else latency[name]
        c = min_cost / cost
        out[name] = (g, h, lf, c, w["geography"] * g + w["health"] * h + w["latency"] * lf + w["cost"] * c)
    return out


def expected_winner(exp, regions):
    """highest score, ties to the first listed"""
    best = None
    for name, *_ in regions:
        if best is None or exp[name][4] > exp[best][4] + 1e-12:
            best = name
    return best


def regions_yaml(regions, upstreams, extra=None):
    """regions: [(name, lat, lon, cost)]; upstreams: {name: "host:port"};
    extra: {name: "    key: value\\n..."}"""
    out = "regions:\n"
    for name, lat, lon, cost in regions:
        out += "  - name: %s\n" % name
        out += "    location: {latitude: %s, longitude: %s}\n" % (lat, lon)
        out += "    cost: %s\n" % cost
        if extra and name in extra:
            out += extra[name]
        out += "    upstreams:\n      - {address: \"%s\"}\n" % upstreams[name]
    return out


def networks_yaml(nets=NETWORKS):
    out = "  networks:\n"
    for ip, (_place, cc, cont, lat, lon) in nets.items():
        out += ("    - {cidr: \"%s/32\", country: %s, continent: %s, latitude: %s, longitude: %s}\n"
                % (ip, cc, cont, lat, lon))
    return out


def geo_config(admin_port, regions, upstreams, database=True, default=False, weights=None,
               trusted=None, header=None, extra_top="", region_extra=None, nets=NETWORKS):
    y = "workers: 2\n"
    y += "admin: {address: \"127.0.0.1:%d\"}\n" % admin_port
    y += "geo:\n"
    if database:
        y += "  database: \"%s\"\n" % GEO_DB
    if nets:
        y += networks_yaml(nets)
    if default:
        y += "  default_location: {latitude: %s, longitude: %s}\n" % DEFAULT_LOC
    if trusted is not None or header is not None:
        y += "client_ip:\n"
        if trusted is not None:
            y += "  trusted_proxies: [%s]\n" % ", ".join('"%s"' % t for t in trusted)
        if header is not None:
            y += "  header: %s\n" % header
    if weights is not None:
        y += "scoring:\n  weights: {%s}\n" % ", ".join("%s: %s" % kv for kv in weights.items())
    y += extra_top
    y += regions_yaml(regions, upstreams, region_extra)
    return y


def route_info(admin_port, ip):
    r = admin_get(admin_port, "/v1/route?ip=" + ip)
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").startswith("application/json"), r
    return r.json()


def conn_from(port, src, timeout=10.0):
    """A keep-alive HttpConn whose source address is `src` (a loopback address)."""
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("::1" if fam == socket.AF_INET6 else "127.0.0.1", port))
    c = HttpConn.__new__(HttpConn)
    c.sock = s
    c.reader = Reader(s)
    return c


def get_from(port, src, headers=None, path="/"):
    with conn_from(port, src) as c:
        return c.request("GET", path, headers)


@pytest.fixture
def three(backends):
    """one mrd-backend per region, named like the region"""
    return {name: backends.start(name).address for name, *_ in REGIONS3}


# --------------------------------------------------------------------------
# nearest region by source address (geo.networks)
# --------------------------------------------------------------------------

def warm_up(m, admin):
    """Gives every region a TTFB sample. Without health checks nothing seeds
    the latency EWMA, and an unsampled region scores l = 0.5 against ~1.0 for a
    sampled loopback region (0.1 of score at default weights). Order matters
    (see test_cold_region_is_not_starved_by_latency_prior): Paris first, while
    all are cold; then Tokyo and New York, whose nearest region still wins
    against the sampled eu-west-1."""
    for src in ("127.0.0.3", "127.0.0.4", "127.0.0.2"):
        r = get_from(m.port, src)
        assert r.status == 200, r
    j = route_info(admin, "127.0.0.2")
    lat = {r["name"]: r["latency"] for r in j["regions"]}
    assert all(v > 0.9 for v in lat.values()), ("warm-up left a region without a TTFB sample", j)


def test_clients_land_on_nearest_region_by_source_address(meridian, three):
    admin = free_port()
    m = meridian.start(geo_config(admin, REGIONS3, three, database=False))
    warm_up(m, admin)
    want = {"127.0.0.2": "us-east-1", "127.0.0.3": "eu-west-1", "127.0.0.4": "ap-northeast-1"}
    for _round in range(3):
        for src, region in want.items():
            seen = set()
            for _ in range(3):
                hc = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10, source_address=(src, 0))
                try:
                    hc.request("GET", "/")
                    resp = hc.getresponse()
                    resp.read()
                    seen.add((resp.status, resp.getheader("X-Meridian-Region"), resp.getheader("X-Backend")))
                finally:
                    hc.close()
            if _round == 0:
                print("%s (%s) -> %s" % (src, NETWORKS[src][0], seen))
            assert seen == {(200, region, region)}, (src, seen)
    # the explainer agrees and names the source
    for src, region in want.items():
        j = route_info(admin, src)
        assert j["client"]["source"] == "network", j
        assert j["client"]["country"] == NETWORKS[src][1], j
        assert j["client"]["continent"] == NETWORKS[src][2], j
        assert j["decision"]["region"] == region and j["decision"]["reason"] == "score", j


def test_cold_region_latency_is_0_5_until_measured(meridian, three):
    """SPEC 3.3: a region without a TTFB sample has l = 0.5. Without health
    checks only traffic measures a region, so right after a New York request
    us-east-1 has l ~ 1.0 while the untouched regions still show 0.5."""
    admin = free_port()
    m = meridian.start(geo_config(admin, REGIONS3, three, database=False))
    j = route_info(admin, "127.0.0.3")
    assert [x["latency"] for x in j["regions"]] == [0.5, 0.5, 0.5], j
    r = get_from(m.port, "127.0.0.2")
    assert r.header("X-Meridian-Region") == "us-east-1", r
    lat = {x["name"]: x["latency"] for x in route_info(admin, "127.0.0.3")["regions"]}
    # measured: near 1 (a loopback first byte takes a few ms, ~7 under ASan)
    assert lat["us-east-1"] > 0.95 and lat["eu-west-1"] == 0.5 and lat["ap-northeast-1"] == 0.5, lat


def test_health_checks_seed_latency_so_no_region_is_starved(meridian, three):
    """With health checks, their round trips seed every region's latency EWMA
    (SPEC 3.3), so one New York request does not make us-east-1 look faster
    than the nearer eu-west-1 to a Paris client: Paris stays on eu-west-1."""
    admin = free_port()
    hc = "    health_check: {path: /healthz, interval: 100ms, timeout: 500ms, rise: 1, fall: 1}\n"
    extra = {name: hc for name, _lat, _lon, _cost in REGIONS3}
    m = meridian.start(geo_config(admin, REGIONS3, three, database=False, region_extra=extra))
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline:
        if all(x["latency"] != 0.5 for x in route_info(admin, "127.0.0.3")["regions"]):
            break
        time.sleep(0.05)
    j = route_info(admin, "127.0.0.3")
    assert all(x["latency"] > 0.9 for x in j["regions"]), j
    assert get_from(m.port, "127.0.0.2").header("X-Meridian-Region") == "us-east-1"
    got = [get_from(m.port, "127.0.0.3").header("X-Meridian-Region") for _ in range(20)]
    assert got == ["eu-west-1"] * 20, got


def test_keepalive_connection_keeps_routing_by_its_source(meridian, three):
    admin = free_port()
    m = meridian.start(geo_config(admin, REGIONS3, three, database=False))
    for src, region in (("127.0.0.4", "ap-northeast-1"), ("127.0.0.3", "eu-west-1")):
        with conn_from(m.port, src) as c:
            for _ in range(20):
                r = c.request("GET", "/")
                assert r.status == 200, r
                assert r.header("X-Meridian-Region") == region, r
                assert r.header("X-Backend") == region, r


# --------------------------------------------------------------------------
# X-Forwarded-For from trusted proxies, the bundled test database
# --------------------------------------------------------------------------

XFF_CASES = [
    ("81.2.69.142", "eu-west-1"),        # GB London
    ("89.160.20.128", "eu-west-1"),      # SE Linkoping
    ("216.160.83.58", "us-east-1"),      # US Milton WA
    ("214.78.120.1", "us-east-1"),       # US San Diego
    ("2001:218::1", "ap-northeast-1"),   # JP Tokyo
    ("175.16.199.5", "ap-northeast-1"),  # CN Changchun
    ("202.196.224.1", "ap-northeast-1"), # PH Manila
]


def test_xff_from_trusted_proxy_uses_database(meridian, three):
    admin = free_port()
    m = meridian.start(geo_config(admin, REGIONS3, three, trusted=["127.0.0.1/32", "10.0.0.0/8"]))
    warm_up(m, admin)
    with conn_from(m.port, "127.0.0.1") as c:
        for ip, region in XFF_CASES:
            r = c.request("GET", "/", [("X-Forwarded-For", ip)])
            print("XFF %s (%s) -> %s / %s" % (ip, DB[ip][0], r.header("X-Meridian-Region"), r.header("X-Backend")))
            assert r.status == 200, r
            assert r.header("X-Meridian-Region") == region, (ip, r)
            assert r.header("X-Backend") == region, (ip, r)
            j = route_info(admin, ip)
            assert j["client"]["source"] == "database", j
            assert j["client"]["country"] == DB[ip][0] and j["client"]["continent"] == DB[ip][1], j
            assert abs(j["client"]["latitude"] - DB[ip][2]) < 1e-4, j
            assert abs(j["client"]["longitude"] - DB[ip][3]) < 1e-4, j
            assert j["decision"]["region"] == region, j


def test_xff_from_untrusted_peer_is_ignored(meridian, three):
    admin = free_port()
    m = meridian.start(geo_config(admin, REGIONS3, three, trusted=["127.0.0.1/32"]))
    warm_up(m, admin)
    # 127.0.0.2 is New York (geo.networks) and is not a trusted proxy
    for xff in ("2001:218::1", "81.2.69.142", "175.16.199.5, 2001:218::1"):
        r = get_from(m.port, "127.0.0.2", [("X-Forwarded-For", xff)])
        assert r.status == 200, r
        assert r.header("X-Meridian-Region") == "us-east-1", (xff, r)
        assert r.header("X-Backend") == "us-east-1", (xff, r)
    # the same header from the trusted peer does count
    r = get_from(m.port, "127.0.0.1", [("X-Forwarded-For", "2001:218::1")])
    assert r.header("X-Meridian-Region") == "ap-northeast-1", r


def test_xff_rightmost_untrusted_address_wins(meridian, three):
    admin = free_port()
    m = meridian.start(geo_config(admin, REGIONS3, three, trusted=["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]))
    warm_up(m, admin)
    cases = [
        # the client wrote the leftmost entries itself: only the rightmost
        # untrusted one is believed
        ("2001:218::1, 81.2.69.142", "eu-west-1"),
        ("81.2.69.142, 2001:218::1", "ap-northeast-1"),
        ("2001:218::1, 81.2.69.142, 10.1.2.3", "eu-west-1"),
        ("81.2.69.142, 216.160.83.58, 10.1.2.3, 10.9.9.9", "us-east-1"),
        ("216.160.83.58,2001:218::1,10.0.0.7", "ap-northeast-1"),
        ("81.2.69.142, 2001:218::1, fd00::1", "ap-northeast-1"),
        ("2001:218::1, 81.2.69.142:4711", "eu-west-1"),
        ("81.2.69.142, [2001:218::1]:443", "ap-northeast-1"),
    ]
    for xff, region in cases:
        r = get_from(m.port, "127.0.0.1", [("X-Forwarded-For", xff)])
        assert r.status == 200, r
        assert r.header("X-Meridian-Region") == region, (xff, r)
    # two header lines form one list, in order
    r = get_from(m.port, "127.0.0.1", [("X-Forwarded-For", "216.160.83.58"),
                                       ("X-Forwarded-For", "2001:218::1, 10.0.0.1")])
    assert r.header("X-Meridian-Region") == "ap-northeast-1", r
    r = get_from(m.port, "127.0.0.1", [("X-Forwarded-For", "2001:218::1"),
                                       ("X-Forwarded-For", "81.2.69.142, 10.0.0.1")])
    assert r.header("X-Meridian-Region") == "eu-west-1", r


def test_custom_client_ip_header(meridian, three):
    admin = free_port()
    m = meridian.start(geo_config(admin, REGIONS3, three, trusted=["127.0.0.1/32"], header="CF-Connecting-IP"))
    warm_up(m, admin)
    r = get_from(m.port, "127.0.0.1", [("CF-Connecting-IP", "2001:218::1")])
    assert r.header("X-Meridian-Region") == "ap-northeast-1", r
    # X-Forwarded-For is now just a header: the peer (127.0.0.1, no location,
    # g = 0.5 everywhere, all regions sampled -> the cheapest, us-east-1) decides
    assert route_info(admin, "127.0.0.1")["decision"]["region"] == "us-east-1"
    r = get_from(m.port, "127.0.0.1", [("X-Forwarded-For", "2001:218::1")])
    assert r.header("X-Meridian-Region") == "us-east-1", r


# --------------------------------------------------------------------------
# /v1/route factors against the SPEC formula
# --------------------------------------------------------------------------

def check_factors(j, client_loc, regions, weights=None, tol=1e-4):
    exp = expected_factors(client_loc, regions, weights)
    names = [r["name"] for r in j["regions"]]
    assert names == [r[0] for r in regions], j
    for r in j["regions"]:
        g, h, lf, c, s = exp[r["name"]]
        got = (r["geography"], r["health"], r["latency"], r["cost"], r["score"])
        for what, a, b in zip(("geography", "health", "latency", "cost", "score"), got, (g, h, lf, c, s)):
            assert abs(a - b) <= tol, "%s %s: meridian %.6f, formula %.6f\n%s" % (r["name"], what, a, b, j)
        assert r["eligible"] is True, j
        assert "why" not in r, j
    win = expected_winner(exp, regions)
    assert j["decision"]["region"] == win, (j, exp)
    assert j["decision"]["reason"] == "score", j
    return exp


def test_route_factors_match_spec_formula(meridian, three):
    admin = free_port()
    meridian.start(geo_config(admin, REGIONS3, three, default=True))
    cases = [(ip, NETWORKS[ip][3:5], "network") for ip in NETWORKS]
    cases += [(ip, DB[ip][2:4], "database") for ip in DB]
    cases += [("1.1.1.1", DEFAULT_LOC, "default"), ("127.0.0.1", DEFAULT_LOC, "default")]
    for ip, loc, source in cases:
        j = route_info(admin, ip)
        assert j["client"]["source"] == source, j
        assert abs(j["client"]["latitude"] - loc[0]) < 1e-4 and abs(j["client"]["longitude"] - loc[1]) < 1e-4, j
        exp = check_factors(j, loc, REGIONS3)
        print("%-15s %-8s -> %-14s %s" % (ip, source, j["decision"]["region"],
                                          " ".join("%s=%.4f" % (n, v[4]) for n, v in exp.items())))
    # spot check against the example numbers worked out by hand:
    # London -> Dublin 463.9 km: g = 0.976823
    j = route_info(admin, "81.2.69.142")
    eu = [r for r in j["regions"] if r["name"] == "eu-west-1"][0]
    assert abs(eu["geography"] - (1 - 463.9 / 20015.1)) < 2e-4, eu
    assert abs(eu["cost"] - 1.0 / 1.2) < 1e-6, eu


@pytest.mark.parametrize("weights", [
    {"geography": 1},
    {"geography": 1, "cost": 3},
    {"geography": 2, "health": 2, "latency": 1, "cost": 5},
    {"cost": 1},
])
def test_route_factors_custom_weights(meridian, three, weights):
    admin = free_port()
    meridian.start(geo_config(admin, REGIONS3, three, weights=weights))
    for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "81.2.69.142", "2001:218::1", "216.160.83.58"):
        loc = NETWORKS[ip][3:5] if ip in NETWORKS else DB[ip][2:4]
        j = route_info(admin, ip)
        check_factors(j, loc, REGIONS3, weights)
    # cost dominates: a Paris client is sent to the cheap us-east-1
    if weights == {"geography": 1, "cost": 3}:
        assert route_info(admin, "127.0.0.3")["decision"]["region"] == "us-east-1"


def test_custom_weights_steer_real_requests(meridian, three):
    admin = free_port()
    m = meridian.start(geo_config(admin, REGIONS3, three, database=False, weights={"geography": 1, "cost": 3}))
    r = get_from(m.port, "127.0.0.3")     # Paris, but us-east-1 is cheapest
    assert r.header("X-Meridian-Region") == "us-east-1" and r.header("X-Backend") == "us-east-1", r
    r = get_from(m.port, "127.0.0.4")     # Tokyo: whatever the formula says (us-east-1: 0.864 vs 0.786)
    exp = expected_factors(NETWORKS["127.0.0.4"][3:5], REGIONS3, {"geography": 1, "cost": 3})
    assert r.header("X-Meridian-Region") == expected_winner(exp, REGIONS3), (r, exp)


def test_ties_go_to_first_listed(meridian, backends):
    # two regions at the same place with the same cost: every factor ties
    a, b, c = backends.start("first"), backends.start("second"), backends.start("far")
    for order in (("first", "second"), ("second", "first")):
        regions = [(order[0], 48.0, 11.0, 1.0), (order[1], 48.0, 11.0, 1.0), ("far", -33.9, 151.2, 1.0)]
        ups = {"first": a.address, "second": b.address, "far": c.address}
        admin = free_port()
        m = meridian.start(geo_config(admin, regions, ups))
        for ip in ("81.2.69.142", "216.160.83.58", "1.1.1.1"):
            j = route_info(admin, ip)
            s = [r["score"] for r in j["regions"]]
            assert s[0] == s[1], j
            assert j["decision"]["region"] == order[0], j
        r = get_from(m.port, "127.0.0.3")
        assert r.header("X-Meridian-Region") == order[0] and r.header("X-Backend") == order[0], r
    # weights {latency: 1}: without samples every region has l = 0.5, so the
    # first listed wins even for a client next to the last one
    admin = free_port()
    regions = [("a-far", -33.9, 151.2, 1.0), ("b-near", 48.0, 11.0, 1.0)]
    meridian.start(geo_config(admin, regions, {"a-far": a.address, "b-near": b.address}, weights={"latency": 1}))
    j = route_info(admin, "89.160.20.128")
    assert [r["latency"] for r in j["regions"]] == [0.5, 0.5], j
    assert j["decision"]["region"] == "a-far", j


def test_route_sources_network_database_default_unknown(meridian, three):
    admin_d, admin_u = free_port(), free_port()
    meridian.start(geo_config(admin_d, REGIONS3, three, default=True))
    meridian.start(geo_config(admin_u, REGIONS3, three, default=False))
    # network beats database: 127.0.0.3 is Paris by geo.networks
    assert route_info(admin_d, "127.0.0.3")["client"]["source"] == "network"
    # not in geo.networks: the database
    j = route_info(admin_d, "81.2.69.142")
    assert j["client"]["source"] == "database" and j["client"]["country"] == "GB", j
    # miss everywhere: default_location, no identity
    assert place("1.1.1.1") is None and place("2.3.3.1").latitude is None
    j = route_info(admin_d, "1.1.1.1")
    assert j["client"]["source"] == "default", j
    assert j["client"]["country"] is None and j["client"]["continent"] is None, j
    assert (j["client"]["latitude"], j["client"]["longitude"]) == DEFAULT_LOC, j
    check_factors(j, DEFAULT_LOC, REGIONS3)
    # database record with a continent but no coordinates: identity from the
    # database, coordinates from the default
    j = route_info(admin_d, "2.3.3.1")
    assert (j["client"]["continent"], j["client"]["country"]) == (place("2.3.3.1").continent, None), j
    assert j["client"]["source"] == "default", j
    # no default: unknown, g = 0.5 for every region
    for ip in ("1.1.1.1", "2.3.3.1", "::1", "127.0.0.1"):
        j = route_info(admin_u, ip)
        assert j["client"]["source"] == "unknown", j
        assert j["client"]["latitude"] is None and j["client"]["longitude"] is None, j
        assert all(r["geography"] == 0.5 for r in j["regions"]), j
        check_factors(j, None, REGIONS3)
    # IPv4-mapped IPv6 is the IPv4 record
    j = route_info(admin_u, "::ffff:81.2.69.142")
    assert j["client"]["source"] == "database" and j["client"]["country"] == "GB", j
    assert j["decision"]["region"] == "eu-west-1", j


def test_route_decision_json_shape(meridian, three):
    admin = free_port()
    meridian.start(geo_config(admin, REGIONS3, three))
    r = admin_get(admin, "/v1/route?ip=81.2.69.142")
    assert r.status == 200, r
    j = json.loads(r.body)
    assert set(j) == {"client", "decision", "regions"}, j
    assert set(j["client"]) == {"ip", "country", "continent", "latitude", "longitude", "source"}, j
    assert j["client"]["ip"] == "81.2.69.142", j
    assert {"region", "reason"} <= set(j["decision"]), j
    for reg in j["regions"]:
        assert {"name", "eligible", "geography", "health", "latency", "cost", "score"} <= set(reg), reg
    # factors printed with at least 4 (here 6) decimals
    text = r.body.decode()
    assert '"geography": 0.' in text, text
    for reg in j["regions"]:
        for k in ("geography", "health", "latency", "cost", "score"):
            assert isinstance(reg[k], float), (k, reg)


@pytest.mark.parametrize("query", [
    "/v1/route", "/v1/route?", "/v1/route?ip=", "/v1/route?ip=notanip", "/v1/route?ip=999.1.1.1",
    "/v1/route?ip=1.2.3", "/v1/route?ip=1.2.3.4.5", "/v1/route?ip=::g", "/v1/route?addr=1.2.3.4",
    "/v1/route?ip=1.2.3.4%20", "/v1/route?ip=10.0.0.0/8",
])
def test_route_bad_ip_is_400_json(meridian, three, query):
    admin = free_port()
    meridian.start(geo_config(admin, REGIONS3, three))
    r = admin_get(admin, query)
    assert r.status == 400, (query, r)
    j = json.loads(r.body)
    assert isinstance(j.get("error"), str) and j["error"], (query, j)


def test_route_explain_does_not_take_tokens(meridian, backends):
    """the explainer peeks: 50 /v1/route calls leave a 5-token bucket full"""
    b = backends.start("solo")
    admin = free_port()
    regions = [("solo", 50.0, 8.0, 1.0)]
    m = meridian.start(geo_config(admin, regions, {"solo": b.address}, database=False,
                                  region_extra={"solo": "    capacity_rps: 1\n    capacity_burst: 5\n"}))
    for _ in range(50):
        j = route_info(admin, "127.0.0.3")
        assert j["decision"]["region"] == "solo", j
    with conn_from(m.port, "127.0.0.3") as c:
        st = [c.request("GET", "/").status for _ in range(5)]
    assert st == [200] * 5, st


def test_route_health_and_latency_factors_follow_traffic(meridian, backends):
    """h = healthy/total * (1 - rate/capacity_rps) with the admitted rate over
    a sliding second; l = 1 - EWMA(TTFB)/latency_ceiling; score = the
    weighted sum of the factors shown."""
    b = backends.start("solo")
    other = backends.start("other")
    admin = free_port()
    regions = [("solo", 50.0, 8.0, 1.0), ("other", -33.9, 151.2, 2.0)]
    weights = {"geography": 0.4, "health": 0.3, "latency": 0.2, "cost": 0.1}
    m = meridian.start(geo_config(admin, regions, {"solo": b.address, "other": other.address}, database=False,
                                  extra_top="scoring:\n  latency_ceiling: 250ms\n",
                                  region_extra={"solo": "    capacity_rps: 100\n    capacity_burst: 100\n"}))

    def line(j, name):
        return [x for x in j["regions"] if x["name"] == name][0]

    def check_score(j):
        for x in j["regions"]:
            s = sum(weights[k] * x[k] for k in weights)
            assert abs(x["score"] - s) < 1e-5, x

    # 40 admissions within a few ms: rate ~40/s of 100 -> h ~0.6
    with conn_from(m.port, "127.0.0.3") as c:
        for _ in range(40):
            r = c.request("GET", "/")
            assert r.status == 200 and r.header("X-Backend") == "solo", r
    j = route_info(admin, "127.0.0.3")
    h = line(j, "solo")["health"]
    print("\nafter 40 requests: solo health %.4f (expected 1 - 40/100 = 0.6)" % h)
    assert 0.595 <= h <= 0.63, j
    assert line(j, "other")["health"] == 1.0, j     # uncapped: headroom 1
    check_score(j)
    # loopback TTFB is well under 1 ms: l ~1; a region never used has no
    # sample: 0.5
    assert line(j, "other")["latency"] == 0.5, j
    assert line(j, "solo")["latency"] > 0.99, j
    # after the window slides past the burst, headroom is back to 1
    time.sleep(2.1)
    j = route_info(admin, "127.0.0.3")
    assert line(j, "solo")["health"] == 1.0, j
    check_score(j)


def test_route_latency_factor_from_ttfb(meridian, backends):
    b = backends.start("slow")
    admin = free_port()
    m = meridian.start(geo_config(admin, [("slow", 50.0, 8.0, 1.0)], {"slow": b.address}, database=False,
                                  extra_top="scoring:\n  latency_ceiling: 250ms\n"))
    assert route_info(admin, "127.0.0.3")["regions"][0]["latency"] == 0.5
    with conn_from(m.port, "127.0.0.3") as c:
        for _ in range(4):
            r = c.request("GET", "/?delay=100")
            assert r.status == 200, r
    j = route_info(admin, "127.0.0.3")
    lf = j["regions"][0]["latency"]
    print("\nTTFB 100 ms, ceiling 250 ms: latency factor %.4f (expected ~0.6)" % lf)
    assert 0.55 <= lf <= 0.605, j
