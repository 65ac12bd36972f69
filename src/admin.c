/*
 * admin.c: the admin listener (SPEC section 4), served by the main thread
 * with libevent's evhttp: low traffic, kept off the workers' hot path.
 * Answers GET /healthz; requests need "Authorization: Bearer TOKEN" when a
 * token is configured.
 */
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "meridian/log.h"
#include "meridian/server.h"

static struct evhttp *admin_http;
static struct mrd_gen *admin_gen; /* one ref; replaced on reload */

static int
authorized(struct evhttp_request *r)
{
    const char *tok = admin_gen->conf->admin.token;
    const char *h;

    if (tok == NULL)
        return 1;
    h = evhttp_find_header(evhttp_request_get_input_headers(r), "Authorization");
    return h != NULL && strncmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, tok) == 0;
}

static void
reply(struct evhttp_request *r, int code, const char *ctype, const char *body)
{
    struct evbuffer *b = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", ctype);
    evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(r, code, NULL, b);
    evbuffer_free(b);
}

static void
on_request(struct evhttp_request *r, void *arg)
{
    const char *uri = evhttp_request_get_uri(r);
    const char *path_end = strchr(uri, '?');
    size_t plen = path_end ? (size_t)(path_end - uri) : strlen(uri);

    if (!authorized(r)) {
        evhttp_add_header(evhttp_request_get_output_headers(r), "WWW-Authenticate", "Bearer");
        reply(r, 401, "text/plain", "401 Unauthorized\n");
        return;
    }
    if (evhttp_request_get_command(r) != EVHTTP_REQ_GET && evhttp_request_get_command(r) != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(r), "Allow", "GET, HEAD");
        reply(r, 405, "text/plain", "405 Method Not Allowed\n");
        return;
    }
    if (plen == 8 && memcmp(uri, "/healthz", 8) == 0) {
        reply(r, 200, "text/plain", "ok\n");
        return;
    }
    reply(r, 404, "text/plain", "404 Not Found\n");
}

int
mrd_admin_start(struct event_base *base, struct mrd_gen *g)
{
    const struct mrd_admin_conf *a = &g->conf->admin;
    const char *err;
    int fd;

    if (!a->enabled)
        return 0;
    fd = mrd_listen_socket((const struct sockaddr *)&a->addr, a->addrlen, &err);
    if (fd == -1) {
        mrd_log(MRD_LOG_ERR, "admin %s: %s", a->address, err);
        return -1;
    }
    admin_http = evhttp_new(base);
    evhttp_set_gencb(admin_http, on_request, NULL);
    evhttp_set_allowed_methods(admin_http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                               EVHTTP_REQ_DELETE);
    if (evhttp_accept_socket(admin_http, fd) == -1) {
        mrd_log(MRD_LOG_ERR, "admin %s: cannot accept", a->address);
        evhttp_free(admin_http);
        admin_http = NULL;
        return -1;
    }
    admin_gen = g;
    mrd_gen_acquire(g);
    return 0;
}

void
mrd_admin_set_gen(struct mrd_gen *g)
{
    if (admin_http == NULL)
        return;
    mrd_gen_acquire(g);
    mrd_gen_release(admin_gen);
    admin_gen = g;
}

void
mrd_admin_stop(void)
{
    if (admin_http != NULL)
        evhttp_free(admin_http);
    admin_http = NULL;
    mrd_gen_release(admin_gen);
    admin_gen = NULL;
}
