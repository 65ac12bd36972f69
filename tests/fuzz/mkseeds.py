#!/usr/bin/python3
"""Seeds for the event-layer targets (fuzz_event.h's input format).

    /usr/bin/python3 tests/fuzz/mkseeds.py     # rewrites the mk-* seeds

fuzz_h2_server: client byte streams of typical exchanges written by a real
HTTP/2 client library (python3-h2: GET, POST with a body, trailers, several
streams, PING, PRIORITY, RST_STREAM, GOAWAY, a big response with window
updates), each chunk the library hands out sent as it came, the loop run in
between. fuzz_h1_conn: the integration tests' kinds of requests (pipelined
GETs, Content-Length and chunked bodies, Expect: 100-continue, a WebSocket
upgrade, bad requests) with several upstream answers.
Inputs of crashes found and fixed are written as corpus/TARGET/regress-*,
so that every run replays them.
"""
import hashlib
import os
import struct

import h2.config
import h2.connection
import h2.events

HERE = os.path.dirname(os.path.abspath(__file__))

RUN = b"\x02"
RELEASE = b"\x06"
UPCLOSE = b"\x07"
READTOG = b"\x08"
SHUTWR = b"\x09"


def SEND(b):
    out = b""
    while b:
        out += b"\x01" + struct.pack("<H", len(b[:65535])) + b[:65535]
        b = b[65535:]
    return out


def ADV(ms):
    return b"\x04" + struct.pack("<H", ms)


# RESP st fr sz fl: st indexes fz_statuses (0 200, 3 204, 6 304, 9 500, 12 101),
# fr: framing 0 CL, 1 chunked, 2 close, 3 CL 0, 4 none | 8 trailers | 16 early
# | 32 hold | 64 abort | 128 interim; sz < 128: 16*sz, else 4096*(sz-128); fl: 1 close
def RESP(st=0, fr=0, sz=2, fl=0):
    return bytes([5, st, fr, sz, fl])


def FRAME(t, f, sid, p):
    return bytes([10, t, f, sid]) + struct.pack("<H", len(p)) + p


