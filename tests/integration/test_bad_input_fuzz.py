"""Random and mutated request heads from a fixed seed, sent raw.

meridian must never crash; every answer is a well-formed HTTP/1.1 response
(usually 4xx), and a request the strict upstream parser rejects must never
have been forwarded (a 400 carrying X-Backend would mean meridian let through
something a strict parser refuses).
"""
import os
import random
import threading

from conftest import SLOW, exchange, simple_config

SEED = 20240917
N_CASES = 360

BASES = [
    b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /echo?a=1&b=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, X-Foo\r\nX-Foo: 1\r\nTE: trailers\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
]

INTERESTING = [b"\r", b"\n", b"\x00", b" ", b":", b"\t", b"\x7f", b"\xff", b"\r\n", b"\r\n\r\n", b",",
               b"-1", b"0x10", b"99999999999999999999", b"chunked", b"Content-Length: 3\r\n",
               b"Transfer-Encoding: chunked\r\n", b"\r\n ", b"HTTP/1.1", b"%00", b";", b"\"", b"\\"]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:                      # flip a byte
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:                             # insert an interesting token
            data[pos:pos] = rng.choice(INTERESTING)
        elif op == 2 and data:                    # delete a span
            del data[pos:pos + rng.randint(1, 8)]
        elif op == 3:                             # duplicate a line
            lines = bytes(data).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
        elif op == 4:                             # replace a space or colon
            idx = [i for i, c in enumerate(data) if c in b" :"]
            if idx:
                data[rng.choice(idx)] = rng.choice(b"\t\r\n\x00;")
        elif op == 5:                             # long run
            data[pos:pos] = bytes([rng.randrange(32, 127)]) * rng.choice([100, 5000, 20000])
        elif op == 6:                             # case change
            data = bytearray(bytes(data).swapcase())
        else:                                     # random garbage
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 30)))
    return bytes(data)


def cases():
    rng = random.Random(SEED)
    out = []
    for i in range(N_CASES):
        if i % 12 == 0:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))))
        else:
            out.append(mutate(rng, rng.choice(BASES)))
    return out


def test_fuzzed_request_heads(meridian, backend):
    m = meridian.start(simple_config(
        [backend.address],
        extra="timeouts: {request_header: 1s, upstream_response: 3s, idle: 2s, shutdown: 5s}\n"
              "limits: {max_body_bytes: 65536}\n"))
    inputs = cases()
    results = [None] * len(inputs)

    def worker(idxs):
        for i in idxs:
            method = "HEAD" if inputs[i].startswith(b"HEAD") else "GET"
            try:
                results[i] = exchange(m.port, inputs[i], timeout=4, method=method, close_wait=0.05)
            except Exception as e:          # reported by the main thread
                results[i] = e

    nthreads = 12
    ts = [threading.Thread(target=worker, args=(range(k, len(inputs), nthreads),)) for k in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120 * SLOW)
    assert m.alive(), "meridian crashed on fuzzed input:\n" + m.stderr()[-3000:]

    problems = []
    answered = 0
    for data, x in zip(inputs, results):
        assert x is not None
        if isinstance(x, Exception):
            problems.append(("client error", data[:120], repr(x)))
            continue
        if x.resp is None:
            # no answer is only acceptable when nothing at all came back
            # (e.g. the client's bytes never formed a complete head or body
            # within our wait) -- partial garbage is not
            if x.data:
                problems.append(("malformed response", data[:120], x.data[:120]))
            continue
        answered += 1
        r = x.resp
        if not r.status_line.startswith("HTTP/1.1 "):
            problems.append(("bad version in status line", data[:120], r.status_line))
        from_upstream = r.header("X-Backend") is not None
        if from_upstream and r.status == 400:
            problems.append(("forwarded a request the upstream rejects", data[:200], r.status_line))
        if not from_upstream and not (400 <= r.status < 500 or r.status in (502, 503, 504)):
            problems.append(("unexpected own status", data[:120], r.status_line))
    assert answered >= N_CASES * 0.7, "only %d of %d fuzz cases got any answer" % (answered, N_CASES)
    assert not problems, "%d problems, first ones:\n%s" % (len(problems), "\n".join(map(repr, problems[:8])))
    r = m.request("GET", "/echo?after-fuzz")
    assert r.status == 200 and r.json()["uri"] == "/echo?after-fuzz"


