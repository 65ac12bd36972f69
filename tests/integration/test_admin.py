"""Admin API (SPEC 4): /healthz, /metrics (Prometheus text) and /v1/status,
the optional bearer token, and errors."""
import json
import re
import signal
import time

from conftest import SLOW, admin_get, free_port, request, simple_config, wait_for

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*)?\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def parse_metrics(text):
    """{(name, frozenset(labels)): value}, checking the exposition format."""
    families, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert name not in families, "family declared twice: " + name
            families[name] = typ
            continue
        m = SAMPLE.match(line)
        assert m, "bad sample line: %r" % line
        name, labels = m.group(1), m.group(3) or ""
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in families or base in families, "sample before its TYPE: " + line
        lab = frozenset(tuple(kv.split("=", 1)) for kv in re.findall(r'[a-zA-Z_]+="[^"]*"', labels))
        samples[(name, lab)] = float(m.group(5))
    return families, samples


def value(samples, name, **labels):
    want = frozenset((k, '"%s"' % v) for k, v in labels.items())
    return samples.get((name, want), 0.0)


def admin_config(backend, admin, extra="", region_extra=""):
    return simple_config([backend.address], extra='admin: {address: "127.0.0.1:%d"}\n' % admin + extra,
                         region_extra=region_extra)


def test_metrics_families_and_counters(meridian, backend):
    admin = free_port()
    m = meridian.start(admin_config(backend, admin, region_extra="    capacity_rps: 1000\n"))
    for _ in range(7):
        assert m.request("GET", "/").status == 200
    for _ in range(3):
        assert m.request("GET", "/?status=404").status == 404
    got = m.raw(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400")
    r = admin_get(admin, "/metrics")
    assert r.status == 200 and r.header("Content-Type").startswith("text/plain"), r
    families, s = parse_metrics(r.body.decode())
    for name, typ in (("meridian_requests_total", "counter"), ("meridian_request_duration_seconds", "histogram"),
                      ("meridian_region_score", "gauge"), ("meridian_region_rate", "gauge"),
                      ("meridian_shed_total", "counter"), ("meridian_upstream_healthy", "gauge"),
                      ("meridian_connections_active", "gauge"), ("meridian_config_reloads_total", "counter")):
        assert families.get(name) == typ, (name, families.get(name))
    assert value(s, "meridian_requests_total", region="r1", code="200") == 7
    assert value(s, "meridian_requests_total", region="r1", code="404") == 3
    assert value(s, "meridian_requests_total", region="", code="400") == 1
    assert value(s, "meridian_request_duration_seconds_count") == 11
    assert value(s, "meridian_request_duration_seconds_bucket", le="+Inf") == 11
    assert value(s, "meridian_upstream_healthy", region="r1", upstream=backend.address) == 1
    assert value(s, "meridian_region_score", region="r1", factor="geography") == 0.5
    assert 0 < value(s, "meridian_region_score", region="r1", factor="score") <= 1
    rate = value(s, "meridian_region_rate", region="r1")
    assert 5 <= rate <= 10.5, rate


def test_metrics_count_sheds_and_reloads(meridian, backend):
    admin = free_port()
    m = meridian.start(admin_config(backend, admin, region_extra="    capacity_rps: 2\n    capacity_burst: 2\n"))
    codes = [m.request("GET", "/").status for _ in range(6)]
    shed = codes.count(503)
    assert shed >= 3, codes
    _, s = parse_metrics(admin_get(admin, "/metrics").body.decode())
    assert value(s, "meridian_shed_total", region="r1", reason="capacity") == shed
    assert value(s, "meridian_requests_total", region="", code="503") == shed
    # a valid reload, then an invalid one
    m.yaml_text = m.yaml_text.replace("capacity_burst: 2", "capacity_burst: 3")
    with open(m.conf, "w") as f:
        f.write(m.yaml_text)
    m.signal(signal.SIGHUP)

    def reloads(result):
        _, smp = parse_metrics(admin_get(admin, "/metrics").body.decode())
        return value(smp, "meridian_config_reloads_total", result=result)
    assert wait_for(lambda: reloads("success") == 1, 3 * SLOW)
    with open(m.conf, "w") as f:
        f.write(m.yaml_text + "nonsense: [\n")
    m.signal(signal.SIGHUP)
    assert wait_for(lambda: reloads("error") == 1, 3 * SLOW)
    assert m.alive()


def test_status_json(meridian, backend):
    admin = free_port()
    m = meridian.start(admin_config(backend, admin, region_extra="    capacity_rps: 50\n"))
    assert m.request("GET", "/").status == 200
    r = admin_get(admin, "/v1/status")
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    j = json.loads(r.body)
    assert j["config"]["generation"] >= 1 and j["config"]["loaded_at"].endswith("Z")
    assert j["uptime_seconds"] >= 0
    (reg,) = j["regions"]
    assert reg["name"] == "r1" and reg["capacity_rps"] == 50 and 0 <= reg["tokens"] <= 5
    assert reg["rate"] > 0 and reg["latency_ewma_ms"] > 0
    assert reg["upstreams"] == [{"address": backend.address, "healthy": True, "active": 0}]


def test_healthz_token_and_errors(meridian, backend):
    admin = free_port()
    m = meridian.start(admin_config(backend, admin).replace(
        'admin: {address: "127.0.0.1:%d"}' % admin, 'admin: {address: "127.0.0.1:%d", token: "s3cret"}' % admin))
    assert admin_get(admin, "/healthz").status == 401
    ok = request(admin, "GET", "/healthz", headers=[("Authorization", "Bearer s3cret")])
    assert ok.status == 200 and ok.body == b"ok\n"
    assert request(admin, "GET", "/metrics", headers=[("Authorization", "Bearer wrong")]).status == 401
    assert request(admin, "GET", "/nope", headers=[("Authorization", "Bearer s3cret")]).status == 404
    assert request(admin, "POST", "/healthz", headers=[("Authorization", "Bearer s3cret")]).status == 405
    assert m.alive()


def test_metrics_pass_promtool(meridian, backend):
    """The exposition passes `promtool check metrics` (Debian's prometheus package)."""
    import subprocess
    admin = free_port()
    m = meridian.start(admin_config(backend, admin, region_extra="    capacity_rps: 3\n    capacity_burst: 1\n"))
    for _ in range(5):
        m.request("GET", "/")
    text = admin_get(admin, "/metrics").body
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), (p.stdout, p.stderr)
