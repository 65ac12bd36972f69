"""An open-loop load generator for several meridian instances at once
(test_cluster.py): one thread, selectors, a few keep-alive connections per
instance, requests sent at a fixed schedule (each instance's rate, paced in
1 ms steps: a late loop catches up, a slow answer never delays the next
request: they are pipelined) whatever the responses.

    load = FleetLoad([m_a.port, m_b.port], [240, 30])
    load.start()
    ...; load.set_rate(1, 0); load.retire(1) ...
    load.stop()
    load.count(200, 1.0, 6.0)     # 200s among the requests sent in [1, 6) s

Times are seconds since load.t0 (load.now()); every response is binned by
the time its request was sent. A connection that closes or resets with
requests in flight records one error per request (load.errors) and is
reopened; nothing raises in the thread (load.failure holds an unexpected
exception)."""
import collections
import re
import selectors
import socket
import threading
import time

_CLEN = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)
_SHED = re.compile(rb"\r\nx-meridian-shed:[ \t]*([^\r]*)", re.I)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.I)


class Result:
    __slots__ = ("target", "t_send", "t_recv", "status", "shed")

    def __init__(self, target, t_send, t_recv, status, shed):
        self.target, self.t_send, self.t_recv, self.status, self.shed = target, t_send, t_recv, status, shed

    @property
    def latency(self):
        return self.t_recv - self.t_send


class _Conn:
    def __init__(self, target, port, src):
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind((src, 0))
        self.sock.settimeout(5.0)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.out = bytearray()
        self.inb = bytearray()
        self.pending = collections.deque()   # send times of the requests in flight


class _Target:
    def __init__(self, index, port, rate, conns, src):
        self.index, self.port, self.rate, self.nconns, self.src = index, port, float(rate), conns, src
        self.credit = 0.0
        self.sent = 0
        self.conns = []
        self.retiring = False
        self.retired = threading.Event()


