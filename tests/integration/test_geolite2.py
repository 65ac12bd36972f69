"""The real GeoLite2-City (`make geoip` fetches it to data/geoip/): twenty
well-known public addresses whose place is stable (root servers, registries,
universities, national networks) land on the nearest of five regions, as
/v1/route explains and as real requests with X-Forwarded-For are routed.
Skipped, saying how to get it, when the database is absent."""
import math
import os
import re

import pytest

from conftest import GEOLITE2_DB, REPO, SLOW, admin_get, free_port, request, wait_for
from geodata import readme_geo_examples

needs_geolite2 = pytest.mark.skipif(not os.path.isfile(GEOLITE2_DB),
                                reason="run `make geoip` to fetch GeoLite2-City (%s is absent)" % GEOLITE2_DB)

# name, latitude, longitude: AWS region sites
REGIONS = [
    ("us-east-1", 38.95, -77.45),       # Ashburn, Virginia
    ("us-west-2", 45.6, -121.2),        # northern Oregon (The Dalles; Boardman is 45.84, -119.70)
    ("eu-west-1", 53.35, -6.26),        # Dublin
    ("ap-northeast-1", 35.68, 139.69),  # Tokyo
    ("ap-southeast-1", 1.29, 103.85),   # Singapore
]

# address, country GeoLite2 gives, nearest region, what it is. Each one's
# nearest region is at least ~700 km nearer than the second nearest.
CASES = [
    ("81.2.69.142", "GB", "eu-west-1", "a UK network (the README's /v1/route example)"),
    ("131.111.150.25", "GB", "eu-west-1", "University of Cambridge"),
    ("134.226.32.57", "IE", "eu-west-1", "Trinity College Dublin"),
    ("193.0.6.139", "NL", "eu-west-1", "RIPE NCC, Amsterdam"),
    ("2001:67c:2e8::1", "NL", "eu-west-1", "RIPE NCC, Amsterdam (IPv6)"),
    ("141.2.22.62", "DE", "eu-west-1", "Goethe University Frankfurt"),
    ("202.12.27.33", "JP", "ap-northeast-1", "M-root, WIDE, Tokyo"),
    ("2001:218::1", "JP", "ap-northeast-1", "NTT, Tokyo (IPv6)"),
    ("133.11.0.1", "JP", "ap-northeast-1", "University of Tokyo"),
    ("147.46.10.1", "KR", "ap-northeast-1", "Seoul National University"),
    ("137.132.21.27", "SG", "ap-southeast-1", "National University of Singapore"),
    ("129.78.5.8", "AU", "ap-southeast-1", "University of Sydney"),
    ("164.100.1.1", "IN", "ap-southeast-1", "National Informatics Centre, New Delhi"),
    ("171.64.64.64", "US", "us-west-2", "Stanford University"),
    ("128.95.112.1", "US", "us-west-2", "University of Washington, Seattle"),
    ("142.103.1.1", "CA", "us-west-2", "University of British Columbia, Vancouver"),
    ("128.101.101.101", "US", "us-east-1", "University of Minnesota"),
    ("132.206.27.1", "CA", "us-east-1", "McGill University, Montreal"),
    ("200.160.0.8", "BR", "us-east-1", "NIC.br, Sao Paulo"),
    ("146.83.1.1", "CL", "us-east-1", "REUNA, Santiago de Chile"),
]


def haversine_km(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def config(admin, upstreams):
    y = "workers: 1\n"
    y += "admin: {address: \"127.0.0.1:%d\"}\n" % admin
    y += "geo:\n  database: \"%s\"\n" % GEOLITE2_DB
    y += "client_ip:\n  trusted_proxies: [\"127.0.0.1/32\"]\n  header: X-Forwarded-For\n"
    # geography alone decides: the nearest region wins whatever was measured
    y += "scoring:\n  weights: {geography: 1}\n"
    y += "regions:\n"
    for name, lat, lon in REGIONS:
        y += "  - name: %s\n    location: {latitude: %s, longitude: %s}\n" % (name, lat, lon)
        y += "    upstreams:\n      - {address: \"%s\"}\n" % upstreams[name]
    return y


def test_cases_are_twenty_and_unambiguous():
    assert len(CASES) == 20 and len({c[0] for c in CASES}) == 20
    assert {c[2] for c in CASES} == {r[0] for r in REGIONS}   # every region is somebody's nearest


@needs_geolite2
def test_well_known_addresses_go_to_the_nearest_region(meridian, backends):
    ups = {name: backends.start(name).address for name, _, _ in REGIONS}
    admin = free_port()
    m = meridian.start(config(admin, ups))
    wrong = []
    for ip, country, region, what in CASES:
        r = admin_get(admin, "/v1/route?ip=" + ip)
        assert r.status == 200, r
        j = r.json()
        c = j["client"]
        assert c["source"] == "database", (ip, what, j)
        assert c["country"] == country, (ip, what, j)
        # independently: the region nearest to where GeoLite2 puts the client
        dist = sorted((haversine_km(c["latitude"], c["longitude"], lat, lon), name) for name, lat, lon in REGIONS)
        print("%-16s %s %9.4f %9.4f  %-14s %6.0f km (next %s %6.0f km)  %s"
              % (ip, c["country"], c["latitude"], c["longitude"], dist[0][1], dist[0][0], dist[1][1], dist[1][0], what))
        assert dist[0][1] == region, (ip, what, dist)
        assert j["decision"]["region"] == region, (ip, what, j)
        # a real request from behind the trusted proxy
        resp = request(m.port, "GET", "/", [("X-Forwarded-For", ip)])
        assert resp.status == 200, (ip, resp)
        if (resp.header("X-Meridian-Region"), resp.header("X-Backend")) != (region, region):
            wrong.append((ip, what, region, resp.header("X-Meridian-Region"), resp.header("X-Backend")))
    assert not wrong, wrong


@needs_geolite2
def test_readme_demo_examples_with_geolite2(meridian, backends):
    """The README's demo curl lines hold with the real database too: the
    demo's configuration (conf/demo.yaml: three regions with costs and health
    checks) on GeoLite2-City, each example to the region the README names."""
    examples = readme_geo_examples(os.path.join(REPO, "README.md"))
    assert len(examples) >= 4, examples
    text = open(os.path.join(REPO, "conf", "demo.yaml")).read()
    admin = free_port()
    text = re.sub(r"(?m)^  database: .*$", '  database: "%s"' % GEOLITE2_DB, text)
    text = text.replace("127.0.0.1:8080", "127.0.0.1:@PORT@").replace("127.0.0.1:9901", "127.0.0.1:%d" % admin)
    for port, name in (("9001", "us-east-1"), ("9002", "eu-west-1"), ("9003", "ap-northeast-1")):
        text = text.replace("127.0.0.1:" + port, backends.start(name).address)
    m = meridian.start(text)
    # as a user of the demo sees it: once the health checks (1 s) have
    # measured every region (until then an unmeasured region has latency
    # factor 0.5 against ~1.0 for a measured one)
    assert wait_for(lambda: all(r["latency_ewma_ms"] is not None
                                for r in admin_get(admin, "/v1/status").json()["regions"]), 5 * SLOW, 0.1)
    for ip, region in examples:
        j = admin_get(admin, "/v1/route?ip=" + ip).json()
        assert j["client"]["source"] == "database", (ip, j)
        assert j["decision"]["region"] == region, (ip, j)
        r = request(m.port, "GET", "/", [("X-Forwarded-For", ip)])
        assert (r.status, r.header("X-Meridian-Region"), r.header("X-Backend")) == (200, region, region), (ip, r)
