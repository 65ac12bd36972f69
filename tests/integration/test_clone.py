"""The repository stands on its own: HEAD of the repository these tests run
from, cloned into an empty temporary folder (nothing beside the clone, no
shared folder of the team's), builds (`make -j2 all geodb`, no package installs), and `make
run` there serves /hello and routes the README's X-Forwarded-For examples to
the regions the README says, with the bundled geo database. Only committed
work is in the clone, as in CI."""
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import REPO, SLOW, free_port, request, wait_for
from geodata import readme_geo_examples

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _env():
    # a make started by `make integration` exports MAKEFLAGS (BUILD=build-asan,
    # jobserver descriptors): the clone is built as a user would build it
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "BUILD", "OPT", "EXTRA_CFLAGS",
              "MRD_GEO_DB", "MERIDIAN_BIN", "MRD_BACKEND"):
        env.pop(k, None)
    return env


def _run(args, cwd, timeout):
    r = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, timeout=timeout)
    assert r.returncode == 0, "%s failed (%d):\n%s\n%s" % (" ".join(args), r.returncode,
                                                           r.stdout.decode()[-3000:], r.stderr.decode()[-3000:])
    return r.stdout.decode()


def test_fresh_clone_builds_and_runs_the_demo(tmp_path):
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("%s is not a git repository" % REPO)
    sha = head.stdout.strip()
    repo = tmp_path / "repo"
    assert os.listdir(tmp_path) == []
    _run(["git", "-c", "safe.directory=*", "clone", "-q", "--no-checkout", REPO, str(repo)], tmp_path, 120)
    _run(["git", "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", sha], repo, 60)
    assert os.listdir(tmp_path) == ["repo"] and not (tmp_path / "shared").exists()
    assert not (repo / "data").exists()     # a clone has no GeoLite2: the bundled database is used

    _run(["make", "-j2", "all", "geodb"], repo, 300 * SLOW)
    assert (repo / "build" / "geo" / "meridian-test-city.mmdb").is_file()

    ports = [free_port() for _ in range(5)]
    env = _env()
    env["DEMO_PORTS"] = " ".join(map(str, ports))
    log = open(tmp_path / "run.log", "w+b")
    # `make run` as a user types it; DEB_PKGS= keeps its `deps` step from
    # installing anything. Its own session: stopped by its process group id.
    proc = subprocess.Popen(["make", "--no-print-directory", "run", "DEB_PKGS="], cwd=repo, env=env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proxy, admin = ports[0], ports[1]

        def hello():
            try:
                r = request(proxy, "GET", "/hello")
                return r if r.status == 200 else None
            except OSError:
                return None

        r = wait_for(hello, 20 * SLOW, 0.1)
        log.seek(0)
        out = log.read().decode("utf-8", "replace")
        assert r is not None, "make run did not answer /hello:\n" + out
        assert r.header("X-Backend") and r.header("X-Meridian-Region"), r
        assert "geo database: the bundled test database" in out, out

        examples = readme_geo_examples(repo / "README.md")
        assert len(examples) >= 4, examples
        # as a user of the demo sees it: once the health checks (1 s) have
        # measured every region (until then an unmeasured region has latency
        # factor 0.5 against ~1.0 for a measured one)
        assert wait_for(lambda: all(x["latency_ewma_ms"] is not None
                                    for x in request(admin, "GET", "/v1/status").json()["regions"]), 5 * SLOW, 0.1)
        for ip, region in examples:
            j = request(admin, "GET", "/v1/route?ip=" + ip).json()
            assert j["client"]["source"] == "database", (ip, j)
            assert j["decision"]["region"] == region, (ip, j)
            r = request(proxy, "GET", "/", [("X-Forwarded-For", ip)])
            assert r.status == 200, (ip, r)
            assert r.header("X-Meridian-Region") == region, (ip, r)
            assert r.header("X-Backend").startswith(region), (ip, r)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10 * SLOW)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
    # everything make run started is gone: the demo's ports are free again
    assert wait_for(lambda: _ports_free(ports), 5), ports


def _ports_free(ports):
    import socket
    for p in ports:
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", p))
            return False
        except OSError:
            pass
        finally:
            s.close()
    return True
