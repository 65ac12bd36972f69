/*
 * backend.c: mrd-backend, a small fast HTTP/1.1 upstream for meridian's tests,
 * demos and benchmarks.
 *
 * It speaks HTTP/1.1 itself on top of libevent bufferevents instead of using
 * evhttp, for three reasons: accepted and closed TCP connections are counted
 * exactly (the proxy tests read /stats to prove upstream keep-alive reuse),
 * request bodies are hashed while streaming (a 100 MiB upload is never held in
 * memory), and per-request cost stays low so the backend does not dominate
 * benchmark CPU. It is single-threaded and never logs per request. It is a test
 * tool, not a general server: it accepts what a sane client or proxy sends and
 * answers 400 and closes on anything else.
 *
 *   mrd-backend -l ADDR:PORT [-l ...] [-n NAME] [-q]
 *
 * Routes: GET /healthz, POST /admin/health?state=up|down, POST /admin/delay?ms=N
 * (added to every later answer except the admin routes and /stats), GET /stats, /echo.
 * Query parameters on any path: status=N delay=MS size=N chunked=1 close=1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#define MAX_HEAD_BYTES   65536          /* request line + headers */
#define MAX_HEADERS      128
#define READ_HIGH_WM     (1u << 20)     /* stop reading while this much input is unparsed */
#define STREAM_PIECE     65536          /* size=N bodies are queued this much at a time */
#define STREAM_LOW_WM    (256u << 10)   /* refill the stream when output drops below this */
#define MAX_LISTENERS    16

/* ------------------------------------------------------------------------ */
/* process state                                                              */

static struct {
    struct event_base *base;
    const char *name;
    bool quiet;
    bool healthy;
    uint64_t delay_ms;       /* POST /admin/delay: added to every answer */
    uint64_t requests;       /* requests answered so far (X-Request-Count) */
    uint64_t connections;    /* TCP connections accepted */
    uint64_t active;         /* TCP connections currently open */
} g = {.name = "backend", .healthy = true};

static char filler[STREAM_PIECE];    /* 'x' * STREAM_PIECE, referenced, never copied */

enum state {
    ST_HEAD,          /* waiting for a complete request head */
    ST_BODY_CL,       /* reading a Content-Length body */
    ST_CHUNK_SIZE,    /* reading a chunk-size line */
    ST_CHUNK_DATA,    /* reading chunk data */
    ST_CHUNK_CRLF,    /* reading the CRLF after chunk data */
    ST_TRAILER,       /* reading trailer lines up to the empty one */
    ST_RESPOND,       /* request read; response delayed or streaming */
    ST_CLOSING,       /* last response queued; close once it is written */
    ST_LINGER,        /* written and shut down for writing; discarding input */
};

#define LINGER_MS 1000    /* at most this long in ST_LINGER */

struct span {
    uint32_t off, len;
};

/* owned by: the event loop; freed in conn_free() only */
struct conn {
    struct bufferevent *bev;
    struct event *timer;         /* delay=MS; created on first use */
    enum state state;

    /* the current request: a private copy of its head, with spans into it */
    char *head;
    size_t head_cap;
    struct span method, target, path;
    struct span hname[MAX_HEADERS], hvalue[MAX_HEADERS];
    int nheaders;
    int minor;                   /* HTTP/1.minor */
    bool keepalive;              /* after this response */
    bool is_echo, is_head;
    uint64_t body_left;          /* of a Content-Length body or of a chunk */
    uint64_t body_bytes;
    uint64_t body_fnv;

    /* the response being sent */
    struct evbuffer *pending;    /* head (and body unless streamed), held during delay */
    uint64_t stream_left;        /* bytes of 'x' still to queue */
    bool stream_chunked;
};

static void process(struct conn *c);

/* ------------------------------------------------------------------------ */
/* small pure helpers                                                         */

static bool
span_eq(const struct conn *c, struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(c->head + s.off, lit, n) == 0;
}

static bool
span_ieq(const struct conn *c, struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(c->head + s.off, lit, n) == 0;
}

/* Case-insensitive search for token in a comma-separated header value. */
static bool
has_token(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tl && strncasecmp(v + start, token, tl) == 0)
            return true;
    }
    return false;
}