def write(target, name, data, d="corpus"):
    path = os.path.join(HERE, d, target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


# ---- HTTP/2 with python3-h2 ----

class H2Prog:
    """records a client conversation as a program: the library's output in
    SEND ops, RUN between exchanges"""

    def __init__(self, flags=0x1):  # bit0: the library writes the preface itself
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.c = h2.connection.H2Connection(config=cfg)
        self.c.initiate_connection()
        self.prog = bytes([flags])
        self.out()

    def out(self):
        b = self.c.data_to_send()
        if b:
            self.prog += SEND(b)
        self.prog += RUN
        return self

    def add(self, ops):
        self.prog += ops
        return self


def hdrs(path="/", method="GET", extra=()):
    return [(":method", method), (":path", path), (":scheme", "http"), (":authority", "a")] + list(extra)


def h2_seeds():
    s = {}
    p = H2Prog()
    p.c.send_headers(1, hdrs(), end_stream=True)
    s["get"] = p.out().prog

    p = H2Prog(0x1 | 0x4)  # auto ACK
    p.c.send_headers(1, hdrs("/p", "POST", [("content-length", "11")]))
    p.c.send_data(1, b"hello world", end_stream=True)
    s["post-cl"] = p.out().prog

    p = H2Prog(0x1 | 0x4)
    p.c.send_headers(1, hdrs("/t", "POST", [("te", "trailers")]))
    p.c.send_data(1, b"x" * 1000)
    p.c.send_headers(1, [("x-trailer", "v"), ("grpc-status", "0")], end_stream=True)
    p.add(RESP(0, 1 | 8, 10))  # chunked response with trailers
    s["post-trailers"] = p.out().prog

    p = H2Prog(0x1 | 0x4)
    for i in range(5):
        p.c.send_headers(1 + 2 * i, hdrs("/s%d" % i), end_stream=True)
    p.add(RESP(0, 0, 20) + RESP(3, 3, 0) + RESP(9, 0, 1) + RESP(0, 1, 40) + RESP(6, 4, 0))
    s["multi"] = p.out().prog

    p = H2Prog(0x1 | 0x4 | 0x8)  # auto window: a 300 KB response flows
    p.c.send_headers(1, hdrs("/big"), end_stream=True)
    p.add(RESP(0, 0, 128 + 75))
    s["big-window"] = p.out().prog

    p = H2Prog(0x1 | 0x4)
    p.c.send_headers(1, hdrs("/big"), end_stream=True)
    p.add(RESP(0, 1, 128 + 40))  # window stays shut: stalls until the client goes
    p.out()
    p.c.increment_flow_control_window(65535)
    p.c.increment_flow_control_window(65535, 1)
    s["big-stall"] = p.out().add(ADV(4000)).prog

    p = H2Prog(0x1 | 0x4)
    p.c.ping(b"12345678")
    p.c.prioritize(1, weight=32, depends_on=0, exclusive=False)
    p.c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
                         h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
    s["ping-settings"] = p.out().prog

    p = H2Prog(0x1 | 0x4)
    p.c.send_headers(1, hdrs("/slow"), end_stream=True)
    p.add(RESP(0, 32, 2))  # held
    p.out()
    p.c.reset_stream(1)
    p.out()
    p.c.send_headers(3, hdrs("/after"), end_stream=True)
    s["rst-held"] = p.out().add(RELEASE + RUN).prog

    p = H2Prog(0x1 | 0x4)
    p.c.send_headers(1, hdrs("/slow"), end_stream=True)
    p.add(RESP(0, 32, 2))  # held past upstream_response: 504
    s["timeout-504"] = p.out().add(ADV(3100)).prog

    p = H2Prog(0x1 | 0x4)
    p.c.send_headers(1, hdrs("/cut"), end_stream=True)
    p.add(RESP(0, 64, 100))  # cut mid-body
    s["cut"] = p.out().prog

    p = H2Prog(0x1 | 0x4)
    p.c.send_headers(1, hdrs("/up", "POST"))
    p.c.send_data(1, b"y" * 16000)
    p.out()
    p.add(UPCLOSE)
    p.c.send_data(1, b"z" * 100, end_stream=True)
    s["upclose-body"] = p.out().prog

    p = H2Prog(0x1 | 0x4)
    p.c.send_headers(1, hdrs(), end_stream=True)
    p.out()
    p.c.close_connection()
    s["goaway"] = p.out().prog

    p = H2Prog(0x1 | 0x4)
    p.c.send_headers(1, hdrs(extra=[("x-big", "v" * 6000), ("cookie", "a=1"), ("cookie", "b=2")]),
                     end_stream=True)
    s["big-headers"] = p.out().add(ADV(1200)).prog  # idle trim after a response

    p = H2Prog(0x1 | 0x4)
    p.c.send_headers(1, hdrs(), end_stream=True)
    s["idle-timeout"] = p.out().add(ADV(1100) + ADV(5100)).prog

    # the ops that build frames (no library)
    s["ops-req-data"] = (bytes([0x4]) + RUN + bytes([13, 0, 2]) + bytes([14, 0, 0]) + struct.pack("<H", 5000)
                         + bytes([14, 0, 1]) + struct.pack("<H", 10) + RUN + bytes([12, 0, 63]) + RUN)
    return s


def h2_regress():
    # the trim() crash: HEADERS (END_STREAM, no END_HEADERS) with a
    # connection field, a CONTINUATION with x-big declaring 16000 value bytes
    # and carrying 1000, idle 1 s (trim), close: nghttp2_rcbuf_decref asserts
    hb = b"\x82\x84\x86\x01\x01x" + b"\x00\x0aconnection\x01x"
    cont = b"\x00\x05x-big" + b"\x7f\x81\x7c" + b"a" * 1000  # 127 + 15873 = 16000
    return bytes([0x4]) + RUN + FRAME(1, 0x1, 1, hb) + RUN + FRAME(9, 0, 1, cont) + RUN + ADV(1100)


# ---- HTTP/1.1 ----

def REQ(v):
    return bytes([10, v])


def h1_seeds():
    s = {}
    s["get"] = b"\x00" + SEND(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") + RUN
    s["pipelined"] = b"\x00" + SEND(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                                    b"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") + RUN
    s["post-cl"] = b"\x00" + SEND(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world") + RUN
    s["post-chunked"] = (b"\x00" + SEND(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
                         + RUN + SEND(b"5\r\nhello\r\n6;ext=1\r\n world\r\n") + RUN
                         + SEND(b"0\r\nX-Trailer: t\r\n\r\n") + RUN)
    s["expect"] = (b"\x00" + SEND(b"PUT /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
                   + RUN + SEND(b"abcde") + RUN)
    s["websocket"] = (b"\x00" + RESP(12) + REQ(7) + RUN + SEND(b"\x81\x05hello") + RUN + SHUTWR + RUN)
    s["bad-cl-te"] = b"\x00" + REQ(14) + RUN
    s["bad-fold"] = b"\x00" + REQ(18) + RUN
    s["bad-garbage"] = b"\x00" + SEND(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03") + RUN
    s["too-big-head"] = b"\x00" + SEND(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n") + RUN
    s["header-timeout"] = b"\x00" + SEND(b"GET / HTTP/1.1\r\nHost:") + ADV(2100)
    s["idle-keepalive"] = b"\x00" + REQ(0) + RUN + ADV(5100)
    s["slow-upstream"] = b"\x00" + RESP(0, 32) + REQ(0) + RUN + ADV(3100) + REQ(0) + RUN
    s["chunked-resp-10"] = b"\x00" + RESP(0, 1 | 8, 100) + REQ(2) + RUN + RESP(0, 2, 50) + REQ(3) + RUN
    s["head-304-204"] = b"\x00" + RESP(0, 0, 10) + REQ(8) + RESP(6, 4) + REQ(0) + RESP(3, 3) + REQ(0) + RUN
    s["big-body"] = (b"\x00" + REQ(13) + bytes([11]) + struct.pack("<H", 65535) + RUN + bytes([11])
                     + struct.pack("<H", 4465) + RUN)
    s["big-resp-noread"] = b"\x00" + RESP(0, 0, 128 + 100) + READTOG + REQ(0) + RUN + ADV(5100) + READTOG + RUN
    s["early-413"] = b"\x00" + RESP(9, 16) + REQ(4) + RUN + REQ(0) + RUN
    s["interim"] = b"\x00" + RESP(0, 128, 4) + REQ(6) + RUN + SEND(b"abcde") + RUN
    s["cut"] = b"\x00" + RESP(0, 64, 50) + REQ(0) + RUN + REQ(0) + RUN
    s["abs-options"] = b"\x00" + REQ(10) + REQ(9) + REQ(17) + RUN
    s["trickle"] = b"\x00" + bytes([14, 16]) + RUN
    s["h2c-sniff"] = b"\x01" + REQ(15) + SEND(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00") + RUN
    s["connect-405"] = b"\x00" + REQ(11) + RUN
    s["retry-refused"] = b"\x00" + bytes([13, 7, 0]) + RUN
    return s


def main():
    for name, data in h2_seeds().items():
        write("fuzz_h2_server", "mk-" + name, data)
    for name, data in h1_seeds().items():
        write("fuzz_h1_conn", "mk-" + name, data)
    write("fuzz_h2_server", "regress-trim-rcbuf-assert", h2_regress())


if __name__ == "__main__":
    main()
