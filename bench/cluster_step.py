#!/usr/bin/python3
"""bench/cluster_step.py: requests shed by a step of load after an idle pause
(SPEC 8 leases; a finding of issue 14's benchmarks).

Two meridians (workers: 1) on the same backend, one region capped at CAP,
by default capacity_rps 10000000 (nothing should ever be shed): "cap" without a
cluster block, "cluster" with one (a redis-server started here, sync_interval
100ms). For each pause in PAUSES: a load of `h2load --h1 -n REQS -c 10`
(closed loop, ~20-30k req/s) is sent after the instance was idle for that
long, to each target in turn; the 503s (X-Meridian-Shed: capacity) are
counted. Done ROUNDS times; medians. Load generator on CPU 0, servers on CPU 1.

    ./bench/cluster_step.py                     # PAUSES=0.05,0.3,1,5 REQS=3000 ROUNDS=3 CAP=10000000
"""
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleetlib as fl  # noqa: E402

PAUSES = [float(x) for x in os.environ.get("PAUSES", "0.05,0.3,1,5").split(",")]
REQS = int(os.environ.get("REQS", "3000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CAP = int(os.environ.get("CAP", "10000000"))


def config(port, admin, backend, cluster):
    return fl.meridian_config(port, admin, fl.one_region("bench", CAP, backend)) + cluster


def burst(port):
    argv = ["h2load", "--h1", "-n", str(REQS), "-c", "10", f"http://127.0.0.1:{port}/"]
    if (os.cpu_count() or 1) >= 2:
        argv = ["taskset", "-c", "0"] + argv
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    return int(m.group(4)) if m else -1


def main():
    fl.on_signals()
    work = fl.Work("/tmp/meridian-step.")
    ok = False
    try:
        redis = fl.Redis(work, pin=1)
        _, bport = fl.start_backend(work, pin=1)
        p = fl.free_ports(4)
        ts = {"cap": fl.Meridian(work, "cap", config(p[0], p[1], bport, ""), p[0], p[1], pin=1),
              "cluster": fl.Meridian(work, "cluster", config(p[2], p[3], bport,
                                                             fl.cluster_block(redis, "step", "one")), p[2], p[3], pin=1)}
        for m in ts.values():
            m.wait_up()
        ts["cluster"].wait_shared()
        shed = {(t, pause): [] for t in ts for pause in PAUSES}
        for r in range(ROUNDS):
            for pause in PAUSES:
                for t, m in ts.items():
                    burst(m.port)  # a busy instance first (its lease sized to the load)
                    time.sleep(pause)
                    n = burst(m.port)
                    shed[(t, pause)].append(n)
                    if t == "cluster":
                        c = fl.cluster_status(m.admin)
                        if not c or c["mode"] != "shared":
                            raise SystemExit(f"cluster instance not shared: {c}")
            fl.log(f"cluster_step: round {r + 1}/{ROUNDS}: " +
                   ", ".join(f"{t} after {pause}s {shed[(t, pause)][-1]}" for pause in PAUSES for t in ts))
        print(f"\n503s among {REQS} requests (h2load --h1 -c 10) sent after a pause, cap {CAP} req/s (burst {max(1, CAP // 10)}), "
              f"medians of {ROUNDS} rounds (min..max)")
        print(f"  {'pause s':>8}" + "".join(f"{t:>20}" for t in ts))
        for pause in PAUSES:
            print(f"  {pause:>8}" + "".join(
                f"{'%d (%d..%d)' % (statistics.median(shed[(t, pause)]), min(shed[(t, pause)]), max(shed[(t, pause)])):>20}"
                for t in ts))
        ok = True
        return 0
    finally:
        fl.stop_all()
        work.done(ok)


if __name__ == "__main__":
    sys.exit(main())