/* Parses a decimal number; returns -1 on anything else or on overflow. */
static int
parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Finds query parameter key in the target; sets *v, *vlen. */
static bool
query_param(const struct conn *c, const char *key, const char **v, size_t *vlen)
{
    const char *t = c->head + c->target.off;
    const char *end = t + c->target.len;
    const char *q = memchr(t, '?', c->target.len);
    size_t kl = strlen(key);
    if (q == NULL)
        return false;
    for (const char *p = q + 1; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        if ((size_t)(ke - p) == kl && memcmp(p, key, kl) == 0) {
            *v = eq ? eq + 1 : pe;
            *vlen = (size_t)(pe - *v);
            return true;
        }
        p = pe + 1;
    }
    return false;
}

static bool
query_u64(const struct conn *c, const char *key, uint64_t *out)
{
    const char *v;
    size_t vl;
    return query_param(c, key, &v, &vl) && parse_u64(v, vl, out) == 0;
}

static bool
query_flag(const struct conn *c, const char *key)
{
    const char *v;
    size_t vl;
    if (!query_param(c, key, &v, &vl))
        return false;
    return !(vl == 0 || (vl == 1 && v[0] == '0') || (vl == 5 && memcmp(v, "false", 5) == 0));
}

static void
fnv_update(uint64_t *h, const unsigned char *p, size_t n)
{
    uint64_t x = *h;
    for (size_t i = 0; i < n; i++) {
        x ^= p[i];
        x *= 0x100000001b3ULL;
    }
    *h = x;
}

static void
json_str(struct evbuffer *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    evbuffer_add(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f)
            continue;
        evbuffer_add(out, s + run, i - run);
        run = i + 1;
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            evbuffer_add(out, e, 2);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            evbuffer_add(out, e, 6);
        }
    }
    evbuffer_add(out, s + run, len - run);
    evbuffer_add(out, "\"", 1);
}

static const char *
reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default:  return "Status";
    }
}

/*
 * Parses the head in c->head[0..len) (ending in CRLFCRLF) into spans.
 * Returns 0, or the status to answer with before closing.
 */