class FleetLoad:
    def __init__(self, ports, rates, conns=4, path="/", src="127.0.0.1"):
        assert len(ports) == len(rates)
        self.req = ("GET %s HTTP/1.1\r\nHost: test\r\n\r\n" % path).encode()
        self.targets = [_Target(i, p, r, conns, src) for i, (p, r) in enumerate(zip(ports, rates))]
        self.results = []
        self.errors = []          # (target, t, what)
        self.reconnects = 0       # idle keep-alive connections the server closed (nothing in flight)
        self.failure = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sel = selectors.DefaultSelector()
        for t in self.targets:
            for _ in range(t.nconns):
                self._open(t)
        self.t0 = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    # ---------------------------------------------------------------- control

    def start(self):
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def now(self):
        return time.monotonic() - self.t0

    def set_rate(self, i, rate):
        with self.lock:
            self.targets[i].rate = float(rate)

    def set_rates(self, rates):
        with self.lock:
            for t, r in zip(self.targets, rates):
                t.rate = float(r)

    def retire(self, i, timeout=10.0):
        """Stop sending to target i, wait for its answers, close its
        connections (before the test stops that instance). Returns the time."""
        with self.lock:
            self.targets[i].rate = 0.0
            self.targets[i].retiring = True
        assert self.targets[i].retired.wait(timeout), "target %d: responses still in flight after %.0f s" % (i, timeout)
        return self.now()

    def stop(self, drain=10.0):
        """Stops sending, collects what is in flight (at most `drain` s)."""
        self.drain = drain
        self.stopping.set()
        self.thread.join(drain + 5.0)
        assert not self.thread.is_alive(), "the load generator did not stop"
        if self.failure:
            raise self.failure
        return self

    # ---------------------------------------------------------------- figures

    def sent(self, target=None):
        return sum(t.sent for t in self.targets if target is None or t.index == target)

    def select(self, t_from=None, t_to=None, targets=None):
        """Results whose request was sent in [t_from, t_to)."""
        with self.lock:
            res = list(self.results)
        return [r for r in res if (t_from is None or r.t_send >= t_from) and (t_to is None or r.t_send < t_to)
                and (targets is None or r.target in targets)]

    def count(self, status, t_from=None, t_to=None, targets=None):
        return sum(1 for r in self.select(t_from, t_to, targets) if r.status == status)

    def statuses(self, t_from=None, t_to=None, targets=None):
        return collections.Counter((r.status, r.shed) if r.status != 200 else 200
                                   for r in self.select(t_from, t_to, targets))

    def per_second(self, status=200, seconds=None, targets=None):
        res = self.select(targets=targets)
        n = seconds or int(max((r.t_send for r in res), default=0)) + 1
        out = [0] * n
        for r in res:
            s = int(r.t_send)
            if r.status == status and 0 <= s < n:
                out[s] += 1
        return out

    def latency_p(self, q, t_from=None, t_to=None):
        lat = sorted(r.latency for r in self.select(t_from, t_to))
        if not lat:
            return None
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    # ---------------------------------------------------------------- the loop

    def _open(self, t):
        c = _Conn(t.index, t.port, t.src)
        t.conns.append(c)
        self.sel.register(c.sock, selectors.EVENT_READ, c)

    def _close(self, c, why):
        t = self.targets[c.target]
        now = time.monotonic() - self.t0 if self.t0 else 0.0
        for _ in c.pending:
            self.errors.append((c.target, now, why))
        c.pending.clear()
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        t.conns.remove(c)

    def _run(self):
        try:
            self._loop()
        except BaseException as e:     # reported by stop()
            self.failure = e
        finally:
            for t in self.targets:
                for c in list(t.conns):
                    self._close(c, "closed by the load generator with requests in flight")
            self.sel.close()

    def _loop(self):
        last = self.t0
        drain_deadline = None
        while True:
            now = time.monotonic()
            rel = now - self.t0
            stopping = self.stopping.is_set()
            if stopping and drain_deadline is None:
                drain_deadline = now + self.drain
            with self.lock:
                for t in self.targets:
                    if stopping or t.retiring:
                        t.credit = 0.0
                        continue
                    t.credit += t.rate * (now - last)
                    while t.credit >= 1.0:
                        t.credit -= 1.0
                        if not t.conns:
                            self._open(t)
                        c = min(t.conns, key=lambda x: len(x.pending))
                        c.out += self.req
                        c.pending.append(rel)
                        t.sent += 1
                    if len(t.conns) < t.nconns:
                        self._open(t)
            last = now
            for t in self.targets:
                for c in list(t.conns):
                    if c.out:
                        try:
                            n = c.sock.send(c.out)
                            del c.out[:n]
                        except BlockingIOError:
                            pass
                        except OSError as e:
                            self._close(c, "send: %r" % e)
            outstanding = 0
            for t in self.targets:
                busy = sum(len(c.pending) for c in t.conns)
                outstanding += busy
                if t.retiring and not t.retired.is_set() and busy == 0:
                    for c in list(t.conns):
                        self._close(c, "retired")
                    t.retired.set()
            if stopping and (outstanding == 0 or now >= drain_deadline):
                return
            for key, _ in self.sel.select(0.001 if not stopping else 0.02):
                self._read(key.data)

    def _read(self, c):
        try:
            chunk = c.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as e:
            self._close(c, "recv: %r" % e)
            return
        if not chunk:
            if not c.pending:
                self.reconnects += 1
            self._close(c, "closed by the server")
            return
        c.inb += chunk
        t_recv = time.monotonic() - self.t0
        while True:
            i = c.inb.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(c.inb[:i + 2])
            if _CHUNKED.search(head):
                end = c.inb.find(b"\r\n0\r\n\r\n", i)
                if end < 0:
                    return
                total = end + 7
            else:
                m = _CLEN.search(head)
                total = i + 4 + (int(m.group(1)) if m else 0)
                if len(c.inb) < total:
                    return
            del c.inb[:total]
            status = int(head[9:12])
            m = _SHED.search(head)
            if not c.pending:
                self.errors.append((c.target, t_recv, "a response nobody asked for: %r" % head[:100]))
                continue
            with self.lock:
                self.results.append(Result(c.target, c.pending.popleft(), t_recv, status,
                                           m.group(1).decode("latin-1").strip() if m else None))
