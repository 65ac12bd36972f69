"""Access log (SPEC 2 access_log), X-Request-Id and traceparent."""
import json
import os
import signal

from conftest import SLOW, simple_config, wait_for


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [ln for ln in f.read().splitlines() if ln]


def test_json_access_log_fields_and_request_ids(meridian, backend, tmp_path):
    log = str(tmp_path / "access.log")
    m = meridian.start(simple_config([backend.address], extra="access_log: {path: %s, format: json}\n" % log))
    r = m.request("GET", "/echo?q=1")
    echo = json.loads(r.body)
    sent = {k.lower(): v for k, v in echo["headers"]}
    generated = sent["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    r = m.request("POST", "/echo", headers=[("X-Request-Id", "abc-123"),
                                            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
                  body=b"hello")
    sent = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
    assert sent["x-request-id"] == "abc-123"  # kept, not duplicated
    assert [k for k, _ in json.loads(r.body)["headers"]].count("X-Request-Id") == 1
    assert sent["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert m.request("GET", "/?status=404").status == 404
    assert wait_for(lambda: len(lines(log)) == 3, 3 * SLOW), lines(log)
    a, b, c = (json.loads(ln) for ln in lines(log))
    for e in (a, b, c):
        for k in ("time", "request_id", "client_ip", "country", "region", "upstream", "method", "path", "protocol",
                  "status", "bytes_in", "bytes_out", "duration_ms", "upstream_ms", "reason"):
            assert k in e, (k, e)
        assert e["time"].endswith("Z") and e["client_ip"] == "127.0.0.1" and e["region"] == "r1"
        assert e["upstream"] == backend.address and e["protocol"] == "HTTP/1.1" and e["reason"] == "score"
    assert a["request_id"] == generated and a["method"] == "GET" and a["path"] == "/echo?q=1" and a["status"] == 200
    assert a["bytes_out"] > 0 and a["duration_ms"] >= a["upstream_ms"] > 0
    assert b["request_id"] == "abc-123" and b["method"] == "POST" and b["bytes_in"] == 5
    assert c["status"] == 404


def test_text_format_and_reopen_on_sigusr1(meridian, backend, tmp_path):
    log = str(tmp_path / "access.log")
    m = meridian.start(simple_config([backend.address], extra="access_log: {path: %s, format: text}\n" % log))
    assert m.request("GET", "/one").status == 200
    assert wait_for(lambda: len(lines(log)) == 1, 3 * SLOW)
    assert '"GET /one HTTP/1.1" 200 ' in lines(log)[0] and lines(log)[0].startswith("127.0.0.1 - - [")
    os.rename(log, log + ".1")
    m.signal(signal.SIGUSR1)
    assert wait_for(lambda: os.path.exists(log), 3 * SLOW), "log not reopened"
    assert m.request("GET", "/two").status == 200
    assert wait_for(lambda: len(lines(log)) == 1, 3 * SLOW)
    assert '"GET /two HTTP/1.1" 200 ' in lines(log)[0]
    assert len(lines(log + ".1")) == 1


def test_access_log_off_and_unwritable(meridian, backend, tmp_path):
    m = meridian.start(simple_config([backend.address], extra="access_log: {path: \"off\"}\n"))
    assert m.request("GET", "/").status == 200
    assert not any(p.name.endswith(".log") for p in tmp_path.iterdir())
    # an access log that cannot be opened is a start-up error
    bad = tmp_path / "bad.yaml"
    bad.write_text(m.yaml_text.replace('access_log: {path: "off"}', "access_log: {path: /nonexistent/dir/a.log}")
                   .replace("listeners:", "listeners:", 1))
    import subprocess
    p = subprocess.run([os.environ["MERIDIAN_BIN"], "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert p.returncode != 0 and "access log /nonexistent/dir/a.log" in p.stderr, p.stderr
