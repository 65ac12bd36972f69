"""Redis for the fleet tests (SPEC 8, tests/integration/test_cluster.py):

  RespError, resp_encode(), resp_read()   the RESP2 wire format
  RespClient(port, password)              a tiny blocking client (no redis-py)
  RedisServer(tmp_path, password)         Debian's redis-server on a free
                                          loopback port, stopped by pid
  FakeRedis(behaviour)                    a TCP server speaking RESP badly on
                                          purpose (garbage, wrong-shaped
                                          replies, instant close, write errors)

Nothing here is left running: every process and thread is stopped by the
fixtures of test_cluster.py (RedisServer.stop: SIGCONT, SIGTERM, SIGKILL).
"""
import hashlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from conftest import PyUpstream

REDIS_SERVER = "/usr/bin/redis-server"
# util-linux: redis-server gets SIGKILL when the test process dies, even by
# SIGKILL (PR_SET_PDEATHSIG survives the exec; no preexec_fn: the load
# generator's threads may be running when Redis is restarted)
SETPRIV = "/usr/bin/setpriv"


# --------------------------------------------------------------------------
# RESP2
# --------------------------------------------------------------------------

class RespError(Exception):
    """An error reply (-ERR ...)."""


def resp_encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Buf:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            self._fill()

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk


def resp_read(buf):
    """One reply: bytes, int, list, None, or RespError (returned, not raised)."""
    line = buf.line()
    if not line:
        raise ValueError("empty RESP line")
    t, rest = line[:1], line[1:]
    if t == b"+":
        return rest
    if t == b"-":
        return RespError(rest.decode("latin-1"))
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = buf.exact(n + 2)
        return data[:-2]
    if t == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [resp_read(buf) for _ in range(n)]
    raise ValueError("not RESP: %r" % line)


def read_command(buf):
    """One command as a server reads it: a RESP array of bulk strings, or an
    inline command (what redis-cli and telnet send). Returns [bytes...]."""
    line = buf.line()
    while not line:
        line = buf.line()
    if line[:1] == b"*":
        n = int(line[1:])
        args = []
        for _ in range(n):
            h = buf.line()
            if h[:1] != b"$":
                raise ValueError("expected a bulk string, got %r" % h)
            args.append(buf.exact(int(h[1:]) + 2)[:-2])
        return args
    return line.split()


class RespClient:
    """A blocking RESP client: c.call("INFO", "commandstats")."""

    def __init__(self, port, password=None, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout)
        self.buf = _Buf(self.sock)
        if password is not None:
            r = self.call("AUTH", password)
            if isinstance(r, RespError):
                self.close()
                raise r

    def call(self, *args):
        self.sock.sendall(resp_encode(*args))
        return resp_read(self.buf)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def parse_info(text):
    """INFO's text -> {field: value} (values as strings)."""
    if isinstance(text, bytes):
        text = text.decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        out[k] = v
    return out


def commandstats(info):
    """INFO commandstats -> {command: calls}; "cmdstat_evalsha:calls=3,..." """
    out = {}
    for k, v in parse_info(info).items():
        if k.startswith("cmdstat_"):
            fields = dict(kv.split("=", 1) for kv in v.split(","))
            out[k[len("cmdstat_"):]] = int(fields["calls"])
    return out


# --------------------------------------------------------------------------
# the real thing
# --------------------------------------------------------------------------

