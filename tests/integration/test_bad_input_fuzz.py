"""Random and mutated request heads from a fixed seed, sent raw.

meridian must never crash; every answer is a well-formed HTTP/1.1 response
(usually 4xx), and a request the strict upstream parser rejects must never
have been forwarded (a 400 carrying X-Backend would mean meridian let through
something a strict parser refuses).
"""
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
