"""Geo database updates without a reload (SPEC 11), country centroids for
clients without coordinates, near-ties, and X-Forwarded-For entries that do
not parse. The databases are small .mmdb files written by mkmmdb.pl."""
import json
import os
import random
import re
import subprocess
import time

import pytest

from conftest import GEO_DB, HttpConn, REPO, SLOW, admin_get, free_port, wait_for

MKMMDB = os.path.join(os.path.dirname(__file__), "mkmmdb.pl")

# name, latitude, longitude, cost
REGIONS = [
    ("us-east-1", 38.95, -77.45, 1.0),
    ("eu-west-1", 53.35, -6.26, 1.0),
    ("ap-northeast-1", 35.68, 139.69, 1.0),
]

CLIENT = "198.51.100.7"           # in both test databases, at different places
DUBLIN = {"country": {"iso_code": "IE"}, "continent": {"code": "EU"},
          "location": {"latitude": 53.34, "longitude": -6.27}}
TOKYO = {"country": {"iso_code": "JP"}, "continent": {"code": "AS"},
         "location": {"latitude": 35.69, "longitude": 139.69}}


def write_mmdb(path, networks, db_type="Meridian-Test"):
    """networks: [(cidr, record)]; written next to path, then renamed over it
    (as geoipupdate does)."""
    tmp = str(path) + ".tmp"
    spec = {"type": db_type, "networks": [{"cidr": c, "data": d} for c, d in networks]}
    subprocess.run(["perl", MKMMDB, tmp], input=json.dumps(spec).encode(), check=True, timeout=60)
    os.rename(tmp, str(path))


def replace_with_bytes(path, data):
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, str(path))


def config(admin, db, upstreams, reload_check="200ms", extra="", region_extra=""):
    y = "workers: 2\n"
    y += 'admin: {address: "127.0.0.1:%d"}\n' % admin
    y += "geo:\n"
    y += '  database: "%s"\n' % db
    if reload_check:
        y += "  reload_check: %s\n" % reload_check
    y += 'client_ip: {trusted_proxies: ["127.0.0.1/32"]}\n'
    y += extra
    y += "regions:\n"
    for name, lat, lon, cost in REGIONS:
        y += "  - name: %s\n" % name
        y += "    location: {latitude: %s, longitude: %s}\n" % (lat, lon)
        y += "    cost: %s\n" % cost
        y += region_extra
        y += '    upstreams:\n      - {address: "%s"}\n' % upstreams[name]
    return y


def route(admin, ip):
    r = admin_get(admin, "/v1/route?ip=" + ip)
    assert r.status == 200, r
    return r.json()


def metric(admin, name):
    r = admin_get(admin, "/metrics")
    assert r.status == 200, r
    m = re.search(r"^%s (\S+)$" % re.escape(name), r.body.decode(), re.M)
    return float(m.group(1)) if m else None


def served_region(port, client):
    """one request on a new connection (so both workers get some), as `client`
    behind the trusted proxy 127.0.0.1"""
    with HttpConn(port) as c:
        r = c.request("GET", "/", [("X-Forwarded-For", client)])
    assert r.status == 200, r
    return r.header("X-Meridian-Region")


@pytest.fixture
def three(backends):
    return {name: backends.start(name).address for name, *_ in REGIONS}


def test_replaced_database_is_used_without_reload(meridian, three, tmp_path):
    db = tmp_path / "geo.mmdb"
    write_mmdb(db, [("198.51.100.0/24", DUBLIN)])
    admin = free_port()
    m = meridian.start(config(admin, db, three))
    j = route(admin, CLIENT)
    assert j["client"]["source"] == "database" and j["client"]["country"] == "IE", j
    assert j["decision"]["region"] == "eu-west-1", j
    for _ in range(6):  # warm the workers' location caches
        assert served_region(m.port, CLIENT) == "eu-west-1"
    status = admin_get(admin, "/v1/status").json()
    gen, epoch = status["config"]["generation"], status["geo_database"]["epoch"]
    assert status["geo_database"]["type"] == "Meridian-Test", status
    assert metric(admin, "meridian_geo_database_build_epoch") == status["geo_database"]["build_epoch"]

    write_mmdb(db, [("198.51.100.0/24", TOKYO)])
    t0 = time.monotonic()
    assert wait_for(lambda: route(admin, CLIENT)["decision"]["region"] == "ap-northeast-1", 3.0 * SLOW), \
        route(admin, CLIENT)
    took = time.monotonic() - t0
    assert took < 1.0 * SLOW, took
    j = route(admin, CLIENT)
    assert j["client"]["country"] == "JP" and j["client"]["latitude"] == 35.69, j
    # the workers see it too: their caches were invalidated by the new epoch
    for _ in range(6):
        assert served_region(m.port, CLIENT) == "ap-northeast-1"
    status = admin_get(admin, "/v1/status").json()
    assert status["config"]["generation"] == gen, "no configuration reload"
    assert status["geo_database"]["epoch"] > epoch, status
    body = admin_get(admin, "/metrics").body.decode()
    assert 'meridian_geo_database_reloads_total{result="success"} 1\n' in body, body
    assert 'meridian_geo_database_reloads_total{result="error"} 0\n' in body, body
    assert 'meridian_config_reloads_total{result="success"} 0\n' in body, body
    assert "geo database" in m.stderr() and "replaced" in m.stderr(), m.stderr()
    print("new database in use after %.3f s" % took)