static int
parse_head(struct conn *c, size_t len)
{
    char *h = c->head;
    char *end = h + len;
    char *eol = memchr(h, '\n', len);
    char *sp1, *sp2;

    if (eol == NULL || eol == h || eol[-1] != '\r')
        return 400;
    sp1 = memchr(h, ' ', (size_t)(eol - h));
    if (sp1 == NULL || sp1 == h)
        return 400;
    sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (sp2 == NULL || sp2 == sp1 + 1 || eol - 1 - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return 400;
    if (sp2[8] != '0' && sp2[8] != '1')
        return 400;
    c->minor = sp2[8] - '0';
    c->method = (struct span){0, (uint32_t)(sp1 - h)};
    c->target = (struct span){(uint32_t)(sp1 + 1 - h), (uint32_t)(sp2 - sp1 - 1)};
    {
        const char *q = memchr(sp1 + 1, '?', c->target.len);
        c->path = (struct span){c->target.off, q ? (uint32_t)(q - (sp1 + 1)) : c->target.len};
    }

    c->nheaders = 0;
    for (char *p = eol + 1; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *colon, *vs, *ve;
        if (nl == NULL || nl == p || nl[-1] != '\r')
            return 400;
        if (nl == p + 1)            /* the empty line */
            break;
        if (*p == ' ' || *p == '\t')
            return 400;             /* obsolete line folding */
        if (c->nheaders == MAX_HEADERS)
            return 431;
        colon = memchr(p, ':', (size_t)(nl - p));
        if (colon == NULL || colon == p)
            return 400;
        for (char *k = p; k < colon; k++)
            if (*k == ' ' || *k == '\t')
                return 400;
        vs = colon + 1;
        ve = nl - 1;
        while (vs < ve && (*vs == ' ' || *vs == '\t'))
            vs++;
        while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        c->hname[c->nheaders] = (struct span){(uint32_t)(p - h), (uint32_t)(colon - p)};
        c->hvalue[c->nheaders] = (struct span){(uint32_t)(vs - h), (uint32_t)(ve - vs)};
        c->nheaders++;
        p = nl + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* connection lifetime and response output                                    */

static void
conn_free(struct conn *c)
{
    if (c->timer != NULL)
        event_free(c->timer);
    bufferevent_free(c->bev);
    evbuffer_free(c->pending);
    free(c->head);
    free(c);
    g.active--;
}

/*
 * Queues more of a size=N body; after the last piece the exchange is over and
 * the state becomes ST_HEAD or ST_CLOSING. The caller resumes parsing, so that
 * pipelined requests never recurse through here.
 */
static void
stream_more(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (c->stream_left > 0 && evbuffer_get_length(out) < STREAM_LOW_WM * 2) {
        size_t n = c->stream_left < STREAM_PIECE ? (size_t)c->stream_left : STREAM_PIECE;
        if (c->stream_chunked)
            evbuffer_add_printf(out, "%zx\r\n", n);
        evbuffer_add_reference(out, filler, n, NULL, NULL);
        if (c->stream_chunked)
            evbuffer_add(out, "\r\n", 2);
        c->stream_left -= n;
    }
    if (c->stream_left > 0)
        return;
    if (c->stream_chunked) {
        evbuffer_add(out, "0\r\n\r\n", 5);
        c->stream_chunked = false;
    }
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    c->state = c->keepalive ? ST_HEAD : ST_CLOSING;
}

/*
 * Sends the held response (now, or when the delay timer fires). When nothing is
 * queued, it is written to the socket at once: going through the bufferevent
 * would arm and disarm the write event, two epoll_ctl calls per response.
 * Whatever the socket does not take is left to the bufferevent.
 */
static void
send_pending(struct conn *c)
{
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        while (evbuffer_get_length(c->pending) > 0 && evbuffer_write(c->pending, fd) > 0)
            ;
    }
    if (evbuffer_get_length(c->pending) > 0)
        bufferevent_write_buffer(c->bev, c->pending);
    if (c->stream_left > 0) {
        c->state = ST_RESPOND;
        bufferevent_setwatermark(c->bev, EV_WRITE, STREAM_LOW_WM, 0);
        stream_more(c);
        return;
    }
    if (c->stream_chunked) {
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
        c->stream_chunked = false;
    }
    if (!c->keepalive) {
        c->state = ST_CLOSING;
        return;
    }
    c->state = ST_HEAD;
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->state == ST_LINGER) {
        conn_free(c);
        return;
    }
    send_pending(c);
    process(c);
}

/*
 * The last response is written. Closing now could make the kernel answer
 * input the client is still sending (a rejected body, pipelined requests) with
 * a reset that destroys the response before the client reads it, so shut down
 * our side and discard input until the client closes or LINGER_MS pass.
 */
static void
close_gracefully(struct conn *c)
{
    struct timeval tv = {.tv_sec = LINGER_MS / 1000, .tv_usec = (LINGER_MS % 1000) * 1000};
    if (shutdown(bufferevent_getfd(c->bev), SHUT_WR) == -1) {
        conn_free(c);
        return;
    }
    c->state = ST_LINGER;
    evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
    if (c->timer == NULL)
        c->timer = evtimer_new(g.base, on_timer, c);
    evtimer_add(c->timer, &tv);
}

/*
 * Builds the response for a fully read request into c->pending (the body too,
 * except for size=N bodies, which stream_more() queues in pieces).
 * status_override != 0 answers a framing error with that status and closes.
 */
static void
build_response(struct conn *c, int status_override)
{
    struct evbuffer *body = evbuffer_new();
    struct evbuffer *out = c->pending;
    uint64_t status = 200, delay_ms = 0, size = 0;
    bool have_size = false, chunked = false, no_body;
    const char *ctype = "text/plain";

    g.requests++;
    if (status_override != 0) {
        status = (uint64_t)status_override;
        c->keepalive = false;
        evbuffer_add_printf(body, "%s\n", reason(status_override));
        goto emit;
    }

    if (span_eq(c, c->path, "/healthz")) {
        status = g.healthy ? 200 : 503;
        evbuffer_add(body, g.healthy ? "ok\n" : "down\n", g.healthy ? 3 : 5);
    } else if (span_eq(c, c->path, "/admin/health")) {
        const char *v;
        size_t vl;
        if (!span_eq(c, c->method, "POST")) {
            status = 405;
            evbuffer_add(body, "use POST\n", 9);
        } else if (query_param(c, "state", &v, &vl) && vl == 2 && memcmp(v, "up", 2) == 0) {
            g.healthy = true;
            evbuffer_add(body, "up\n", 3);
        } else if (query_param(c, "state", &v, &vl) && vl == 4 && memcmp(v, "down", 4) == 0) {
            g.healthy = false;
            evbuffer_add(body, "down\n", 5);
        } else {
            status = 400;
            evbuffer_add(body, "state=up|down\n", 14);
        }
    } else if (span_eq(c, c->path, "/admin/delay")) {
        uint64_t ms;
        if (!span_eq(c, c->method, "POST")) {
            status = 405;
            evbuffer_add(body, "use POST\n", 9);
        } else if (query_u64(c, "ms", &ms)) {
            g.delay_ms = ms;
            evbuffer_add_printf(body, "delay %" PRIu64 "\n", ms);
        } else {
            status = 400;
            evbuffer_add(body, "ms=N\n", 5);
        }
    } else if (span_eq(c, c->path, "/stats")) {
        ctype = "application/json";
        evbuffer_add(body, "{\"name\":", 8);
        json_str(body, g.name, strlen(g.name));
        evbuffer_add_printf(body, ",\"connections\":%" PRIu64 ",\"active\":%" PRIu64 ",\"requests\":%" PRIu64 "}\n",
                            g.connections, g.active, g.requests);
    } else if (c->is_echo) {
        ctype = "application/json";
        evbuffer_add(body, "{\"method\":", 10);
        json_str(body, c->head + c->method.off, c->method.len);
        evbuffer_add(body, ",\"uri\":", 7);
        json_str(body, c->head + c->target.off, c->target.len);
        evbuffer_add_printf(body, ",\"version\":\"HTTP/1.%d\",\"headers\":[", c->minor);
        for (int i = 0; i < c->nheaders; i++) {
            evbuffer_add(body, i ? ",[" : "[", i ? 2 : 1);
            json_str(body, c->head + c->hname[i].off, c->hname[i].len);
            evbuffer_add(body, ",", 1);
            json_str(body, c->head + c->hvalue[i].off, c->hvalue[i].len);
            evbuffer_add(body, "]", 1);
        }
        evbuffer_add_printf(body, "],\"body_bytes\":%" PRIu64 ",\"body_fnv\":\"%016" PRIx64 "\"}\n", c->body_bytes,
                            c->body_fnv);
    } else if (query_u64(c, "size", &size)) {
        have_size = true;
    } else {
        evbuffer_add_printf(body, "%s\n", g.name);
    }

    {
        uint64_t st;
        if (query_u64(c, "status", &st)) {
            if (st >= 200 && st <= 599)
                status = st;
        }
    }
    query_u64(c, "delay", &delay_ms);
    if (!span_eq(c, c->path, "/admin/delay") && !span_eq(c, c->path, "/admin/health") &&
        !span_eq(c, c->path, "/stats"))
        delay_ms += g.delay_ms;
    chunked = query_flag(c, "chunked") && c->minor == 1;
    if (query_flag(c, "close"))
        c->keepalive = false;

emit:
    no_body = c->is_head || status == 204 || status == 304;
    evbuffer_add_printf(out, "HTTP/1.%d %d %s\r\nX-Backend: %s\r\nX-Request-Count: %" PRIu64 "\r\nContent-Type: %s\r\n",
                        c->minor, (int)status, reason((int)status), g.name, g.requests, ctype);
    if (!c->keepalive)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (c->minor == 0)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    if (status != 204 && status != 304) {
        if (chunked)
            evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
        else
            evbuffer_add_printf(out, "Content-Length: %" PRIu64 "\r\n",
                                have_size ? size : (uint64_t)evbuffer_get_length(body));
    }
    evbuffer_add(out, "\r\n", 2);
    if (!no_body) {
        if (have_size) {
            c->stream_left = size;
            c->stream_chunked = chunked;
        } else if (chunked) {
            size_t n = evbuffer_get_length(body);
            if (n > 0) {
                evbuffer_add_printf(out, "%zx\r\n", n);
                evbuffer_add_buffer(out, body);
                evbuffer_add(out, "\r\n", 2);
            }
            c->stream_chunked = true;     /* the last-chunk is added when sent */
        } else {
            evbuffer_add_buffer(out, body);
        }
    }
    evbuffer_free(body);

    c->state = ST_RESPOND;
    if (delay_ms > 0) {
        struct timeval tv = {.tv_sec = (time_t)(delay_ms / 1000), .tv_usec = (suseconds_t)(delay_ms % 1000) * 1000};
        if (c->timer == NULL)
            c->timer = evtimer_new(g.base, on_timer, c);
        evtimer_add(c->timer, &tv);
        return;
    }
    send_pending(c);
}

/* Answers a malformed request with status and closes after writing. */
static void
fail(struct conn *c, int status)
{
    if (c->minor < 0)
        c->minor = 1;
    c->nheaders = 0;
    c->is_head = false;
    c->is_echo = false;
    evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
    build_response(c, status);
}

/* ------------------------------------------------------------------------ */
/* request reading                                                            */

/* A request head has been copied to c->head; decide framing and go on. */
static int
start_request(struct conn *c, size_t head_len)
{
    int err = parse_head(c, head_len);
    bool te_chunked = false, have_cl = false, close_req = false, keepalive_req = false, expect = false;
    uint64_t cl = 0;

    if (err != 0)
        return err;
    for (int i = 0; i < c->nheaders; i++) {
        struct span n = c->hname[i], v = c->hvalue[i];
        const char *vp = c->head + v.off;
        if (span_ieq(c, n, "Content-Length")) {
            uint64_t x;
            if (parse_u64(vp, v.len, &x) != 0 || (have_cl && x != cl))
                return 400;
            have_cl = true;
            cl = x;
        } else if (span_ieq(c, n, "Transfer-Encoding")) {
            if (!(v.len == 7 && strncasecmp(vp, "chunked", 7) == 0))
                return 400;      /* only plain "chunked" is understood */
            te_chunked = true;
        } else if (span_ieq(c, n, "Connection")) {
            close_req |= has_token(vp, v.len, "close");
            keepalive_req |= has_token(vp, v.len, "keep-alive");
        } else if (span_ieq(c, n, "Expect")) {
            expect = v.len == 12 && strncasecmp(vp, "100-continue", 12) == 0;
        }
    }
    if (te_chunked && have_cl)
        return 400;

    c->keepalive = c->minor == 1 ? !close_req : keepalive_req && !close_req;
    c->is_head = span_eq(c, c->method, "HEAD");
    c->is_echo = span_eq(c, c->path, "/echo");
    c->body_bytes = 0;
    c->body_fnv = 0xcbf29ce484222325ULL;

    if (expect && c->minor == 1 && (te_chunked || cl > 0))
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (te_chunked) {
        c->state = ST_CHUNK_SIZE;
    } else if (cl > 0) {
        c->state = ST_BODY_CL;
        c->body_left = cl;
    } else {
        build_response(c, 0);
    }
    return 0;
}

/* Consumes up to c->body_left body bytes from in; returns bytes taken. */
static size_t
take_body(struct conn *c, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
    if (n == 0)
        return 0;
    if (c->is_echo) {
        struct evbuffer_iovec v[16];
        size_t left = n;
        while (left > 0) {
            int k = evbuffer_peek(in, (ev_ssize_t)left, NULL, v, 16);
            size_t done = 0;
            for (int i = 0; i < k && i < 16 && done < left; i++) {
                size_t m = v[i].iov_len < left - done ? v[i].iov_len : left - done;
                fnv_update(&c->body_fnv, v[i].iov_base, m);
                done += m;
            }
            evbuffer_drain(in, done);
            left -= done;
        }
    } else {
        evbuffer_drain(in, n);
    }
    c->body_left -= n;
    c->body_bytes += n;
    return n;
}

/* Runs the request state machine over buffered input until it needs more. */
static void
process_input(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    for (;;) {
        switch (c->state) {
        case ST_HEAD: {
            size_t avail = evbuffer_get_length(in);
            struct evbuffer_ptr p;
            size_t head_len;
            int err;
            if (avail == 0)
                return;
            /* tolerate empty lines before a request (RFC 9112 2.2) */
            {
                unsigned char *b = evbuffer_pullup(in, 1);
                if (b[0] == '\r' || b[0] == '\n') {
                    evbuffer_drain(in, 1);
                    continue;
                }
            }
            p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
            if (p.pos == -1) {
                if (avail > MAX_HEAD_BYTES) {
                    c->minor = 1;
                    fail(c, 431);
                }
                return;
            }
            head_len = (size_t)p.pos + 4;
            if (head_len > MAX_HEAD_BYTES) {
                c->minor = 1;
                fail(c, 431);
                return;
            }
            if (head_len > c->head_cap) {
                free(c->head);
                c->head_cap = head_len < 1024 ? 1024 : head_len;
                c->head = malloc(c->head_cap);
                if (c->head == NULL)
                    abort();
            }
            evbuffer_remove(in, c->head, head_len);
            c->minor = -1;
            err = start_request(c, head_len);
            if (err != 0) {
                fail(c, err);
                return;
            }
            break;
        }
        case ST_BODY_CL:
            take_body(c, in);
            if (c->body_left > 0)
                return;
            build_response(c, 0);
            break;
        case ST_CHUNK_SIZE: {
            size_t len;
            char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT);
            uint64_t sz = 0;
            size_t i = 0;
            if (line == NULL) {
                if (evbuffer_get_length(in) > 4096)
                    fail(c, 400);
                return;
            }
            for (; i < len && i < 16; i++) {
                char ch = line[i];
                int d = ch >= '0' && ch <= '9' ? ch - '0'
                      : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                      : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
                if (d < 0)
                    break;
                sz = sz * 16 + (uint64_t)d;
            }
            if (i == 0 || (i < len && line[i] != ';' && line[i] != ' ' && line[i] != '\t')) {
                free(line);
                fail(c, 400);
                return;
            }
            free(line);
            c->body_left = sz;
            c->state = sz == 0 ? ST_TRAILER : ST_CHUNK_DATA;
            break;
        }
        case ST_CHUNK_DATA:
            take_body(c, in);
            if (c->body_left > 0)
                return;
            c->state = ST_CHUNK_CRLF;
            break;
        case ST_CHUNK_CRLF: {
            unsigned char *b;
            if (evbuffer_get_length(in) < 2)
                return;
            b = evbuffer_pullup(in, 2);
            if (b[0] != '\r' || b[1] != '\n') {
                fail(c, 400);
                return;
            }
            evbuffer_drain(in, 2);
            c->state = ST_CHUNK_SIZE;
            break;
        }
        case ST_TRAILER: {
            size_t len;
            char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT);
            if (line == NULL) {
                if (evbuffer_get_length(in) > MAX_HEAD_BYTES)
                    fail(c, 431);
                return;
            }
            free(line);
            if (len == 0)
                build_response(c, 0);
            break;
        }
        case ST_RESPOND:
        case ST_CLOSING:
            return;         /* pipelined input waits for the response */
        case ST_LINGER:
            evbuffer_drain(in, evbuffer_get_length(in));
            return;
        }
    }
}

