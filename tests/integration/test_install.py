"""make install / make uninstall (Makefile) into a DESTDIR: the files and their
modes, the systemd unit's paths, the man page, the shipped production config
(conf/meridian.yaml) still valid, an operator's config never overwritten, and
uninstall removing everything but the config."""
import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import GEO_DB, MERIDIAN_BIN, SLOW

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PREFIX = "/usr"
SHIPPED_DB = "/usr/share/GeoIP/GeoLite2-City.mmdb"


def _make_env():
    # a make started by `make integration` exports MAKEFLAGS (variable
    # overrides such as BUILD=build-asan, jobserver descriptors): start clean
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR", "PREFIX"):
        env.pop(k, None)
    return env


def _bin_args():
    """Install the binary under test without rebuilding it: BUILD names its
    directory (./meridian is BUILD=build, build-asan/meridian BUILD=build-asan)
    and -o tells make to take it as it is."""
    rel = os.path.relpath(os.path.abspath(MERIDIAN_BIN), REPO)
    if not os.path.exists(MERIDIAN_BIN):
        return []
    if rel == "meridian":
        return ["BUILD=build", "-o", rel]
    d, name = os.path.split(rel)
    if name == "meridian" and d and "/" not in d and not d.startswith(".."):
        return ["BUILD=" + d, "-o", rel]
    return []  # a binary from elsewhere: let make build its own


def make(target, destdir):
    r = subprocess.run(["make", "--no-print-directory", *_bin_args(), target,
                        "DESTDIR=" + str(destdir), "PREFIX=" + PREFIX],
                       cwd=REPO, env=_make_env(), capture_output=True, timeout=300)
    assert r.returncode == 0, "make %s failed:\n%s%s" % (target, r.stdout.decode(), r.stderr.decode())
    return r.stdout.decode() + r.stderr.decode()


def paths(dest):
    return {
        "bin": os.path.join(dest, "usr/sbin/meridian"),
        "man": os.path.join(dest, "usr/share/man/man8/meridian.8"),
        "unit": os.path.join(dest, "usr/lib/systemd/system/meridian.service"),
        "conf": os.path.join(dest, "etc/meridian/meridian.yaml"),
    }


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("destdir"))
    make("install", d)
    return d


def test_install_places_files_with_modes(dest):
    p = paths(dest)
    assert mode(p["bin"]) == 0o755
    assert mode(p["man"]) == 0o644
    assert mode(p["unit"]) == 0o644
    # the config holds the admin token: not world-readable
    assert mode(p["conf"]) == 0o640
    for f in p.values():
        assert stat.S_ISREG(os.stat(f).st_mode), f
    with open(p["conf"], "rb") as a, open(os.path.join(REPO, "conf", "meridian.yaml"), "rb") as b:
        assert a.read() == b.read()
    with open(p["man"], "rb") as a, open(os.path.join(REPO, "doc", "meridian.8"), "rb") as b:
        assert a.read() == b.read()


def test_installed_binary_is_the_built_one_and_runs(dest):
    b = paths(dest)["bin"]
    if _bin_args():
        with open(b, "rb") as x, open(MERIDIAN_BIN, "rb") as y:
            assert x.read() == y.read()
    r = subprocess.run([b, "-V"], capture_output=True, timeout=10 * SLOW)
    assert r.returncode == 0, r
    assert r.stdout.decode().startswith("meridian "), r.stdout


