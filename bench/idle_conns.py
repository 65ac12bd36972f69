#!/usr/bin/python3
"""Memory per idle keep-alive connection, for bench/run.sh.

Reads VmRSS of the given processes (summed), opens COUNT connections to
127.0.0.1:PORT, sends one complete keep-alive GET on each and reads the whole
response, keeps every socket open and idle, waits for the server to settle,
reads VmRSS again and prints one line:

    rss_before_kb=N rss_after_kb=N conns=N bytes_per_conn=N

A warm-up request on a separate connection runs first, so lazily allocated
per-process state (upstream pools, buffer caches) is in the baseline and the
delta is what the idle connections themselves cost. Sockets are closed with
RST (SO_LINGER 0) so no TIME_WAIT state piles up between runs.
"""
import argparse
import socket
import struct
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
PORTS_PER_SOURCE = 20000   # stay well inside the ephemeral port range


def rss_kb(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def connect(port, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if source != "127.0.0.1":
        # pick the port at connect time, per destination, not at bind time
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def read_response(s):
    """Reads one response (Content-Length or chunked); returns the status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed before response head")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = None, False
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    while True:
        if chunked and body.endswith(b"0\r\n\r\n"):
            break
        if not chunked and length is not None and len(body) >= length:
            break
        if not chunked and length is None:
            break
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed mid-body")
        body += d
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--pid", type=int, action="append", required=True,
                    help="process whose VmRSS counts; repeat to sum several")
    ap.add_argument("--path", default="/")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--settle", type=float, default=1.0)
    a = ap.parse_args()

    req = (f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
           "Connection: keep-alive\r\n\r\n").encode()
    nsources = max(1, -(-a.count // PORTS_PER_SOURCE))
    sources = [f"127.0.0.{i + 1}" for i in range(nsources)]

    w = connect(a.port, sources[0])
    w.sendall(req)
    read_response(w)
    w.close()
    time.sleep(a.settle / 2)
    before = rss_kb(a.pid)

    socks, bad = [], 0
    for start in range(0, a.count, a.batch):
        batch = []
        for i in range(start, min(a.count, start + a.batch)):
            s = connect(a.port, sources[i // PORTS_PER_SOURCE])
            s.sendall(req)
            batch.append(s)
        for s in batch:
            if read_response(s) >= 400:
                bad += 1
        socks.extend(batch)
    time.sleep(a.settle)
    after = rss_kb(a.pid)
    # every socket must still be open: a server that dropped idle connections
    # would look cheaper than it is
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for s in socks:
        s.close()
    if bad or closed:
        print(f"idle_conns: {bad} error responses, {closed} connections closed by the server",
              file=sys.stderr)
    per_conn = (after - before) * 1024 / a.count
    print(f"rss_before_kb={before} rss_after_kb={after} conns={a.count - closed} "
          f"bytes_per_conn={per_conn:.0f}")
    return 1 if bad or closed else 0


if __name__ == "__main__":
    sys.exit(main())
