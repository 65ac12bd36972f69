"""Failover under steady traffic (SPEC 2 health_check/retries/fallback, 3.2,
3.3, 3.5).

Region A (near the client, two upstreams a1 and a2, fallback B) and region B
(far away, one upstream). Four keep-alive client threads send GETs all the
time (~240 req/s); every response and every exception is recorded with its
time, status, X-Meridian-Region and X-Backend. Then, five times over:

  kill -9 a1        -> no request fails, traffic stays in A on a2
                       (SPEC 3.3: A at half health still outscores B)
  kill -9 a2        -> no request fails, traffic moves to B; the first
                       response from B comes < 1 s after the kill
  restart a1 and a2 -> traffic comes back to A once `rise` checks pass
                       (on the same ports)

The median failover time and the failed-request count are printed.
"""
import os
import re
import signal
import statistics
import subprocess
import threading
import time

from conftest import MRD_BACKEND, SLOW, HttpConn, wait_for

RUNS = 5
HC = "{path: /healthz, interval: 100ms, timeout: 500ms, rise: 2, fall: 1, expect_status: 200}"


# --------------------------------------------------------------------------
# helpers: backends on a chosen port, and a recording load generator
# --------------------------------------------------------------------------

class PortBackend:
    """An mrd-backend on 127.0.0.1:port (port 0: the kernel picks). The same
    port can be taken again after a kill (the backend binds SO_REUSEADDR)."""

    def __init__(self, name, port=0, deadline_s=3.0):
        self.name = name
        deadline = time.monotonic() + deadline_s * SLOW
        while True:
            self.proc = subprocess.Popen([MRD_BACKEND, "-l", "127.0.0.1:%d" % port, "-n", name, "-q"],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            line = self.proc.stdout.readline().decode()
            m = re.match(r"listening (\S+) (\S+):(\d+)$", line.strip())
            if m:
                break
            self.proc.wait()
            self.proc.stdout.close()
            if time.monotonic() > deadline:
                raise RuntimeError("mrd-backend %s could not listen on port %d" % (name, port))
            time.sleep(0.05)
        self.port = int(m.group(3))
        self.address = "127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def start_backend(backends, name, port=0):
    """Starts a PortBackend and registers it with the conftest factory so
    that teardown stops it."""
    b = PortBackend(name, port)
    backends.started.append(b)
    return b


class Load:
    """`threads` keep-alive clients, each pacing GETs at `rps_each`, and
    `slow_threads` sending back to back GETs the backend holds `slow_ms`.
    records: (t_sent, t_done, status, region, backend, slow); errors:
    (t, thread, repr)."""

    def __init__(self, port, threads=4, rps_each=60, path="/", slow_threads=0, slow_ms=150):
        self.port = port
        self.path = path
        self.period = 1.0 / rps_each
        self.slow_ms = slow_ms
        self.records = []
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i, False), daemon=True) for i in range(threads)]
        # slow requests (?delay=MS) back to back: some are always in flight
        self.threads += [threading.Thread(target=self._run, args=(threads + i, True), daemon=True)
                         for i in range(slow_threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(10 * SLOW)

    def _run(self, idx, slow):
        conn = None
        nxt = time.monotonic()
        n = 0
        while not self.stopping.is_set():
            now = time.monotonic()
            if nxt > now and not slow:
                time.sleep(nxt - now)
            nxt += self.period
            if nxt < time.monotonic() - self.period:
                nxt = time.monotonic()
            n += 1
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = HttpConn(self.port, timeout=10)
                q = "%s?t=%d&n=%d" % (self.path, idx, n) + ("&delay=%d" % self.slow_ms if slow else "")
                r = conn.request("GET", q)
                t1 = time.monotonic()
                with self.lock:
                    self.records.append((t0, t1, r.status, r.header("X-Meridian-Region"), r.header("X-Backend"),
                                         slow))
                if r.status != 200 or (r.header("Connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                with self.lock:
                    self.errors.append((time.monotonic(), idx, repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def snapshot(self):
        with self.lock:
            return list(self.records), list(self.errors)

    def seen_since(self, t, pred):
        with self.lock:
            return [r for r in self.records if r[1] >= t and pred(r)]


def failover_config(a1, a2, b1):
    return (
        "workers: 2\n"
        "geo:\n"
        "  networks:\n"
        "    - {cidr: \"127.0.0.0/8\", country: DE, continent: EU, latitude: 50.11, longitude: 8.68}\n"
        "response_headers: {region: true}\n"
        "regions:\n"
        "  - name: A\n"
        "    location: {latitude: 50.1, longitude: 8.7}\n"
        "    fallback: B\n"
        "    balance: round_robin\n"
        "    health_check: " + HC + "\n"
        "    upstreams:\n"
        '      - {address: "%s"}\n'
        '      - {address: "%s"}\n' % (a1.address, a2.address)
        + "  - name: B\n"
        "    location: {latitude: -33.87, longitude: 151.21}\n"
        "    health_check: " + HC + "\n"
        "    upstreams:\n"
        '      - {address: "%s"}\n' % b1.address
    )


def fmt_window(records, t0, t1):
    """Counts of (status, region, backend) completed in [t0, t1)."""
    out = {}
    for r in records:
        if t0 <= r[1] < t1:
            k = "%s/%s/%s" % (r[2], r[3], r[4])
            out[k] = out.get(k, 0) + 1
    return out


# --------------------------------------------------------------------------
# the scenario
# --------------------------------------------------------------------------

def test_failover_kill_a1_then_a2_then_restart(meridian, backends, capsys):
    a1 = start_backend(backends, "a1")
    a2 = start_backend(backends, "a2")
    b1 = start_backend(backends, "b1")
    m = meridian.start(failover_config(a1, a2, b1))
    load = Load(m.port, threads=4, rps_each=60, slow_threads=2).start()
    cycles = []
    problems = []
    try:
        t_begin = time.monotonic()
        for run in range(RUNS):
            # steady state: both A upstreams serving
            t_s = time.monotonic()
            ok = wait_for(lambda: {r[4] for r in load.seen_since(t_s, lambda r: r[3] == "A")} >= {"a1", "a2"},
                          5 * SLOW)
            assert ok, "run %d: A is not served by both a1 and a2 before the kill: %r" % (
                run, fmt_window(load.snapshot()[0], t_s, time.monotonic()))
            time.sleep(0.3)

            t_k1 = time.monotonic()
            a1.kill()
            time.sleep(0.8)

            t_k2 = time.monotonic()
            a2.kill()
            wait_for(lambda: load.seen_since(t_k2, lambda r: r[3] == "B"), 3 * SLOW, interval=0.01)
            time.sleep(0.6)

            t_r = time.monotonic()
            a1 = PortBackend("a1", a1.port)
            backends.started.append(a1)
            a2 = PortBackend("a2", a2.port)
            backends.started.append(a2)
            t_r_done = time.monotonic()
            wait_for(lambda: load.seen_since(t_r, lambda r: r[3] == "A"), 5 * SLOW, interval=0.01)
            time.sleep(0.3)
            cycles.append((t_k1, t_k2, t_r, t_r_done, time.monotonic()))
        t_end = time.monotonic()
    finally:
        load.stop()

    records, errors = load.snapshot()
    failed = [r for r in records if r[2] != 200]
    failover, recovery = [], []
    inflight = {"a1": 0, "a2": 0}
    for run, (t_k1, t_k2, t_r, t_r_done, t_next) in enumerate(cycles):
        # a1 killed: A still wins (2 regions: g_A=1, h_A=0.5 vs g_B~0.18, h_B=1)
        ph1 = [r for r in records if t_k1 <= r[1] < t_k2]
        not_a = [r for r in ph1 if r[3] != "A"]
        if not_a:
            problems.append("run %d: after a1 was killed (a2 alive) %d responses left region A: %r"
                            % (run, len(not_a), fmt_window(ph1, t_k1, t_k2)))
        inflight["a1"] += sum(1 for r in records if r[0] < t_k1 < r[1] and r[5])
        inflight["a2"] += sum(1 for r in records if r[0] < t_k2 < r[1] and r[5])
        late_a1 = [r for r in ph1 if r[4] == "a1" and r[1] > t_k1 + 0.05]
        if late_a1:
            problems.append("run %d: %d responses from a1 after it was killed" % (run, len(late_a1)))
        a2_served = [r for r in ph1 if r[4] == "a2"]
        if len(a2_served) < 50:
            problems.append("run %d: only %d responses from a2 while a1 was down: %r"
                            % (run, len(a2_served), fmt_window(ph1, t_k1, t_k2)))
        # a2 killed: region B
        firstb = [r for r in records if r[1] >= t_k2 and r[3] == "B"]
        if not firstb:
            problems.append("run %d: no response from region B after both A upstreams died" % run)
            continue
        ft = firstb[0][1] - t_k2
        failover.append(ft)
        ph2 = [r for r in records if firstb[0][1] <= r[1] < t_r]
        not_b = [r for r in ph2 if r[3] != "B"]
        if not_b:
            problems.append("run %d: after failover %d responses not from B: %r" % (run, len(not_b), not_b[:5]))
        # restart: back to A
        firsta = [r for r in records if r[1] >= t_r and r[3] == "A"]
        if not firsta:
            problems.append("run %d: traffic never came back to region A after the restart" % run)
            continue
        rt = firsta[0][1] - t_r_done
        recovery.append(rt)
        # rise 2: two passing checks, at least 90 ms (interval - 10%) apart,
        # both after the restart began
        if firsta[0][1] - t_r < 0.085:
            problems.append("run %d: A served again %.3f s after the restart began: before `rise` (2) "
                            "checks could pass" % (run, firsta[0][1] - t_r))
        # requests sent after A came back stay in A (A outscores B again);
        # slow ones sent to B just before may still complete from B
        back = [r for r in records if firsta[0][1] + 0.05 <= r[0] and r[1] < t_next and r[3] != "A"]
        if back:
            problems.append("run %d: %d requests sent after A came back were served by B: %r"
                            % (run, len(back), back[:5]))

    total = len(records)
    summary = ("failover: median %.3f s over %d runs (min %.3f, max %.3f; all %s), failed requests %d "
               "(+%d exceptions) of %d; back to A after restart: median %.3f s (max %.3f); %.0f req/s; "
               "slow requests in flight at the kills (retried): %d at a1's, %d at a2's" % (
                   statistics.median(failover) if failover else float("nan"), len(failover),
                   min(failover) if failover else float("nan"), max(failover) if failover else float("nan"),
                   ", ".join("%.3f" % f for f in failover), len(failed), len(errors), total,
                   statistics.median(recovery) if recovery else float("nan"),
                   max(recovery) if recovery else float("nan"), total / (t_end - t_begin),
                   inflight["a1"], inflight["a2"]))
    with capsys.disabled():
        print("\n" + summary)
    assert not failed and not errors, "%d failed responses, %d exceptions; first: %r %r\n%s" % (
        len(failed), len(errors), failed[:5], errors[:5], summary)
    assert not problems, "\n".join(problems) + "\n" + summary
    assert len(failover) == RUNS
    assert max(failover) < 1.0 * SLOW, summary
    # rise 2 at 100 ms (+-10%) intervals: back within a few hundred ms; allow 3 s
    assert max(recovery) < 3.0 * SLOW, summary