def _free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class RedisServer:
    """redis-server --port P --bind 127.0.0.1 --save "" --appendonly no
    --requirepass SECRET --daemonize no, in its own directory under tmp_path.
    start() again after kill()/stop() restarts it on the same port with the
    same password (an empty data set: nothing is saved)."""

    def __init__(self, tmp_path, password="s3cret-fleet", port=None, unix_socket=False):
        self.password = password
        self.port = port or _free_port()
        self.dir = os.path.join(str(tmp_path), "redis-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        # a socket path must fit sun_path (108 bytes): not under tmp_path
        self.sock_dir = tempfile.mkdtemp(prefix="mrd-redis-") if unix_socket else None
        self.unix_path = os.path.join(self.sock_dir, "redis.sock") if unix_socket else None
        self.password_file = os.path.join(self.dir, "password")
        with open(self.password_file, "w") as f:
            f.write(password + "\n")
        self.proc = None
        self.stopped = False       # SIGSTOPped
        self.starts = 0
        self.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=10.0):
        assert self.proc is None or self.proc.poll() is not None, "redis-server is running"
        self.starts += 1
        log = open(os.path.join(self.dir, "redis-%d.log" % self.starts), "wb")
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--requirepass", self.password, "--daemonize", "no",
                "--dir", self.dir, "--logfile", ""]
        if os.access(SETPRIV, os.X_OK):
            args = [SETPRIV, "--pdeathsig", "KILL"] + args
        if self.unix_path:
            args += ["--unixsocket", self.unix_path, "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.stopped = False
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                with self.client(timeout=1.0) as c:
                    if c.call("PING") == b"PONG":
                        return
            except (OSError, EOFError, RespError, ValueError) as e:
                last = e
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("redis-server did not answer PING within %.0f s (%r):\n%s" % (timeout, last, self.log()))

    def log(self):
        out = []
        for i in range(1, self.starts + 1):
            try:
                with open(os.path.join(self.dir, "redis-%d.log" % i), "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)[-4000:]

    def client(self, timeout=5.0):
        return RespClient(self.port, self.password, timeout=timeout)

    def call(self, *args):
        with self.client() as c:
            return c.call(*args)

    def commandstats(self):
        return commandstats(self.call("INFO", "commandstats"))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig):
        if self.alive():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def sigstop(self):
        self._signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        self._signal(signal.SIGCONT)
        self.stopped = False

    def kill(self):
        """SIGKILL, and wait: the port is free again when this returns."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self.proc.wait()
        self.stopped = False

    def stop(self, timeout=5.0):
        """SIGCONT (a stopped process does not act on SIGTERM), SIGTERM, then
        SIGKILL; never leaves redis-server running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.stopped:
            self.sigcont()
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait()

    def cleanup(self):
        """stop(), and remove the socket's directory (outside tmp_path)."""
        self.stop()
        if self.sock_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)


# --------------------------------------------------------------------------
# the fake
# --------------------------------------------------------------------------

def _sha1(data):
    return hashlib.sha1(data).hexdigest().encode()