# ---- HTTP/2: random frame sequences on h2c connections ----

H2_SEED = 20261128
H2_CONNS = int(os.environ.get("MRD_FUZZ_H2_CONNS", "150"))   # more by hand: MRD_FUZZ_H2_CONNS=5000


def _h2_sequence(rng, c):
    """A plausible start (requests, bodies, trailers), then frames with random
    types, flags, stream ids, lengths and payload bytes."""
    import struct as st
    from h2raw import frame
    out = []
    sids = [1, 3, 5, 7]
    for sid in sids[:rng.randint(1, 4)]:
        post = rng.random() < 0.5
        hdrs = [(":method", "POST" if post else "GET"), (":path", "/echo?delay=%d" % rng.choice([0, 0, 50])),
                (":scheme", "http"), (":authority", "t")]
        if rng.random() < 0.3:
            hdrs.append(("content-length", str(rng.randint(0, 20))))
        out.append(frame(1, 0x4 | (0 if post else 0x1), sid, c.header_block(hdrs)))
        if post:
            out.append(frame(0, 0, sid, bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))))
            if rng.random() < 0.3:
                out.append(frame(1, 0x5, sid, c.header_block([("x-sum", str(rng.randint(0, 99)))])))
            else:
                out.append(frame(0, 1, sid, b""))
    for _ in range(rng.randint(1, 12)):
        ftype = rng.choice([0, 1, 2, 3, 4, 6, 7, 8, 9, rng.randrange(256)])
        flags = rng.choice([0, 1, 4, 5, 8, 0x20, 0x25, rng.randrange(256)])
        sid = rng.choice([0, 1, 2, 3, 5, 9, 11, 0x7FFFFFFF, rng.randrange(1 << 31)])
        if ftype == 1 and rng.random() < 0.5:
            payload = c.header_block([(":method", "GET"), (":path", "/"), (":scheme", "http"),
                                      (":authority", "t")])
        elif ftype == 4 and rng.random() < 0.5:
            payload = b"".join(st.pack(">HI", rng.randrange(8), rng.choice([0, 1, 100, 65535, 1 << 31, 16384]))
                               for _ in range(rng.randint(0, 3)))
        else:
            payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 4, 5, 8, 9, 20, 300])))
        data = frame(ftype % 256, flags, sid, payload)
        if rng.random() < 0.1:                    # a lying length field
            data = st.pack(">I", rng.randrange(1 << 24))[1:] + data[3:]
        out.append(data)
    return b"".join(out)


def test_fuzzed_h2_frames(meridian, backend):
    """Seeded random HTTP/2 frame sequences: meridian answers each connection
    with frames, a GOAWAY or a close, never crashes or hangs, and still serves
    a clean HTTP/2 request afterwards."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "h2conformance"))
    from h2raw import H2Raw
    m = meridian.start('listeners: [{address: "127.0.0.1:@PORT@", protocols: [http1, h2c]}]\n'
                       + simple_config([backend.address]))
    rng = random.Random(H2_SEED)
    for i in range(H2_CONNS):
        with H2Raw(m.port, timeout=2.0 * SLOW) as c:
            c.handshake()
            c.send(_h2_sequence(rng, c))
            # drain until the connection goes quiet or closes: no crash, no spin
            while c.recv_frame(0.2 * SLOW) is not None:
                pass
        assert m.alive(), "meridian died on h2 fuzz case %d" % i
    with H2Raw(m.port, timeout=5.0 * SLOW) as c:
        c.handshake()
        c.request(1)
        status, _, _ = c.response(1)
        assert status == 200