/*
 * Parses what input there is and frees the connection when its last response
 * is fully written. Callers must not touch c afterwards.
 */
static void
process(struct conn *c)
{
    process_input(c);
    if (c->state == ST_CLOSING && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        close_gracefully(c);
}

/* ------------------------------------------------------------------------ */
/* bufferevent callbacks, in event order                                      */

static void
on_read(struct bufferevent *bev, void *arg)
{
    process(arg);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state == ST_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            close_gracefully(c);
        return;
    }
    if (c->state == ST_RESPOND && c->stream_left > 0 && (c->timer == NULL || !evtimer_pending(c->timer, NULL))) {
        stream_more(c);
        if (c->state != ST_RESPOND)
            process(c);
    }
}

/*
 * An error closes at once. EOF (the client may have half-closed after its last
 * request) lets a response already read finish first, then closes.
 */
static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if ((what & BEV_EVENT_ERROR) || !(what & BEV_EVENT_EOF) || c->state == ST_LINGER) {
        conn_free(c);
        return;
    }
    c->keepalive = false;
    if (c->state == ST_RESPOND)
        return;         /* becomes ST_CLOSING when the response is queued */
    if (c->state == ST_HEAD && evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        c->state = ST_CLOSING;
        return;
    }
    if (c->state != ST_CLOSING || evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(c);
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct conn *c = calloc(1, sizeof(*c));
    int one = 1;

    if (c == NULL) {
        evutil_closesocket(fd);
        return;
    }
    g.connections++;
    g.active++;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->bev = bufferevent_socket_new(g.base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->pending = evbuffer_new();
    if (c->bev == NULL || c->pending == NULL)
        abort();
    c->state = ST_HEAD;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH_WM);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
on_accept_error(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends: keep serving what is open, try again later */
    if (!g.quiet)
        fprintf(stderr, "mrd-backend: accept: %s\n", evutil_socket_error_to_string(err));
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(g.base);
}

/* ------------------------------------------------------------------------ */
/* startup                                                                    */

/* Parses "1.2.3.4:80" or "[::1]:80" into ss; keeps the printable host. */
static int
parse_listen(const char *arg, struct sockaddr_storage *ss, socklen_t *sslen, char *host, size_t hostsz)
{
    const char *colon;
    size_t hl;
    char *end;
    long port;

    memset(ss, 0, sizeof(*ss));
    if (arg[0] == '[') {
        const char *rb = strchr(arg, ']');
        if (rb == NULL || rb[1] != ':')
            return -1;
        hl = (size_t)(rb - arg - 1);
        if (hl == 0 || hl >= hostsz)
            return -1;
        memcpy(host, arg + 1, hl);
        host[hl] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(arg, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - arg);
        if (hl == 0 || hl >= hostsz)
            return -1;
        memcpy(host, arg, hl);
        host[hl] = '\0';
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || port < 0 || port > 65535)
        return -1;
    if (arg[0] == '[') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return -1;
        *sslen = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            return -1;
        *sslen = sizeof(*s4);
    }
    return 0;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: mrd-backend -l ADDR:PORT [-l ADDR:PORT ...] [-n NAME] [-q]\n"
               "  -l ADDR:PORT  listen address; IPv4 or [IPv6]; port 0 picks a free port\n"
               "  -n NAME       name reported in X-Backend and /stats (default: backend)\n"
               "  -q            quiet: no messages besides the listening lines\n");
}

