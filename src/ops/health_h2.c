/*
 * health_h2.c: an active health check over HTTP/2 (health_h2.h), a small
 * nghttp2 client session that sends one GET and waits for its :status.
 */
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "meridian/common.h"
#include "meridian/health_h2.h"

struct mrd_health_h2 {
    nghttp2_session *ng;
    int status; /* 0 until known; -1 reset */
};

static int
on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl, const uint8_t *value,
          size_t vl, uint8_t flags, void *ud)
{
    struct mrd_health_h2 *c = ud;

    if (f->hd.type == NGHTTP2_HEADERS && f->hd.stream_id == 1 && nl == 7 && memcmp(name, ":status", 7) == 0 &&
        vl == 3) {
        int s = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        if (s >= 200) /* an interim response is not the answer */
            c->status = s;
    }
    return 0;
}

static int
on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t error_code, void *ud)
{
    struct mrd_health_h2 *c = ud;

    if (sid == 1 && c->status == 0)
        c->status = -1;
    return 0;
}

struct mrd_health_h2 *
mrd_health_h2_new(const char *path, const char *authority)
{
    struct mrd_health_h2 *c = mrd_xcalloc(1, sizeof(*c));
    nghttp2_session_callbacks *cbs;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_nv nv[] = {
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}
        NV(":method", "GET"),
        NV(":scheme", "http"),
        NV(":authority", authority),
        NV(":path", path),
        NV("user-agent", "meridian-health/" MRD_VERSION),
#undef NV
    };

    if (nghttp2_session_callbacks_new(&cbs) != 0)
        abort();
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    if (nghttp2_session_client_new(&c->ng, cbs, c) != 0)
        abort();
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, MRD_ARRAY_LEN(iv));
    nghttp2_submit_request(c->ng, NULL, nv, MRD_ARRAY_LEN(nv), NULL, NULL);
    return c;
}

int
mrd_health_h2_io(struct mrd_health_h2 *c, struct evbuffer *in, struct evbuffer *out, int *status)
{
    if (in != NULL && evbuffer_get_length(in) > 0) {
        size_t n = evbuffer_get_length(in);
        ssize_t r = nghttp2_session_mem_recv(c->ng, evbuffer_pullup(in, -1), n);
        if (r < 0)
            return -1;
        evbuffer_drain(in, (size_t)r);
    }
    for (;;) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->ng, &p);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        evbuffer_add(out, p, (size_t)n);
    }
    if (c->status == 0 && !nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng))
        c->status = -1; /* GOAWAY before the answer */
    if (c->status == 0)
        return 0;
    *status = c->status;
    return 1;
}

void
mrd_health_h2_free(struct mrd_health_h2 *c)
{
    if (c == NULL)
        return;
    nghttp2_session_del(c->ng);
    free(c);
}
