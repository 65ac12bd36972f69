#!/usr/bin/python3
"""bench/fleet.py: a simulated fleet sharing one cap through Redis (SPEC 8, issue 14).

N meridian processes (workers: 1, default 20) on one host, one redis-server,
one build/mrd-backend. Every instance has the same region, capped at CAP
requests/s (capacity_burst: the default, CAP / 10), and a cluster block
(sync_interval SYNC). Paced load (one h2load --rps per instance, open loop at
these rates: a request is sent on its schedule whatever the answers) of LOAD x
CAP in all, spread unevenly: instance 0 gets HOT (50%) of it, the others share
the rest. Nothing is pinned (the fleet and the load float over both CPUs).

Phase "steady": after WARMUP s, the 200 answers over WINDOW s are counted
against CAP x WINDOW. Goal: at most 5% + one burst over, at least 90% of it.
Phase "stop": the same load again; STOP instances (the last ones, cold) are
stopped (SIGTERM) MID s into the window. Counted: the fleet's 200s per second
before and after, how long until the live instance count falls to N - STOP,
and the rate of the survivors from 3 x sync_interval after the stop (goal: the
whole cap, within the same bounds).

During both phases the cluster mode of a few instances is polled (every
instance must stay "shared"). Run from the repo root after make (about 55 s):

    ./bench/fleet.py
    N=20 CAP=200 LOAD=3 HOT=0.5 WARMUP=5 WINDOW=20 STOP=5 MID=10 SYNC=100ms ./bench/fleet.py
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleetlib as fl  # noqa: E402

N = int(os.environ.get("N", "20"))
CAP = int(os.environ.get("CAP", "200"))
LOAD = float(os.environ.get("LOAD", "3"))
HOT = float(os.environ.get("HOT", "0.5"))
WARMUP = float(os.environ.get("WARMUP", "5"))
WINDOW = float(os.environ.get("WINDOW", "20"))
STOP = int(os.environ.get("STOP", "5"))
MID = float(os.environ.get("MID", "10"))
SYNC = os.environ.get("SYNC", "100ms")
SYNC_S = int(SYNC[:-2]) / 1000 if SYNC.endswith("ms") else float(SYNC[:-1])
BURST = max(1, CAP // 10)
PHASES = os.environ.get("PHASES", "steady stop").split()


def config(port, admin, backend, redis, i):
    return fl.meridian_config(port, admin, fl.one_region("fleet", CAP, backend)) + \
        fl.cluster_block(redis, "fleet", f"i{i:02d}", SYNC)


def rates():
    """(clients, rps per client) of each instance"""
    total = LOAD * CAP
    hot = total * HOT
    cold = (total - hot) / (N - 1)
    out = [(max(1, round(hot / 100)), 0)]  # about 100 req/s per connection
    out[0] = (out[0][0], max(1, round(hot / out[0][0])))
    out += [(1, max(1, round(cold)))] * (N - 1)
    return out


def read_log(path):
    """[(start_s, status)] of an h2load --log-file"""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                p = line.split("\t")
                if len(p) >= 2:
                    rows.append((int(p[0]) / 1e6, int(p[1])))
    except OSError:
        pass
    return rows


def poll_modes(ms, seen):
    for m in ms:
        c = fl.cluster_status(m.admin)
        mode = c["mode"] if c else "none"
        seen.setdefault(m.name, []).append(mode)


def run_phase(name, ms, work, stop_at=None):
    rs = rates()
    duration = WARMUP + WINDOW + 1
    gens, logs = [], []
    for i, (m, (c, r)) in enumerate(zip(ms, rs)):
        lf = work.path(f"h2load-{name}-{i:02d}.log")
        logs.append(lf)
        gens.append(fl.h2load_paced(f"http://127.0.0.1:{m.port}/", c, r, int(duration),
                                    work.path(f"h2load-{name}-{i:02d}.out"), logfile=lf))
    t_start = time.time()
    w0 = t_start + WARMUP
    w1 = w0 + WINDOW
    watch = [ms[0], ms[1], ms[N // 2], ms[N - STOP - 1]]  # survivors of the stop phase
    seen, live, stopped_at, live_after = {}, [], None, None
    while time.time() < t_start + duration:
        now = time.time()
        if stop_at is not None and stopped_at is None and now >= w0 + stop_at:
            stopped_at = time.time()
            for m in ms[N - STOP:]:
                m.proc.terminate()
            for m in ms[N - STOP:]:
                m.proc.wait()
            fl.log(f"fleet: stopped instances {', '.join(m.name for m in ms[N - STOP:])} "
                   f"at {stopped_at - w0:.2f} s into the window")
        if now >= w0:
            poll_modes(watch, seen)
        c = fl.cluster_status(ms[0].admin)
        if c is not None:
            live.append((time.time(), c.get("instances")))
            if stopped_at is not None and live_after is None and c.get("instances") == N - STOP:
                live_after = time.time() - stopped_at
        time.sleep(0.05 if stopped_at is not None and live_after is None else 0.5)
    for g in gens:
        g.wait()
    per = [read_log(lf) for lf in logs]
    ok200 = [sum(1 for t, s in rows if w0 <= t < w1 and s == 200) for rows in per]
    shed = [sum(1 for t, s in rows if w0 <= t < w1 and s == 503) for rows in per]
    sent = [sum(1 for t, s in rows if w0 <= t < w1) for rows in per]
    other = [sum(1 for t, s in rows if w0 <= t < w1 and s not in (200, 503)) for rows in per]
    bins = [0] * int(WINDOW)
    for rows in per:
        for t, s in rows:
            if s == 200 and w0 <= t < w1:
                bins[int(t - w0)] += 1
    res = dict(name=name, ok=ok200, shed=shed, sent=sent, other=other, bins=bins, seen=seen,
               stopped_at=None if stopped_at is None else stopped_at - w0, live_after=live_after, w0=w0, per=per,
               live=live)
    return res


def report_bound(label, n200, seconds):
    allowed = CAP * seconds
    hi = allowed * 1.05 + BURST
    lo = allowed * 0.90
    verdict = "meets" if lo <= n200 <= hi else "DOES NOT meet"
    print(f"  {label}: {n200} answers 200 in {seconds:.1f} s = {n200 / seconds:.1f}/s; cap x window = "
          f"{allowed:.0f}; ratio {n200 / allowed:.3f}; bound [{lo:.0f}, {hi:.0f}] (90% .. 105% + one burst "
          f"of {BURST}): {verdict} the goal")
    return lo <= n200 <= hi


def main():
    fl.on_signals()
    work = fl.Work("/tmp/meridian-fleet.")
    ok = False
    try:
        redis = fl.Redis(work)
        _, bport = fl.start_backend(work)
        ports = fl.free_ports(2 * N)
        ms = [fl.Meridian(work, f"i{i:02d}", config(ports[2 * i], ports[2 * i + 1], bport, redis, i),
                          ports[2 * i], ports[2 * i + 1]) for i in range(N)]
        for m in ms:
            m.wait_up()
        for m in ms:
            m.wait_shared()
        rs = rates()
        offered = sum(c * r for c, r in rs)
        fl.log(f"fleet: {N} instances in shared mode, cap {CAP} req/s (burst {BURST}), sync_interval {SYNC}; "
               f"offered {offered} req/s: instance 0 {rs[0][0] * rs[0][1]}, the others {rs[1][1]} each; "
               f"WARMUP={WARMUP}s WINDOW={WINDOW}s")
        results = {}
        c0 = redis.commandstats()
        t0 = time.monotonic()
        if "steady" in PHASES:
            results["steady"] = run_phase("steady", ms, work)
        c1 = redis.commandstats()
        t1 = time.monotonic()
        if "stop" in PHASES:
            results["stop"] = run_phase("stop", ms, work, stop_at=MID)
        good = True
        print(f"\nA fleet of {N} instances through one Redis: cap {CAP} req/s (burst {BURST}), "
              f"sync_interval {SYNC}, offered {offered} req/s ({offered / CAP:.2f} x cap; instance 0: "
              f"{rs[0][0] * rs[0][1]}, {N - 1} others: {rs[1][1]} each), window {WINDOW:.0f} s after {WARMUP:.0f} s")
        for name, r in results.items():
            modes = {k: v for k, v in r["seen"].items()}
            all_shared = all(x == "shared" for v in modes.values() for x in v)
            nchecks = sum(len(v) for v in modes.values())
            print(f"\nphase {name}: sent {sum(r['sent'])}, 200 {sum(r['ok'])}, 503 {sum(r['shed'])}, other "
                  f"{sum(r['other'])} (h2load does not log requests it could not send: a stopped instance's load just ends); cluster mode polled {nchecks} times on "
                  f"{', '.join(modes)}: {'all shared' if all_shared else 'NOT ALWAYS SHARED: ' + str(modes)}")
            good &= all_shared
            print(f"  200s per second: {' '.join(str(b) for b in r['bins'])}")
            hot, cold = r["ok"][0], sum(r["ok"][1:])
            print(f"  admitted: instance 0 {hot} ({hot / max(1, sum(r['ok'])):.0%}, offered {HOT:.0%}), "
                  f"the {N - 1} others {cold} (min {min(r['ok'][1:])} max {max(r['ok'][1:])} each)")
            if name == "steady":
                good &= report_bound("whole window", sum(r["ok"]), WINDOW)
            else:
                s = r["stopped_at"]
                before = sum(1 for rows in r["per"] for t, st in rows
                             if st == 200 and r["w0"] <= t < r["w0"] + s)
                a_from = s + 3 * SYNC_S
                after = sum(1 for rows in r["per"][:N - STOP] for t, st in rows
                            if st == 200 and r["w0"] + a_from <= t < r["w0"] + WINDOW)
                gap = sum(1 for rows in r["per"] for t, st in rows
                          if st == 200 and r["w0"] + s <= t < r["w0"] + a_from)
                la = r["live_after"]
                print(f"  stopped {STOP} instances at {s:.2f} s; instance 0 saw {N - STOP} live instances "
                      f"{'%.2f s' % la if la is not None else 'NEVER'} after the stop "
                      f"(3 x sync_interval = {3 * SYNC_S:.2f} s)")
                good &= report_bound(f"before the stop (all {N})", before, s)
                print(f"  the {3 * SYNC_S:.2f} s after the stop: {gap} answers 200 ({gap / (3 * SYNC_S):.0f}/s)")
                good &= report_bound(f"survivors from stop + 3 x sync_interval", after, WINDOW - a_from)
                good &= la is not None
        dt = t1 - t0
        if "steady" in results and dt > 0:
            d = {k: c1.get(k, 0) - c0.get(k, 0) for k in set(c0) | set(c1)}
            print(f"\nRedis during the steady phase ({dt:.1f} s): EVALSHA {d.get('evalsha', 0) / dt:.1f}/s = "
                  f"{d.get('evalsha', 0) / dt / N:.2f}/s per instance (1/sync_interval = {1 / SYNC_S:.1f}), "
                  f"EVAL {d.get('eval', 0) / dt:.2f}/s")
        print(f"\nverdict: {'all goals met' if good else 'SOME GOALS NOT MET (see above)'}")
        ok = True
        return 0 if good else 1
    finally:
        fl.stop_all()
        work.done(ok)


if __name__ == "__main__":
    sys.exit(main())
