"""fleetlib.py: helpers of bench/redis_cmds.py and bench/fleet.py (SPEC 8
benchmarks): free ports, a redis-server, the bench backend and meridian
instances started and stopped by pid, their cluster state, Redis
INFO commandstats. Debian's /usr/bin/python3, standard library only.
Every process started here is registered and killed by stop_all() (call
it from a finally: block; the scripts also turn SIGTERM/SIGINT into it)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MERIDIAN_BIN = os.environ.get("MERIDIAN_BIN", os.path.join(ROOT, "meridian"))
BACKEND_BIN = os.environ.get("BACKEND_BIN", os.path.join(ROOT, "build", "mrd-backend"))
REDIS_BIN = os.environ.get("REDIS_BIN", "redis-server")

_procs = []  # every Popen started here


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, proc, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start(argv, out, pin=None):
    if pin is not None and (os.cpu_count() or 1) >= 2:
        argv = ["taskset", "-c", str(pin)] + argv
    f = open(out, "wb")
    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    f.close()
    _procs.append(p)
    return p


def stop(p, timeout=5.0):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in _procs:
        _procs.remove(p)


def stop_all():
    for p in list(_procs):
        if p.poll() is None:
            p.terminate()
    end = time.monotonic() + 5
    for p in list(_procs):
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    _procs.clear()


def on_signals():
    def h(sig, frame):
        raise SystemExit(128 + sig)
    signal.signal(signal.SIGTERM, h)
    signal.signal(signal.SIGINT, h)


class Work:
    """a temporary directory, removed at the end unless KEEP_WORK=1 or a failure"""

    def __init__(self, prefix):
        self.dir = tempfile.mkdtemp(prefix=prefix)

    def path(self, name):
        return os.path.join(self.dir, name)

    def done(self, ok):
        if os.environ.get("KEEP_WORK") == "1" or not ok:
            log(f"work files (configs, logs) kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    def __init__(self, work, pin=None):
        self.port = free_ports(1)[0]
        self.password = "bench-%d" % os.getpid()
        self.pwfile = work.path("redis.pw")
        with open(self.pwfile, "w") as f:
            f.write(self.password)
        self.proc = start([REDIS_BIN, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
                           "--port", str(self.port), "--requirepass", self.password, "--dir", work.dir],
                          work.path("redis.log"), pin)
        if not wait_port(self.port, self.proc):
            raise SystemExit("redis-server did not start: " + open(work.path("redis.log")).read())

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), "-a", self.password, "--no-auth-warning"]
                              + list(args), capture_output=True, text=True, check=True).stdout

    def commandstats(self):
        """{command: calls} from INFO commandstats"""
        out = {}
        for line in self.cli("info", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, rest = line[len("cmdstat_"):].split(":", 1)
                kv = dict(x.split("=", 1) for x in rest.split(","))
                out[name] = int(kv["calls"])
        return out


def start_backend(work, pin=None):
    out = work.path("backend.out")
    p = start([BACKEND_BIN, "-q", "-n", "bench", "-l", "127.0.0.1:0"], out, pin)
    for _ in range(100):
        try:
            for line in open(out):
                if line.startswith("listening "):
                    return p, int(line.split()[2].rsplit(":", 1)[1])
        except OSError:
            pass
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("backend did not start: " + open(out).read())


def http_get(port, path, timeout=2.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def cluster_status(admin_port):
    """the "cluster" object of /v1/status, or None"""
    try:
        return json.loads(http_get(admin_port, "/v1/status")).get("cluster")
    except (OSError, ValueError):
        return None


def metrics(admin_port):
    """{name{labels}: value} of /metrics"""
    out = {}
    for line in http_get(admin_port, "/metrics").splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


class Meridian:
    def __init__(self, work, name, yaml_text, port, admin, pin=None):
        self.name, self.port, self.admin = name, port, admin
        self.conf = work.path(f"meridian-{name}.yaml")
        with open(self.conf, "w") as f:
            f.write(yaml_text)
        self.log = work.path(f"meridian-{name}.log")
        self.proc = start([MERIDIAN_BIN, "-c", self.conf], self.log, pin)

    def wait_up(self):
        if not (wait_port(self.port, self.proc) and wait_port(self.admin, self.proc)):
            raise SystemExit(f"meridian {self.name} did not start: " + open(self.log).read())

    def wait_shared(self, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            c = cluster_status(self.admin)
            if c is not None and c.get("mode") == "shared":
                return c
            time.sleep(0.05)
        raise SystemExit(f"meridian {self.name} is not in shared mode after {timeout} s: "
                         f"{cluster_status(self.admin)}; log: {open(self.log).read()}")


def meridian_config(port, admin, regions, extra=""):
    """meridian's YAML for the fleet benches: one worker, one plaintext
    HTTP/1 listener, an admin listener, no access log, then `extra`
    (top-level blocks) and `regions` (the text under "regions:")."""
    return f"""workers: 1
listeners:
  - address: "127.0.0.1:{port}"
    protocols: [http1]
admin: {{address: "127.0.0.1:{admin}"}}
access_log: {{path: "off"}}
{extra}regions:
{regions}"""


def one_region(name, cap, backend):
    """the text of one capped region on one backend, for meridian_config"""
    return f"""  - name: {name}
    location: {{latitude: 0.0, longitude: 0.0}}
    capacity_rps: {cap}
    upstreams:
      - {{address: "127.0.0.1:{backend}"}}
"""


def cluster_block(redis, name, instance, sync_interval="100ms"):
    return f"""cluster:
  redis: {{address: "127.0.0.1:{redis.port}", password_file: "{redis.pwfile}", database: 0}}
  name: {name}
  instance: "{instance}"
  sync_interval: {sync_interval}
  on_redis_failure: local
"""


def h2load_paced(url, clients, rps_per_client, seconds, out, logfile=None, header=None, pin=None):
    """open-loop-ish load: h2load --rps per client for a fixed duration"""
    argv = ["h2load", "--h1", "-t", "1", "-c", str(clients), "--rps", str(rps_per_client),
            "-D", str(seconds)]
    if logfile:
        argv += ["--log-file", logfile]
    if header:
        argv += ["-H", header]
    return start(argv + [url], out, pin)
