"""Command line (SPEC section 1): -V, -h, -t, bad options, start-up errors."""
import socket
import subprocess

from conftest import MERIDIAN_BIN, SLOW, free_port, simple_config


def run(*args, timeout=10):
    return subprocess.run([MERIDIAN_BIN, *args], capture_output=True, timeout=timeout * SLOW)


def write(tmp_path, text, name="m.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


VALID = (
    'listeners: [{address: "127.0.0.1:%d"}]\n'
    + simple_config(["127.0.0.1:9"])
)


def test_version_lists_linked_libraries():
    r = run("-V")
    assert r.returncode == 0, r
    out = (r.stdout + r.stderr).decode().lower()
    assert out.startswith("meridian "), out
    for lib in ("libevent", "openssl", "nghttp2", "libmaxminddb", "libyaml"):
        assert lib in out, "%s missing from -V output:\n%s" % (lib, out)
    # every library line carries a version number
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) >= 6
    for l in lines:
        assert any(ch.isdigit() for ch in l), "no version on line %r" % l


def test_help_prints_usage_and_exits_0():
    r = run("-h")
    assert r.returncode == 0
    out = r.stdout.decode()
    assert out.startswith("usage: meridian"), out
    for opt in ("-c FILE", "-t", "-d", "-p PIDFILE", "-V", "-h"):
        assert opt in out, opt


def test_unknown_option_fails_with_usage():
    r = run("-Z")
    assert r.returncode != 0
    assert b"usage: meridian" in r.stderr
    assert r.stdout == b""


def test_unexpected_argument_fails():
    r = run("-t", "extra-argument")
    assert r.returncode != 0
    assert r.stderr


def test_check_valid_config_exits_0(tmp_path):
    path = write(tmp_path, VALID % free_port())
    r = run("-t", "-c", path)
    assert r.returncode == 0, r.stderr.decode()


def test_check_does_not_bind_or_keep_running(tmp_path):
    port = free_port()
    path = write(tmp_path, VALID % port)
    r = run("-t", "-c", path, timeout=5)
    assert r.returncode == 0
    s = socket.socket()
    try:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "-t left something listening"
    finally:
        s.close()


def test_check_unknown_key_reports_file_line_col(tmp_path):
    text = (
        "workers: 1\n"
        'listeners: [{address: "127.0.0.1:%d"}]\n'
        "bogus_key: 3\n"
        "regions:\n"
        "  - name: r1\n"
        "    location: {latitude: 50, longitude: 8}\n"
        '    upstreams: [{address: "127.0.0.1:9"}]\n'
    ) % free_port()
    path = write(tmp_path, text)
    r = run("-t", "-c", path)
    assert r.returncode == 1
    lines = r.stderr.decode().splitlines()
    assert any(l.startswith("%s:3:1: " % path) and "bogus_key" in l for l in lines), lines


def test_check_nested_unknown_key_and_range_errors_all_reported(tmp_path):
    text = (
        "workers: 1\n"
        'listeners: [{address: "127.0.0.1:%d"}]\n'
        "regions:\n"
        "  - name: r1\n"
        "    location: {latitude: 100, longitude: 8}\n"
        "    colour: blue\n"
        '    upstreams: [{address: "127.0.0.1:9"}]\n'
    ) % free_port()
    path = write(tmp_path, text)
    r = run("-t", "-c", path)
    assert r.returncode == 1
    lines = r.stderr.decode().splitlines()
    # latitude value starts at column 26 on line 5; "colour" at column 5 on line 6
    assert any(l.startswith("%s:5:26: " % path) for l in lines), lines
    assert any(l.startswith("%s:6:5: " % path) and "colour" in l for l in lines), lines
    for l in lines:
        assert l.startswith(path + ":"), "stderr line not in FILE:LINE:COL form: %r" % l


def test_check_missing_required_and_bad_types(tmp_path):
    path = write(tmp_path, "workers: many\nlisteners: []\n")
    r = run("-t", "-c", path)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert err.strip(), "no diagnostics"
    for l in err.splitlines():
        parts = l.split(":")
        assert parts[0] == path and parts[1].isdigit() and parts[2].isdigit() and int(parts[1]) >= 1 \
            and int(parts[2]) >= 1, l


def test_check_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "workers: 1\nlisteners: [{address: \"127.0.0.1:1\"\nregions: {\n")
    r = run("-t", "-c", path)
    assert r.returncode == 1
    first = r.stderr.decode().splitlines()[0]
    parts = first.split(":")
    assert parts[0] == path and parts[1].isdigit() and parts[2].isdigit(), first


def test_check_fallback_cycle_and_duplicate_region(tmp_path):
    text = (
        'listeners: [{address: "127.0.0.1:%d"}]\n'
        "regions:\n"
        "  - name: a\n"
        "    location: {latitude: 1, longitude: 1}\n"
        "    fallback: b\n"
        '    upstreams: [{address: "127.0.0.1:9"}]\n'
        "  - name: b\n"
        "    location: {latitude: 1, longitude: 1}\n"
        "    fallback: a\n"
        '    upstreams: [{address: "127.0.0.1:9"}]\n'
        "  - name: b\n"
        "    location: {latitude: 1, longitude: 1}\n"
        '    upstreams: [{address: "127.0.0.1:9"}]\n'
    ) % free_port()
    path = write(tmp_path, text)
    r = run("-t", "-c", path)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "%s:11:" % path in err, err          # the duplicate name "b"


def test_missing_config_file(tmp_path):
    path = str(tmp_path / "does-not-exist.yaml")
    r = run("-c", path, timeout=5)
    assert r.returncode != 0
    assert path in r.stderr.decode()
    r = run("-t", "-c", path, timeout=5)
    assert r.returncode == 1
    assert path in r.stderr.decode()


def test_bind_conflict_is_an_error(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        path = write(tmp_path, VALID % port)
        r = run("-c", path, timeout=10)
        assert r.returncode != 0
        err = r.stderr.decode()
        assert str(port) in err, err
    finally:
        blocker.close()


def test_user_drops_privileges_after_binding(meridian, backend):
    import os
    import pwd
    import subprocess
    if os.geteuid() != 0:
        import pytest
        pytest.skip("needs root to change user")
    nobody = pwd.getpwnam("nobody")
    m = meridian.start("user: nobody\n" + simple_config([backend.address]))
    # the listening sockets accept (kernel backlog) before the ids change:
    # a served request means the workers run, which is after the switch
    assert m.request("GET", "/").status == 200
    with open("/proc/%d/status" % m.pid) as f:
        uids = [ln.split()[1:] for ln in f if ln.startswith("Uid:")][0]
    assert all(int(u) == nobody.pw_uid for u in uids), uids
    bad = m.yaml_text.replace("user: nobody", "user: no-such-user-zz")
    path = m.conf + ".bad"
    with open(path, "w") as f:
        f.write(bad.replace("127.0.0.1:%d" % m.port, "127.0.0.1:1"))
    p = subprocess.run([os.environ["MERIDIAN_BIN"], "-c", path], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and 'user "no-such-user-zz": no such user' in p.stderr, p.stderr