def test_broken_or_removed_file_keeps_the_last_good_database(meridian, three, tmp_path):
    db = tmp_path / "geo.mmdb"
    write_mmdb(db, [("198.51.100.0/24", DUBLIN)])
    admin = free_port()
    m = meridian.start(config(admin, db, three))
    assert route(admin, CLIENT)["decision"]["region"] == "eu-west-1"

    # garbage renamed over it: logged once, the old answers stay
    replace_with_bytes(db, b"\x00garbage, not a MaxMind DB\n" * 100)
    assert wait_for(lambda: "cannot open geo database" in m.stderr(), 3.0 * SLOW), m.stderr()
    time.sleep(0.6)  # a few more checks: the same bad file is not reported again
    assert m.stderr().count("cannot open geo database") == 1, m.stderr()
    assert route(admin, CLIENT)["decision"]["region"] == "eu-west-1"
    assert served_region(m.port, CLIENT) == "eu-west-1"
    body = admin_get(admin, "/metrics").body.decode()
    assert 'meridian_geo_database_reloads_total{result="error"} 1\n' in body, body

    # removed: answers stay, one warning
    os.unlink(db)
    assert wait_for(lambda: "No such file" in m.stderr(), 3.0 * SLOW), m.stderr()
    time.sleep(0.6)
    assert m.stderr().count("No such file") == 1, m.stderr()
    j = route(admin, CLIENT)
    assert j["decision"]["region"] == "eu-west-1" and j["client"]["source"] == "database", j
    assert served_region(m.port, CLIENT) == "eu-west-1"

    # a good file again: picked up
    write_mmdb(db, [("198.51.100.0/24", TOKYO)])
    assert wait_for(lambda: route(admin, CLIENT)["decision"]["region"] == "ap-northeast-1", 3.0 * SLOW)
    assert served_region(m.port, CLIENT) == "ap-northeast-1"
    body = admin_get(admin, "/metrics").body.decode()
    assert 'meridian_geo_database_reloads_total{result="success"} 1\n' in body, body
    assert 'meridian_geo_database_reloads_total{result="error"} 1\n' in body, body


def test_sighup_reopens_the_database(meridian, three, tmp_path):
    # reload_check long: only the reload can pick the new file up
    db = tmp_path / "geo.mmdb"
    write_mmdb(db, [("198.51.100.0/24", DUBLIN)])
    admin = free_port()
    m = meridian.start(config(admin, db, three, reload_check="1h"))
    assert route(admin, CLIENT)["decision"]["region"] == "eu-west-1"
    write_mmdb(db, [("198.51.100.0/24", TOKYO)])
    time.sleep(0.5)
    assert route(admin, CLIENT)["decision"]["region"] == "eu-west-1"
    m.signal(1)  # SIGHUP
    assert wait_for(lambda: route(admin, CLIENT)["decision"]["region"] == "ap-northeast-1", 3.0 * SLOW)


def test_registered_country_only_gets_the_country_centroid(meridian, three, tmp_path):
    # like 1.1.1.1 in GeoLite2-City: registered_country AU, no country, no location
    db = tmp_path / "geo.mmdb"
    write_mmdb(db, [("203.0.113.0/24", {"registered_country": {"iso_code": "AU"}}),
                    ("192.0.2.0/24", {"country": {"iso_code": "DE"}, "continent": {"code": "EU"}})])
    admin = free_port()
    meridian.start(config(admin, db, three))
    j = route(admin, "203.0.113.9")
    assert j["client"]["source"] == "country", j
    assert j["client"]["country"] == "AU", j
    assert (j["client"]["latitude"], j["client"]["longitude"]) == (-25.27, 133.78), j
    assert j["decision"]["region"] == "ap-northeast-1", j
    assert len({r["geography"] for r in j["regions"]}) == 3, j  # a real geography factor
    j = route(admin, "192.0.2.1")
    assert j["client"]["source"] == "country" and j["client"]["continent"] == "EU", j
    assert j["decision"]["region"] == "eu-west-1", j


LOCATED = {"us-east-1": "10.1.0.1", "eu-west-1": "10.2.0.1", "ap-northeast-1": "10.3.0.1"}


