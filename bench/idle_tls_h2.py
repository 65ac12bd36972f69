#!/usr/bin/python3
"""Memory per idle TLS HTTP/2 connection, for bench/run_h2.sh (--h2c: per idle h2c connection).

Reads VmRSS of the given processes (summed), opens COUNT TLS 1.3 connections
to 127.0.0.1:PORT that negotiate h2 by ALPN (with --h2c: plaintext
connections with the HTTP/2 preface, prior knowledge), sends one GET / on each (client
preface, SETTINGS, HEADERS with END_STREAM; the python3-h2 package frames it),
reads the whole response, acknowledges the server's SETTINGS, then keeps every
socket open and idle. It waits for the server to settle, reads VmRSS again and
prints one line:

    rss_before_kb=N rss_after_kb=N conns=N bytes_per_conn=N

A warm-up request on a separate TLS h2 connection runs first, so lazily
allocated per-process state (upstream pools, TLS and HPACK tables, buffer
caches) is in the baseline. Sockets are closed with RST (SO_LINGER 0) so no
TIME_WAIT state piles up between runs.
"""
import argparse
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events

# same sockets, sources and RSS reading as the plaintext test
from idle_conns import PORTS_PER_SOURCE, connect, rss_kb  # noqa: E402


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    ctx.options |= ssl.OP_NO_TICKET   # no resumption state kept by the client
    return ctx


class Conn:
    """One TLS h2 connection with one finished GET."""

    def __init__(self, ctx, port, source):
        if ctx is None:  # h2c
            self.s = connect(port, source)
        else:
            self.s = ctx.wrap_socket(connect(port, source), server_hostname="localhost")
            if self.s.selected_alpn_protocol() != "h2":
                raise RuntimeError(f"ALPN selected {self.s.selected_alpn_protocol()!r}, not h2")
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.h2.send_headers(1, [(":method", "GET"), (":path", "/"),
                                 (":scheme", "http" if ctx is None else "https"),
                                 (":authority", f"127.0.0.1:{port}")], end_stream=True)
        self.s.sendall(self.h2.data_to_send())
        self.status = None
        self.done = False

    def finish(self):
        """Reads until stream 1 ended; returns its status."""
        while not self.done:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("closed before the response ended")
            for ev in self.h2.receive_data(d):
                if isinstance(ev, h2.events.ResponseReceived):
                    self.status = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    self.done = True
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise ConnectionError(f"GOAWAY {ev.error_code}")
        out = self.h2.data_to_send()   # SETTINGS ACK, WINDOW_UPDATEs
        if out:
            self.s.sendall(out)
        return self.status or 0

    def closed_by_server(self):
        """Non-blocking check: EOF, reset or GOAWAY means the server dropped us."""
        self.s.setblocking(False)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                for ev in self.h2.receive_data(d):
                    if isinstance(ev, h2.events.ConnectionTerminated):
                        return True
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except (OSError, ssl.SSLError):
            return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--pid", type=int, action="append", required=True,
                    help="process whose VmRSS counts; repeat to sum several")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--h2c", action="store_true", help="plaintext HTTP/2 (prior knowledge) instead of TLS")
    a = ap.parse_args()

    ctx = None if a.h2c else tls_context()
    nsources = max(1, -(-a.count // PORTS_PER_SOURCE))
    sources = [f"127.0.0.{i + 1}" for i in range(nsources)]

    w = Conn(ctx, a.port, sources[0])
    w.finish()
    w.s.close()
    time.sleep(a.settle / 2)
    before = rss_kb(a.pid)

    conns, bad = [], 0
    for start in range(0, a.count, a.batch):
        batch = [Conn(ctx, a.port, sources[i // PORTS_PER_SOURCE])
                 for i in range(start, min(a.count, start + a.batch))]
        for c in batch:
            if not 200 <= c.finish() < 400:
                bad += 1
        conns.extend(batch)
    time.sleep(a.settle)
    after = rss_kb(a.pid)
    # every connection must still be open: a server that dropped idle
    # connections would look cheaper than it is
    closed = sum(1 for c in conns if c.closed_by_server())
    for c in conns:
        c.s.close()
    if bad or closed:
        print(f"idle_tls_h2{' --h2c' if a.h2c else ''}: {bad} error responses, {closed} connections closed by the server",
              file=sys.stderr)
    per_conn = (after - before) * 1024 / a.count
    print(f"rss_before_kb={before} rss_after_kb={after} conns={a.count - closed} "
          f"bytes_per_conn={per_conn:.0f}")
    return 1 if bad or closed else 0


if __name__ == "__main__":
    sys.exit(main())
