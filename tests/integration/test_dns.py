"""Upstream host names (SPEC section 7): `address: name:port` resolved with
evdns on the main thread, from a test hosts file or from a tiny UDP DNS
server written here (hand-made answers with struct) whose records the tests
change: one upstream per address, new addresses join, vanished ones drain,
TTL and dns.refresh drive re-resolution, dns.required decides whether a
name that does not resolve fails `-t` and start, a resolver that stops
answering keeps the last addresses, and /v1/status shows all of it."""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import (MERIDIAN_BIN, MRD_BACKEND, SLOW, _stop_pid, admin_get, free_port, ipv6_available, request,
                      wait_for)


class DnsServer:
    """Answers A and AAAA questions from self.records: name -> {"A": [...],
    "AAAA": [...], "ttl": N}; a name not in it gets NXDOMAIN. Every question
    is logged in self.queries as (monotonic time, name, qtype)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.records = {}
        self.queries = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def set(self, name, a=(), aaaa=(), ttl=1):
        with self.lock:
            self.records[name] = {"A": list(a), "AAAA": list(aaaa), "ttl": ttl}

    def remove(self, name):
        with self.lock:
            self.records.pop(name, None)

    def count(self, name, since=0.0):
        with self.lock:
            return sum(1 for t, n, q in self.queries if n == name and q == 1 and t >= since)

    def _answer(self, data):
        qid, flags, qdcount = struct.unpack(">HHH", data[:6])
        off, labels = 12, []
        while data[off]:
            labels.append(data[off + 1:off + 1 + data[off]].decode("ascii").lower())
            off += 1 + data[off]
        qtype, _qclass = struct.unpack(">HH", data[off + 1:off + 5])
        question = data[12:off + 5]
        name = ".".join(labels)
        with self.lock:
            self.queries.append((time.monotonic(), name, qtype))
            rec = self.records.get(name)
            rec = json.loads(json.dumps(rec)) if rec is not None else None
        answers = []
        if rec is not None:
            if qtype == 1:
                answers = [socket.inet_pton(socket.AF_INET, a) for a in rec["A"]]
            elif qtype == 28:
                answers = [socket.inet_pton(socket.AF_INET6, a) for a in rec["AAAA"]]
        rcode = 3 if rec is None else 0
        out = struct.pack(">HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1, len(answers), 0, 0) + question
        for rdata in answers:
            out += b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, rec["ttl"], len(rdata)) + rdata
        return out

    def _loop(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(data), peer)
            except (IndexError, struct.error, UnicodeDecodeError):
                pass

    def stop(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def dns():
    d = DnsServer()
    yield d
    if d.running:
        d.stop()


class NamedBackends:
    """mrd-backend processes, one per address, all on the same port (a name has one port)."""

    def __init__(self):
        self.port = free_port()
        self.procs = {}

    def start(self, ip, name):
        addr = "[%s]:%d" % (ip, self.port) if ":" in ip else "%s:%d" % (ip, self.port)
        p = subprocess.Popen([MRD_BACKEND, "-l", addr, "-n", name, "-q"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        line = p.stdout.readline().decode()
        assert line.startswith("listening"), line
        self.procs[name] = p

    def stop_all(self):
        for p in self.procs.values():
            _stop_pid(p, 5)
            p.stdout.close()


@pytest.fixture
def named():
    n = NamedBackends()
    yield n
    n.stop_all()


def config(tmp_path, upstreams, admin, dns_block, region_extra="", balance="round_robin"):
    hosts = tmp_path / "hosts"
    if not hosts.exists():
        hosts.write_text("# test hosts file\n")
    ups = "\n".join('      - {address: "%s"}' % u for u in upstreams)
    return ('admin: {address: "127.0.0.1:%d"}\n' % admin
            + "workers: 2\n"
            + "dns:\n" + dns_block + ("  hosts: %s\n" % hosts if "hosts:" not in dns_block else "")
            + "regions:\n  - name: r1\n    location: {latitude: 50.1, longitude: 8.7}\n"
            + "    balance: %s\n" % balance + region_extra
            + "    upstreams:\n" + ups + "\n")


def served_by(m, n=20, path="/"):
    seen = {}
    for _ in range(n):
        r = m.request("GET", path)
        key = r.header("X-Backend") if r.status == 200 else r.status
        seen[key] = seen.get(key, 0) + 1
    return seen


def status_names(admin):
    s = json.loads(admin_get(admin, "/v1/status").body)
    return s["regions"][0]


@pytest.mark.skipif(not ipv6_available(), reason="needs IPv6 on loopback")
def test_localhost_from_the_hosts_file_is_two_upstreams(meridian, named, tmp_path):
    named.start("127.0.0.1", "v4")
    named.start("::1", "v6")
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    admin = free_port()
    # the resolver is a port nobody answers on: the hosts file must be enough
    m = meridian.start(config(tmp_path, ["localhost:%d" % named.port], admin,
                              '  resolvers: ["127.0.0.1:%d"]\n' % free_port()))
    seen = served_by(m, 20)
    assert seen.get("v4", 0) >= 5 and seen.get("v6", 0) >= 5, seen
    r1 = status_names(admin)
    assert sorted(u["address"] for u in r1["upstreams"]) == sorted(
        ["127.0.0.1:%d" % named.port, "[::1]:%d" % named.port]), r1
    assert all(u["host"] == "localhost:%d" % named.port for u in r1["upstreams"]), r1
    res = r1["names"][0]["resolution"]
    assert r1["names"][0]["address"] == "localhost:%d" % named.port
    assert res["addresses"] == ["127.0.0.1", "::1"] and res["last_error"] is None, res
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", res["resolved_at"]), res
    # metric labels stay one per address
    metrics = admin_get(admin, "/metrics").body.decode()
    assert 'meridian_upstream_healthy{region="r1",upstream="[::1]:%d"} 1' % named.port in metrics
    assert 'meridian_upstream_healthy{region="r1",upstream="127.0.0.1:%d"} 1' % named.port in metrics
    assert re.search(r'meridian_dns_resolutions_total\{result="success"\} [1-9]', metrics), metrics


def test_new_address_joins_and_vanished_address_drains(meridian, named, dns, tmp_path):
    named.start("127.0.0.2", "b2")
    named.start("127.0.0.3", "b3")
    dns.set("api.test", a=["127.0.0.2"], ttl=1)
    admin = free_port()
    m = meridian.start(config(tmp_path, ["api.test:%d" % named.port], admin,
                              '  resolvers: ["%s"]\n  refresh: 30s\n' % dns.address))
    assert served_by(m, 10) == {"b2": 10}
    # a second address appears: it joins (healthy) and gets traffic within the TTL
    dns.set("api.test", a=["127.0.0.2", "127.0.0.3"], ttl=1)
    assert wait_for(lambda: "b3" in served_by(m, 4), 5 * SLOW)
    seen = served_by(m, 20)
    assert seen.get("b2", 0) >= 5 and seen.get("b3", 0) >= 5, seen
    # back to b2 only, then a slow request on b2 while b2 vanishes
    dns.set("api.test", a=["127.0.0.2"], ttl=1)
    assert wait_for(lambda: served_by(m, 6) == {"b2": 6}, 5 * SLOW)
    result = {}

    def slow():
        result["r"] = m.request("GET", "/slow?delay=2500")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    dns.set("api.test", a=["127.0.0.3"], ttl=1)
    assert wait_for(lambda: served_by(m, 6) == {"b3": 6}, 5 * SLOW)
    t.join(10)
    # the in-flight request finished on the vanished address (drain)
    assert result["r"].status == 200 and result["r"].header("X-Backend") == "b2", result
    assert served_by(m, 10) == {"b3": 10}
    r1 = status_names(admin)
    assert [u["address"] for u in r1["upstreams"]] == ["127.0.0.3:%d" % named.port], r1
    assert "dns: api.test: 127.0.0.3 (1 joined, 1 left)" in m.stderr()
    # and no keep-alive connection to the vanished address stays open (the one
    # /stats itself uses is the only connection b2 still has)

    def b2_connections():
        return request(named.port, "GET", "/stats", host="127.0.0.2").json()["active"]

    assert wait_for(lambda: b2_connections() == 1, 3 * SLOW), b2_connections()


def test_ttl_and_refresh_drive_re_resolution(meridian, named, dns, tmp_path):
    named.start("127.0.0.2", "b2")
    dns.set("short.test", a=["127.0.0.2"], ttl=1)    # TTL below refresh: every ~1s
    dns.set("long.test", a=["127.0.0.2"], ttl=3600)  # refresh caps a long TTL: every 2s
    admin = free_port()
    m = meridian.start(config(tmp_path, ["short.test:%d" % named.port, "long.test:%d" % (named.port)], admin,
                              '  resolvers: ["%s"]\n  refresh: 2s\n' % dns.address))
    t0 = time.monotonic()
    time.sleep(4.6)
    short, long_ = dns.count("short.test", t0), dns.count("long.test", t0)
    # short: at 1, 2, 3, 4s (+ scheduling slack); long: at 2 and 4s
    assert 3 <= short <= 6, (short, dns.queries)
    assert 1 <= long_ <= 3, (long_, dns.queries)
    assert short > long_
    # the same addresses again and again: no new generation
    gen = json.loads(admin_get(admin, "/v1/status").body)["config"]["generation"]
    time.sleep(1.5)
    assert json.loads(admin_get(admin, "/v1/status").body)["config"]["generation"] == gen
    assert m.request().status == 200


def write_conf(tmp_path, text, name="t.yaml"):
    p = tmp_path / name
    p.write_text('listeners: [{address: "127.0.0.1:%d"}]\n' % free_port() + text)
    return str(p)


def test_nxdomain_with_required_fails_t_and_start(dns, tmp_path):
    dns.set("other.test", a=["127.0.0.2"])
    conf = write_conf(tmp_path, config(tmp_path, ["10.0.0.1:80", "missing.test:8080"], free_port(),
                                       '  resolvers: ["%s"]\n  required: true\n' % dns.address))
    lines = open(conf).read().split("\n")
    line = next(i for i, l in enumerate(lines, 1) if "missing.test" in l)
    col = lines[line - 1].index('"missing.test') + 1
    p = subprocess.run([MERIDIAN_BIN, "-t", "-c", conf], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, p
    assert p.stderr.strip() == '%s:%d:%d: cannot resolve "missing.test": name does not exist (NXDOMAIN)' % (
        conf, line, col), p.stderr
    p = subprocess.run([MERIDIAN_BIN, "-c", conf], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "cannot resolve \"missing.test\"" in p.stderr, p
    # the same file with a name that resolves passes
    dns.set("missing.test", a=["127.0.0.2"])
    p = subprocess.run([MERIDIAN_BIN, "-t", "-c", conf], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "configuration is valid" in p.stdout, p


def test_unresolvable_name_without_required(dns, tmp_path):
    # -t does not resolve without dns.required, a bad name is still a syntax error
    conf = write_conf(tmp_path, config(tmp_path, ["missing.test:8080"], free_port(),
                                       '  resolvers: ["%s"]\n' % dns.address))
    p = subprocess.run([MERIDIAN_BIN, "-t", "-c", conf], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p
    assert dns.queries == []
    bad = write_conf(tmp_path, config(tmp_path, ["bad_name.test:8080"], free_port(), "  refresh: 1s\n"), "bad.yaml")
    p = subprocess.run([MERIDIAN_BIN, "-t", "-c", bad], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert re.match(r".*bad\.yaml:\d+:\d+: regions\[0\]\.upstreams\[0\]\.address: invalid address "
                    r"\"bad_name\.test:8080\": invalid character in host name", p.stderr), p.stderr


def test_name_that_resolves_later_becomes_served(meridian, named, dns, tmp_path):
    named.start("127.0.0.2", "b2")
    admin = free_port()
    m = meridian.start(config(tmp_path, ["late.test:%d" % named.port], admin,
                              '  resolvers: ["%s"]\n  refresh: 1s\n' % dns.address))
    assert m.request().status == 503
    res = status_names(admin)["names"][0]["resolution"]
    assert res["addresses"] == [] and res["resolved_at"] is None, res
    assert res["last_error"] == "name does not exist (NXDOMAIN)", res
    assert "dns: cannot resolve late.test: name does not exist (NXDOMAIN) (its upstreams have no address yet" \
        in m.stderr()
    dns.set("late.test", a=["127.0.0.2"], ttl=60)
    assert wait_for(lambda: m.request().status == 200, 5 * SLOW)
    res = status_names(admin)["names"][0]["resolution"]
    assert res["addresses"] == ["127.0.0.2"] and res["last_error"] is None, res
    metrics = admin_get(admin, "/metrics").body.decode()
    assert re.search(r'meridian_dns_resolutions_total\{result="error"\} [1-9]', metrics), metrics


def test_resolver_down_keeps_the_last_addresses(meridian, named, dns, tmp_path):
    named.start("127.0.0.2", "b2")
    dns.set("api.test", a=["127.0.0.2"], ttl=1)
    admin = free_port()
    m = meridian.start(config(tmp_path, ["api.test:%d" % named.port], admin,
                              '  resolvers: ["%s"]\n  refresh: 1s\n' % dns.address))
    assert m.request().status == 200
    dns.stop()

    def failed():
        return status_names(admin)["names"][0]["resolution"]["last_error"] is not None

    assert wait_for(failed, 15 * SLOW)
    res = status_names(admin)["names"][0]["resolution"]
    assert res["addresses"] == ["127.0.0.2"] and "timeout" in res["last_error"], res
    assert served_by(m, 5) == {"b2": 5}
    assert "dns: cannot resolve api.test: no answer from the resolvers (timeout) (its last addresses stay in use)" \
        in m.stderr()


def test_health_checks_cover_resolved_upstreams(meridian, named, dns, tmp_path):
    named.start("127.0.0.2", "b2")
    named.start("127.0.0.3", "b3")
    named.start("127.0.0.4", "b4")
    dns.set("api.test", a=["127.0.0.2", "127.0.0.3"], ttl=1)
    admin = free_port()
    m = meridian.start(config(tmp_path, ["api.test:%d" % named.port], admin,
                              '  resolvers: ["%s"]\n' % dns.address,
                              region_extra="    health_check: {interval: 200ms, timeout: 1s, rise: 1, fall: 1}\n"))
    seen = served_by(m, 10)
    assert seen.get("b2") and seen.get("b3"), seen
    r = request(named.port, "POST", "/admin/health?state=down", host="127.0.0.3")
    assert r.status == 200
    assert wait_for(lambda: served_by(m, 6) == {"b2": 6}, 5 * SLOW)
    ups = {u["address"]: u["healthy"] for u in status_names(admin)["upstreams"]}
    assert ups == {"127.0.0.2:%d" % named.port: True, "127.0.0.3:%d" % named.port: False}, ups
    # a third address joins: the new generation keeps b3's state (still down), b4 starts healthy
    dns.set("api.test", a=["127.0.0.2", "127.0.0.3", "127.0.0.4"], ttl=1)
    assert wait_for(lambda: "b4" in served_by(m, 4), 5 * SLOW)
    seen = served_by(m, 12)
    assert set(seen) == {"b2", "b4"}, seen
    ups = {u["address"]: u["healthy"] for u in status_names(admin)["upstreams"]}
    assert ups["127.0.0.3:%d" % named.port] is False and ups["127.0.0.4:%d" % named.port] is True, ups


def test_reload_adds_a_name_and_keeps_the_cache(meridian, named, dns, tmp_path):
    named.start("127.0.0.2", "b2")
    named.start("127.0.0.3", "b3")
    dns.set("one.test", a=["127.0.0.2"], ttl=60)
    dns.set("two.test", a=["127.0.0.3"], ttl=60)
    admin = free_port()
    block = '  resolvers: ["%s"]\n' % dns.address
    m = meridian.start(config(tmp_path, ["one.test:%d" % named.port], admin, block))
    assert served_by(m, 4) == {"b2": 4}
    before = dns.count("one.test")
    text = open(m.conf).read().replace('      - {address: "one.test:%d"}' % named.port,
                                       '      - {address: "one.test:%d"}\n      - {address: "two.test:%d"}'
                                       % (named.port, named.port))
    open(m.conf, "w").write(text)
    m.signal(signal.SIGHUP)
    assert wait_for(lambda: "b3" in served_by(m, 4), 5 * SLOW)
    seen = served_by(m, 10)
    assert seen.get("b2") and seen.get("b3"), seen
    # one.test came from the cache: not asked again (TTL 60s)
    assert dns.count("one.test") == before


@pytest.mark.skipif(not ipv6_available(), reason="needs IPv6 on loopback")
def test_a_and_aaaa_answers_are_one_set(meridian, named, dns, tmp_path):
    named.start("127.0.0.2", "v4")
    named.start("::1", "v6")
    dns.set("dual.test", a=["127.0.0.2"], aaaa=["::1"], ttl=60)
    admin = free_port()
    m = meridian.start(config(tmp_path, ["dual.test:%d" % named.port], admin, '  resolvers: ["%s"]\n' % dns.address))
    seen = served_by(m, 20)   # round robin per worker (2): not an exact split
    assert set(seen) == {"v4", "v6"} and min(seen.values()) >= 5, seen
    res = status_names(admin)["names"][0]["resolution"]
    assert res["addresses"] == ["127.0.0.2", "::1"], res
    assert 25 <= res["next_refresh_s"] <= 30, res   # TTL 60, capped by the default refresh of 30s


def test_reload_drops_a_name_and_switches_resolvers(meridian, named, dns, tmp_path):
    named.start("127.0.0.2", "b2")
    named.start("127.0.0.3", "b3")
    other = DnsServer()
    try:
        dns.set("one.test", a=["127.0.0.2"], ttl=1)
        dns.set("two.test", a=["127.0.0.3"], ttl=1)
        other.set("one.test", a=["127.0.0.3"], ttl=1)
        admin = free_port()
        m = meridian.start(config(tmp_path, ["one.test:%d" % named.port, "two.test:%d" % named.port], admin,
                                  '  resolvers: ["%s"]\n' % dns.address))
        seen = served_by(m, 10)
        assert seen.get("b2") and seen.get("b3"), seen
        # two.test leaves the file and the resolver changes: one.test now answers 127.0.0.3
        text = open(m.conf).read().replace('      - {address: "two.test:%d"}\n' % named.port, "")
        text = text.replace(dns.address, other.address)
        open(m.conf, "w").write(text)
        m.signal(signal.SIGHUP)
        assert wait_for(lambda: served_by(m, 6) == {"b3": 6}, 6 * SLOW)
        r1 = status_names(admin)
        assert [n["address"] for n in r1["names"]] == ["one.test:%d" % named.port], r1
        assert r1["names"][0]["resolution"]["addresses"] == ["127.0.0.3"], r1
        t0 = time.monotonic()
        time.sleep(2.5)
        assert dns.count("two.test", t0) == 0 and dns.count("one.test", t0) == 0, dns.queries[-4:]
        assert other.count("one.test", t0) >= 1
    finally:
        other.stop()


def test_required_name_with_a_silent_resolver_times_out(tmp_path):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        conf = write_conf(tmp_path, config(tmp_path, ["api.test:8080"], free_port(),
                                           '  resolvers: ["127.0.0.1:%d"]\n  required: true\n'
                                           % silent.getsockname()[1]))
        t0 = time.monotonic()
        p = subprocess.run([MERIDIAN_BIN, "-t", "-c", conf], capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
        assert p.returncode == 1, p
        assert re.match(r'.*t\.yaml:\d+:\d+: cannot resolve "api\.test": no answer from the resolvers \(timeout\)$',
                        p.stderr.strip()), p.stderr
        assert took < 10 * SLOW, took   # bounded wait
    finally:
        silent.close()
