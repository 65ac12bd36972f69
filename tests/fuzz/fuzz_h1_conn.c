/*
 * fuzz_h1_conn.c: meridian's HTTP/1.1 downstream connection (conn.c) from
 * arbitrary client bytes: pipelining, Content-Length and chunked bodies,
 * Expect: 100-continue, upgrades (a 101 from the upstream turns it into an
 * echo tunnel), errors, lingering close and timeouts on a virtual clock,
 * with real requests (proxy.c) to an in-process upstream whose answers the
 * input chooses (RESP op). Harness and input format: fuzz_event.h; here:
 *
 *   flags byte: bit0 accept on the [http1, h2c] listener (else [http1])
 *
 *   op 10 REQ     v:u8       a canned request (reqs[v % N], below)
 *   op 11 BODY    n:u16le    n body bytes ('b')
 *   op 12 CHUNK   n:u16le    one chunk of n bytes ("%x\r\n" data "\r\n"; n 0: "0\r\n\r\n")
 *   op 13 PIPE    k:u8 v:u8  k % 8 + 1 copies of reqs[v % N] in one write
 *   op 14 TRICKLE v:u8       reqs[v % N] one byte at a time, the loop run after each
 */
#define FZ_LISTENER(flags) ((flags) & 1)
#include "fuzz_event.h"

static const char *const reqs[] = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
    "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET http://b:8/abs HTTP/1.1\r\nHost: a\r\n\r\n",
    "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST /l HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: v\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 81.2.69.142\r\nX-Request-Id: abc\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
};

static void
fz_target_recv(const uint8_t *p, size_t n)
{
}

static void
fz_target_begin(unsigned flags, struct fz_in *in)
{
}

static const char *
req_at(unsigned v)
{
    return reqs[v % MRD_ARRAY_LEN(reqs)];
}

static void
fz_target_op(unsigned op, struct fz_in *in)
{
    static char fill[65536];
    char hex[16];
    const char *r;
    size_t n;

    if (fill[0] == 0)
        memset(fill, 'b', sizeof(fill));
    switch (op) {
    case 10:
        r = req_at(fz_u8(in));
        fz_client_send(r, strlen(r));
        break;
    case 11:
        fz_client_send(fill, fz_u16(in));
        break;
    case 12:
        n = fz_u16(in);
        if (n == 0) {
            fz_client_send("0\r\n\r\n", 5);
            break;
        }
        snprintf(hex, sizeof(hex), "%zx\r\n", n);
        fz_client_send(hex, strlen(hex));
        fz_client_send(fill, n);
        fz_client_send("\r\n", 2);
        break;
    case 13: {
        unsigned k = fz_u8(in) % 8 + 1;
        r = req_at(fz_u8(in));
        struct evbuffer *b = evbuffer_new();
        for (unsigned i = 0; i < k; i++)
            evbuffer_add(b, r, strlen(r));
        n = evbuffer_get_length(b);
        fz_client_send(evbuffer_pullup(b, -1), n);
        evbuffer_free(b);
        break;
    }
    case 14:
        r = req_at(fz_u8(in));
        for (size_t i = 0; r[i] != 0; i++) {
            fz_client_send(r + i, 1);
            fz_run();
        }
        break;
    }
}

static void
fz_target_end(void)
{
}