class FakeRedis(PyUpstream):
    """A threaded TCP server on a free loopback port that misbehaves:

      "garbage"    every command is answered with bytes that are not RESP
      "shapes"     AUTH, SELECT, PING, SCRIPT LOAD, ... answered correctly;
                   EVALSHA and EVAL with well-formed replies of the wrong
                   shape, a different one each time (WRONG_SHAPES)
      "close"      every connection is closed right after accept
      "readonly"   handshake answered correctly, EVALSHA/EVAL get -READONLY
      "oom"        the same with -OOM
      "huge"       answers EVALSHA/EVAL with an array header of 408,000,001
                   elements and nothing after it (hiredis 0.14 would
                   allocate 3 GB of pointers for it at once)

    connections counts accepted connections, commands records every command
    name (upper case) received, in order."""

    WRONG_SHAPES = [
        b"+OK\r\n",                                              # a status, not an array
        b"*4\r\n$13\r\n1700000000000\r\n$1\r\n1\r\n$1\r\n5\r\n$3\r\n100\r\n",  # an array of strings
        b"*4\r\n:-1\r\n:-3\r\n:-5\r\n:-100000\r\n",             # negative integers
        b"*4\r\n:1700000000000\r\n:1\r\n:9223372036854775807\r\n:9223372036854775807\r\n",  # huge
        b"*4\r\n:1700000000000\r\n:1\r\n:99999999999999999999999999\r\n:1\r\n",  # beyond 64 bits
        b"*2\r\n:1700000000000\r\n:1\r\n",                       # too few values
        b"*9\r\n" + b":1\r\n" * 9,                               # too many values
        b"*-1\r\n",                                              # a nil array
        b"$-1\r\n",                                              # a nil bulk string
        b"*0\r\n",                                               # an empty array
        b":42\r\n",                                              # an integer
        b"$5\r\nhello\r\n",                                      # a bulk string
        b"*4\r\n*1\r\n:1\r\n*1\r\n:1\r\n*1\r\n:1\r\n*1\r\n:1\r\n",  # nested arrays
        b"*4\r\n:1700000000000\r\n:0\r\n:1\r\n:0\r\n",           # no live instance
        b"*4\r\n:1700000000000\r\n:1\r\n$-1\r\n:0\r\n",          # a nil among the integers
    ]
    GARBAGE = b"\x00\x01\x02 this is not RESP \xff\xfe\r\n\x07garbage%%%\r\n"
    WRITE_ERRORS = {
        "readonly": b"-READONLY You can't write against a read only replica.\r\n",
        "oom": b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
    }

    def __init__(self, behaviour, password=None):
        assert behaviour in ("garbage", "shapes", "close", "readonly", "oom", "huge"), behaviour
        self.behaviour = behaviour
        self.password = password
        self.commands = []
        self.scripts = {}
        self.shapes = itertools.cycle(self.WRONG_SHAPES)
        self.shapes_served = 0     # wrong-shaped replies sent ("shapes")
        super().__init__(self._serve)

    def _serve(self, s, _reader, _upstream):
        """one connection (PyUpstream runs it on its own thread and closes it)"""
        if self.behaviour == "close":
            return
        buf = _Buf(s)
        while self.running:
            cmd = read_command(buf)
            if not cmd:
                continue
            name = cmd[0].upper()
            if name == b"SCRIPT" and len(cmd) > 1:
                name = b"SCRIPT " + cmd[1].upper()
            with self.lock:
                self.commands.append(name.decode("latin-1"))
            out = self.answer(name, cmd)
            if out is None:
                break
            s.sendall(out)

    def answer(self, name, cmd):
        if self.behaviour == "garbage":
            return self.GARBAGE
        if name in (b"EVALSHA", b"EVAL"):
            if self.behaviour == "huge":
                return b"*408000001\r\n"
            if self.behaviour == "shapes":
                with self.lock:
                    self.shapes_served += 1
                    return next(self.shapes)
            return self.WRITE_ERRORS[self.behaviour]
        # the rest as Redis 7 answers it
        if name == b"AUTH":
            pw = cmd[-1].decode("latin-1") if len(cmd) > 1 else None
            if self.password is not None and pw != self.password:
                return b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
            return b"+OK\r\n"
        if name in (b"SELECT", b"CLIENT", b"QUIT"):
            return b"+OK\r\n"
        if name == b"PING":
            return b"+PONG\r\n"
        if name == b"ECHO" and len(cmd) > 1:
            return b"$%d\r\n%s\r\n" % (len(cmd[1]), cmd[1])
        if name == b"SCRIPT LOAD" and len(cmd) > 2:
            sha = _sha1(cmd[2])
            with self.lock:
                self.scripts[sha] = cmd[2]
            return b"$40\r\n" + sha + b"\r\n"
        if name == b"SCRIPT EXISTS":
            with self.lock:
                known = [(a.lower() in self.scripts) for a in cmd[2:]]
            return b"*%d\r\n" % len(known) + b"".join(b":%d\r\n" % k for k in known)
        if name == b"TIME":
            t = time.time()
            a, b = b"%d" % int(t), b"%d" % int((t % 1) * 1e6)
            return b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(a), a, len(b), b)
        return b"-ERR unknown command '%s', with args beginning with: \r\n" % cmd[0][:40].replace(b"\r", b"").replace(b"\n", b"")

    def seen(self, *names):
        with self.lock:
            return sum(1 for c in self.commands if c in names)