int
main(int argc, char **argv)
{
    const char *addrs[MAX_LISTENERS];
    struct evconnlistener *listeners[MAX_LISTENERS];
    struct event *sigterm, *sigint;
    int naddrs = 0, opt;

    while ((opt = getopt(argc, argv, "l:n:qh")) != -1) {
        switch (opt) {
        case 'l':
            if (naddrs == MAX_LISTENERS) {
                fprintf(stderr, "mrd-backend: at most %d listeners\n", MAX_LISTENERS);
                return 2;
            }
            addrs[naddrs++] = optarg;
            break;
        case 'n':
            g.name = optarg;
            break;
        case 'q':
            g.quiet = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (naddrs == 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    memset(filler, 'x', sizeof(filler));
    signal(SIGPIPE, SIG_IGN);

    g.base = event_base_new();
    if (g.base == NULL) {
        fprintf(stderr, "mrd-backend: event_base_new failed\n");
        return 1;
    }
    for (int i = 0; i < naddrs; i++) {
        struct sockaddr_storage ss;
        socklen_t sslen = 0;
        char host[INET6_ADDRSTRLEN + 1];
        struct sockaddr_storage bound;
        socklen_t blen = sizeof(bound);
        unsigned port;

        if (parse_listen(addrs[i], &ss, &sslen, host, sizeof(host)) != 0) {
            fprintf(stderr, "mrd-backend: bad listen address '%s' (want IPv4:PORT or [IPv6]:PORT)\n", addrs[i]);
            return 2;
        }
        listeners[i] = evconnlistener_new_bind(g.base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                               4096, (struct sockaddr *)&ss, (int)sslen);
        if (listeners[i] == NULL) {
            fprintf(stderr, "mrd-backend: cannot listen on %s: %s\n", addrs[i], strerror(errno));
            return 1;
        }
        evconnlistener_set_error_cb(listeners[i], on_accept_error);
        if (getsockname(evconnlistener_get_fd(listeners[i]), (struct sockaddr *)&bound, &blen) == -1) {
            fprintf(stderr, "mrd-backend: getsockname: %s\n", strerror(errno));
            return 1;
        }
        port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
        if (ss.ss_family == AF_INET6)
            printf("listening %s [%s]:%u\n", g.name, host, port);
        else
            printf("listening %s %s:%u\n", g.name, host, port);
    }
    fflush(stdout);

    sigterm = evsignal_new(g.base, SIGTERM, on_signal, NULL);
    sigint = evsignal_new(g.base, SIGINT, on_signal, NULL);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);

    event_base_dispatch(g.base);

    /* connections are left to exit(); only the loop's own objects are freed */
    for (int i = 0; i < naddrs; i++)
        evconnlistener_free(listeners[i]);
    event_free(sigterm);
    event_free(sigint);
    if (!g.quiet)
        fprintf(stderr, "mrd-backend: %s exiting after %" PRIu64 " requests\n", g.name, g.requests);
    return 0;
}
