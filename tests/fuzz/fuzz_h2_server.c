/*
 * fuzz_h2_server.c: meridian's HTTP/2 server side from arbitrary client
 * bytes: a real nghttp2 session with h2.c's callbacks and allocator
 * (including the idle trim), real requests (proxy.c) to an in-process
 * upstream, timers driven by a virtual clock. The connection arrives on an
 * h2c listener through conn.c's preface sniffing. Harness and input format:
 * fuzz_event.h; this file adds:
 *
 *   flags byte: bit0 no client preface at all; bit1 the magic only (no
 *   SETTINGS frame after it); bit2 the client ACKs every SETTINGS meridian
 *   sends; bit3 the client gives back (WINDOW_UPDATE, stream and
 *   connection) every DATA frame it receives.
 *
 *   op 10 FRAME  type:u8 flags:u8 sid:u8 len:u16le payload  any frame (length from what the input has)
 *   op 11 ACK                                               SETTINGS with ACK
 *   op 12 WINDOW sid:u8 k:u8                                WINDOW_UPDATE of (k+1)*1024 (k 255: 2^31-1)
 *   op 13 REQ    sid:u8 v:u8                                HEADERS on stream 2*sid+1 (v: see req())
 *   op 14 DATA   sid:u8 flags:u8 len:u16le                  DATA of len % 16385 zero bytes on stream 2*sid+1
 */
#define FZ_LISTENER(flags) 1
#include "fuzz_event.h"

#define F_NO_PREFACE 1
#define F_MAGIC_ONLY 2
#define F_AUTO_ACK 4
#define F_AUTO_WINDOW 8

static unsigned h2_flags;
static uint8_t rx_hd[9];
static size_t rx_have, rx_skip;

static void
frame(struct evbuffer *b, unsigned type, unsigned flags, uint32_t sid, const void *p, size_t n)
{
    uint8_t hd[9] = {(uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n, (uint8_t)type, (uint8_t)flags,
                     (uint8_t)(sid >> 24 & 0x7f), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
    evbuffer_add(b, hd, 9);
    if (n > 0)
        evbuffer_add(b, p, n);
}

static void
send_frame(unsigned type, unsigned flags, uint32_t sid, const void *p, size_t n)
{
    struct evbuffer *b = evbuffer_new();
    frame(b, type, flags, sid, p, n);
    size_t len = evbuffer_get_length(b);
    fz_client_send(evbuffer_pullup(b, -1), len);
    evbuffer_free(b);
}

static void
window_update(struct evbuffer *b, uint32_t sid, uint32_t incr)
{
    uint8_t v[4] = {(uint8_t)(incr >> 24 & 0x7f), (uint8_t)(incr >> 16), (uint8_t)(incr >> 8), (uint8_t)incr};
    frame(b, 8, 0, sid, v, 4);
}

/* the client's view of meridian's frames, for the automatic answers; those
 * are queued only (they leave with the next pump) */
static void
fz_target_recv(const uint8_t *p, size_t n)
{
    if (!(h2_flags & (F_AUTO_ACK | F_AUTO_WINDOW)))
        return;
    while (n > 0) {
        if (rx_skip > 0) {
            size_t k = n < rx_skip ? n : rx_skip;
            p += k;
            n -= k;
            rx_skip -= k;
            continue;
        }
        rx_hd[rx_have++] = *p++;
        n--;
        if (rx_have < 9)
            continue;
        rx_have = 0;
        rx_skip = (size_t)rx_hd[0] << 16 | (size_t)rx_hd[1] << 8 | rx_hd[2];
        uint32_t sid = ((uint32_t)rx_hd[5] & 0x7f) << 24 | (uint32_t)rx_hd[6] << 16 | (uint32_t)rx_hd[7] << 8 | rx_hd[8];
        if (rx_hd[3] == 4 && !(rx_hd[4] & 1) && (h2_flags & F_AUTO_ACK))
            frame(fz_cout, 4, 1, 0, NULL, 0);
        if (rx_hd[3] == 0 && rx_skip > 0 && (h2_flags & F_AUTO_WINDOW)) {
            window_update(fz_cout, 0, (uint32_t)rx_skip);
            window_update(fz_cout, sid, (uint32_t)rx_skip);
        }
    }
}

static void
fz_target_begin(unsigned flags, struct fz_in *in)
{
    h2_flags = flags;
    rx_have = rx_skip = 0;
    if (flags & F_NO_PREFACE)
        return;
    fz_client_send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    if (!(flags & F_MAGIC_ONLY))
        send_frame(4, 0, 0, NULL, 0);
}

/* HPACK (no Huffman, nothing indexed but what v asks) of a request head */
static void
req(unsigned sid, unsigned v)
{
    struct evbuffer *b = evbuffer_new();
    unsigned flags = 0x4; /* END_HEADERS */

    evbuffer_add(b, (v & 2) ? "\x83" : "\x82", 1); /* :method POST / GET */
    if (v & 64)
        evbuffer_add(b, "\x04\x07/p?q=12", 9);     /* :path, literal */
    else
        evbuffer_add(b, "\x84", 1);                /* :path / */
    evbuffer_add(b, "\x86", 1);                    /* :scheme http */
    evbuffer_add(b, "\x01\x01x", 3);               /* :authority x */
    if (v & 4)
        evbuffer_add(b, "\x0f\x0d\x02" "10", 5);   /* content-length: 10 */
    if (v & 8)
        evbuffer_add(b, "\x00\x02te\x08trailers", 13);
    if (v & 16)
        evbuffer_add(b, "\x00\x0a" "connection\x01x", 14); /* malformed */
    if (v & 128)
        evbuffer_add(b, "\x40\x03x-i\x01v", 7);    /* incremental indexing: dynamic table */
    if (v & 1)
        flags |= 0x1; /* END_STREAM */
    if (v & 32)
        flags &= ~0x4u; /* CONTINUATION frames to follow (op FRAME) */
    size_t n = evbuffer_get_length(b);
    send_frame(1, flags, 2 * sid + 1, evbuffer_pullup(b, -1), n);
    evbuffer_free(b);
}

static void
fz_target_op(unsigned op, struct fz_in *in)
{
    static uint8_t zeros[16384];
    unsigned a, b, c;
    size_t n, got;
    const uint8_t *p;

    switch (op) {
    case 10:
        a = fz_u8(in);
        b = fz_u8(in);
        c = fz_u8(in);
        n = fz_u16(in);
        p = fz_bytes(in, n, &got);
        send_frame(a, b, c, p, got);
        break;
    case 11:
        send_frame(4, 1, 0, NULL, 0);
        break;
    case 12: {
        struct evbuffer *e = evbuffer_new();
        a = fz_u8(in);
        b = fz_u8(in);
        window_update(e, a == 0 ? 0 : 2 * a - 1, b == 255 ? 0x7fffffffu : (b + 1) * 1024u);
        n = evbuffer_get_length(e);
        fz_client_send(evbuffer_pullup(e, -1), n);
        evbuffer_free(e);
        break;
    }
    case 13:
        a = fz_u8(in);
        req(a, fz_u8(in));
        break;
    case 14:
        a = fz_u8(in);
        b = fz_u8(in);
        n = fz_u16(in) % 16385;
        send_frame(0, b, 2 * a + 1, zeros, n);
        break;
    }
}

static void
fz_target_end(void)
{
}