def jitter_and_count(m, backends_by_name, client, n=1000, every=50):
    """n requests as `client`, each followed by one request from a located
    client of every region (so that all three latency EWMAs are fed by real,
    noisy traffic, as in production); every `every` rounds each upstream gets
    a new random delay of 0 or 1 ms (POST /admin/delay). Returns {region:
    count} for `client`'s requests."""
    from conftest import request
    seen = {}
    rnd = random.Random(12)
    conns = {name: HttpConn(m.port) for name in LOCATED}
    try:
        with HttpConn(m.port) as c:
            for i in range(n):
                if i % every == 0:
                    for b in backends_by_name.values():
                        r = request(b.port, "POST", "/admin/delay?ms=%d" % rnd.choice((0, 1)),
                                    host=b.host.strip("[]"))
                        assert r.status == 200, r
                r = c.request("GET", "/", [("X-Forwarded-For", client)])
                assert r.status == 200, r
                reg = r.header("X-Meridian-Region")
                seen[reg] = seen.get(reg, 0) + 1
                for name, ip in LOCATED.items():
                    r = conns[name].request("GET", "/", [("X-Forwarded-For", ip)])
                    assert r.status == 200 and r.header("X-Meridian-Region") == name, r
    finally:
        for cn in conns.values():
            cn.close()
        for b in backends_by_name.values():
            request(b.port, "POST", "/admin/delay?ms=0", host=b.host.strip("[]"))
    return seen


def test_clients_without_a_location_stay_on_one_region(meridian, backends, tmp_path):
    bs = {name: backends.start(name) for name, *_ in REGIONS}
    db = tmp_path / "geo.mmdb"
    write_mmdb(db, [("203.0.113.0/24", {"registered_country": {"iso_code": "AU"}})])
    admin = free_port()
    nets = "".join('    - {cidr: "%s/32", latitude: %s, longitude: %s}\n' % (LOCATED[name], lat, lon)
                   for name, lat, lon, _ in REGIONS)
    # latency_ceiling 5s: the tie tolerance (0.001 of score) is then 25 ms of
    # latency EWMA between regions (0.2 * 25 / 5000). The 0-1 ms delays plus
    # this shared machine's scheduling noise (EWMAs of 3-5 ms that differ by
    # a few ms, and now and then a spike of tens of ms in one sample) stay
    # inside it. At the default 500ms (2.5 ms of EWMA) on a loaded 2-core
    # machine 17% of the requests moved; without the tolerance the unknown
    # client follows whichever EWMA is lowest at the moment.
    y = config(admin, db, {k: b.address for k, b in bs.items()}, extra="scoring: {latency_ceiling: 5s}\n")
    y = y.replace("geo:\n", "geo:\n  networks:\n" + nets, 1)
    m = meridian.start(y)
    # a private address, no default_location: unknown, g = 0.5 everywhere
    j = route(admin, "10.20.30.40")
    assert j["client"]["source"] == "unknown", j
    assert all(r["geography"] == 0.5 for r in j["regions"]), j
    seen = jitter_and_count(m, bs, "10.20.30.40")
    print("unknown client, 1000 requests:", seen)
    j = route(admin, "10.20.30.40")
    assert j["decision"]["tie"] is True, j
    assert len({r["latency"] for r in j["regions"]}) > 1, ("the latencies should differ a little", j)
    assert seen == {"us-east-1": 1000}, seen   # all tied: the first listed
    # only a registered country: its centroid decides, far from any tie
    seen = jitter_and_count(m, bs, "203.0.113.9")
    print("registered_country AU, 1000 requests:", seen)
    assert seen == {"ap-northeast-1": 1000}, seen
    assert route(admin, "203.0.113.9")["decision"]["tie"] is False


def test_unparsable_forwarded_for_is_counted_and_served_as_the_peer(meridian, three, tmp_path):
    admin = free_port()
    # the peer 127.0.0.1 is in Tokyo; a parsable header would say Dublin
    extra = ("error_log: {level: debug}\n")
    y = config(admin, GEO_DB, three, reload_check=None, extra=extra)
    y = y.replace("geo:\n", "geo:\n  networks:\n"
                  '    - {cidr: "127.0.0.1/32", latitude: 35.68, longitude: 139.69}\n'
                  '    - {cidr: "198.51.100.0/24", latitude: 53.35, longitude: -6.26}\n', 1)
    m = meridian.start(y)
    assert served_region(m.port, "198.51.100.7") == "eu-west-1"
    assert metric(admin, "meridian_client_ip_invalid_total") == 0
    for i in range(20):
        assert served_region(m.port, "not-an-ip") == "ap-northeast-1"
    with HttpConn(m.port) as c:
        r = c.request("GET", "/echo", [("X-Forwarded-For", "198.51.100.7, bogus.example")])
        assert r.status == 200 and r.header("X-Meridian-Region") == "ap-northeast-1", r
    assert metric(admin, "meridian_client_ip_invalid_total") == 21
    # logged at debug level, at most once a second
    lines = [l for l in m.stderr().splitlines() if "not an address" in l]
    assert 1 <= len(lines) <= 3, lines
    assert "[debug]" in lines[0] and "not-an-ip" in lines[0] and "127.0.0.1" in lines[0], lines