def test_unit_points_at_the_prefix(dest):
    text = open(paths(dest)["unit"]).read()
    assert "@SBINDIR@" not in text
    keys = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            keys.setdefault(m.group(1), []).append(m.group(2))
    assert keys["ExecStart"] == ["/usr/sbin/meridian -c /etc/meridian/meridian.yaml"]
    assert keys["ExecStartPre"] == ["/usr/sbin/meridian -t -c /etc/meridian/meridian.yaml"]
    assert keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert keys["Type"] == ["simple"]
    assert keys["User"] == ["meridian"]
    assert keys["KillSignal"] == ["SIGTERM"]
    # above timeouts.shutdown (30s in the shipped config), so the drain can finish
    assert int(keys["TimeoutStopSec"][0]) > 30
    assert keys["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]


def test_unit_verifies(dest, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    p = paths(dest)
    # point the unit at the DESTDIR copy (verify checks that the binary exists)
    # and let its Documentation=man:meridian(8) find the installed page
    unit = tmp_path / "meridian.service"
    unit.write_text(open(p["unit"]).read().replace("/usr/sbin/meridian", p["bin"]))
    env = dict(os.environ, MANPATH=os.path.join(dest, "usr/share/man"))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, env=env, timeout=60)
    err = r.stderr.decode()
    # an older libseccomp than systemd's syscall list only costs a warning
    problems = [l for l in err.splitlines() if l.strip() and "Failed to parse system call" not in l]
    assert r.returncode == 0 and not problems, err


def test_man_page_renders_without_warnings(dest):
    if shutil.which("groff") is None:
        pytest.skip("groff not installed")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", paths(dest)["man"]],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()
    out = subprocess.run(["groff", "-man", "-Tascii", paths(dest)["man"]], capture_output=True,
                         timeout=60).stdout.decode()
    plain = re.sub(r".\x08", "", out)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "FILES", "CONFIGURATION",
                    "ADMIN API", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert re.search(r"^%s$" % section, plain, re.M), section


def test_shipped_config_is_valid(dest, tmp_path):
    """conf/meridian.yaml as installed passes -t once the files it names exist:
    test certificates instead of /etc/meridian/tls/, the bundled test database
    (`make geodb`) instead of /usr/share/GeoIP's GeoLite2-City. The database
    line is checked too: the same file naming a missing database fails."""
    text = open(paths(dest)["conf"]).read()
    for name in sorted(set(re.findall(r"/etc/meridian/tls/([A-Za-z0-9.-]+)\.crt", text))):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=" + name,
                        "-keyout", str(tmp_path / (name + ".key")), "-out", str(tmp_path / (name + ".crt"))],
                       check=True, capture_output=True, timeout=60)
    text = text.replace("/etc/meridian/tls/", str(tmp_path) + "/")
    assert re.findall(r"(?m)^  database: (.*)$", text) == [SHIPPED_DB], "conf/meridian.yaml: one geo.database line"
    assert os.path.isfile(GEO_DB), "%s is missing: run `make geodb`" % GEO_DB
    conf = tmp_path / "meridian.yaml"
    conf.write_text(text.replace(SHIPPED_DB, GEO_DB))
    r = subprocess.run([MERIDIAN_BIN, "-t", "-c", str(conf)], capture_output=True, timeout=30 * SLOW)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr == b"", r.stderr.decode()
    # the database line is really read: a database that is not there fails -t
    missing = str(tmp_path / "no-such.mmdb")
    conf.write_text(text.replace(SHIPPED_DB, missing))
    r = subprocess.run([MERIDIAN_BIN, "-t", "-c", str(conf)], capture_output=True, timeout=30 * SLOW)
    assert r.returncode != 0 and missing in r.stderr.decode(), r


def test_reinstall_keeps_the_operators_config(dest):
    p = paths(dest)
    with open(p["conf"], "a") as f:
        f.write("# edited by the operator\n")
    before = open(p["conf"]).read()
    out = make("install", dest)
    assert "keeping the existing" in out
    assert open(p["conf"]).read() == before
    for k in ("bin", "man", "unit"):
        assert os.path.isfile(p[k]), k


def test_uninstall_removes_all_but_the_config(dest):
    p = paths(dest)
    before = open(p["conf"]).read()
    make("uninstall", dest)
    for k in ("bin", "man", "unit"):
        assert not os.path.exists(p[k]), k
    assert open(p["conf"]).read() == before
    # idempotent: nothing left to remove is not an error
    make("uninstall", dest)
    assert os.path.isfile(p["conf"])
