/*
 * tls_upstream.c: client SSL_CTX per TLS region and generation, the
 * per-upstream session cache and the handshake failure log (see
 * tls_upstream.h).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "meridian/clock.h"
#include "meridian/common.h"
#include "meridian/gen.h"
#include "meridian/log.h"
#include "meridian/tls_upstream.h"
#include "meridian/tlsname.h"

#define FAIL_LOG_PERIOD_MS 60000

static pthread_once_t idx_once = PTHREAD_ONCE_INIT;
static int st_idx = -1;  /* SSL ex_data: the struct mrd_upstream_state */
static int done_idx = -1; /* SSL ex_data: non-NULL once the first handshake completed */
static int ctx_idx = -1; /* SSL_CTX ex_data: the id of its struct mrd_uptls (the context may outlive it) */
static atomic_uint_fast64_t next_id = 1;

static void
idx_init(void)
{
    st_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    done_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* at most one line per upstream and minute: the first reason wins */
static void
log_failure(struct mrd_upstream_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
log_failure(struct mrd_upstream_state *st, const char *fmt, ...)
{
    uint_fast64_t last = atomic_load(&st->tls_log_ms), now = mrd_now_ms();
    char msg[512];
    va_list ap;

    if (!mrd_tls_log_due(last, now, FAIL_LOG_PERIOD_MS) || !atomic_compare_exchange_strong(&st->tls_log_ms, &last, now))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mrd_log(MRD_LOG_ERR, "upstream %s: TLS handshake failed: %s", st->name, msg);
}

int
mrd_uptls_check_alpn(SSL *ssl, struct mrd_upstream_state *st, const char *want)
{
    const unsigned char *p = NULL;
    unsigned n = 0;

    SSL_get0_alpn_selected(ssl, &p, &n);
    if (n == strlen(want) && memcmp(p, want, n) == 0)
        return 0;
    if (n == 0)
        log_failure(st, "the upstream chose no ALPN protocol (%s needed)", want);
    else
        log_failure(st, "the upstream chose ALPN \"%.*s\" (%s needed)", (int)n, (const char *)p, want);
    return -1;
}

/* the words an operator looks for first, then OpenSSL's own */
static const char *
verify_kind(int err)
{
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "certificate not yet valid";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return "unknown CA";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "name mismatch";
    default:
        return "certificate verification failed";
    }
}

static int
verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl;
    struct mrd_upstream_state *st;
    X509 *cert;
    char subject[256] = "";
    int err;

    if (ok)
        return 1;
    ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    st = ssl != NULL ? SSL_get_ex_data(ssl, st_idx) : NULL;
    if (st == NULL)
        return 0;
    err = X509_STORE_CTX_get_error(xs);
    cert = X509_STORE_CTX_get_current_cert(xs);
    if (cert != NULL)
        X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    if (err == X509_V_ERR_HOSTNAME_MISMATCH || err == X509_V_ERR_IP_ADDRESS_MISMATCH)
        log_failure(st, "%s: the certificate (%s) is not valid for \"%s\"", verify_kind(err), subject, st->tls_name);
    else
        log_failure(st, "%s: %s (depth %d, %s)", verify_kind(err), X509_verify_cert_error_string(err),
                    X509_STORE_CTX_get_error_depth(xs), subject);
    return 0;
}

/* fatal alerts: what the upstream objected to (no client certificate,
 * protocol version; TLS 1.3 rejects a client certificate after the
 * client's handshake is done), or what we sent after a local error during
 * the handshake */
static void
info_cb(const SSL *ssl, int where, int ret)
{
    struct mrd_upstream_state *st;

    if (where & SSL_CB_HANDSHAKE_DONE) /* (SSL_in_init is also true around TLS 1.3 tickets) */
        SSL_set_ex_data((SSL *)ssl, done_idx, (void *)1);
    if (!(where & SSL_CB_ALERT) || (ret >> 8) != SSL3_AL_FATAL)
        return;
    st = SSL_get_ex_data(ssl, st_idx);
    if (st == NULL)
        return;
    if (where & SSL_CB_READ) {
        /* (OpenSSL 3.0 has no text for TLS 1.3's certificate_required) */
        log_failure(st, "the upstream sent alert \"%s\"",
                    (ret & 0xff) == 116 ? "certificate required" : SSL_alert_desc_string_long(ret));
    } else if (SSL_get_ex_data(ssl, done_idx) == NULL) { /* (after it, the owner reports what failed) */
        unsigned long e = ERR_peek_last_error();
        const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
        log_failure(st, "%s (alert \"%s\" sent)", r != NULL ? r : "protocol error", SSL_alert_desc_string_long(ret));
    }
}

/* TLS 1.3 tickets arrive after the handshake: keep the latest per upstream */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct mrd_upstream_state *st = SSL_get_ex_data(ssl, st_idx);
    uint64_t id = (uint64_t)(uintptr_t)SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);
    SSL_SESSION *copy;
    void *old;

    if (st == NULL || id == 0 || !SSL_SESSION_is_resumable(sess))
        return 0;
    /* a copy: SSL_free of a connection that ends without close_notify
     * marks its own session not resumable, and pooled ones end that way */
    if ((copy = SSL_SESSION_dup(sess)) == NULL)
        return 0;
    pthread_mutex_lock(&st->tls_lock);
    old = st->tls_session;
    st->tls_session = copy;
    st->tls_session_ctx = id;
    pthread_mutex_unlock(&st->tls_lock);
    SSL_SESSION_free(old);
    return 0; /* sess stays OpenSSL's */
}

static void
diag_openssl(struct mrd_diag *d, const struct mrd_config *c, const struct mrd_conf_pos *pos, const char *fmt,
             size_t ridx, const char *path)
{
    char buf[256], what[160];
    unsigned long e = ERR_get_error();

    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(what, sizeof(what), fmt, ridx);
    mrd_diag_add(d, c->file, pos->line, pos->col, "%s \"%s\": %s", what, path, e ? buf : "unknown error");
}

struct mrd_uptls *
mrd_uptls_new(const struct mrd_config *c, size_t ridx, struct mrd_diag *d)
{
    const struct mrd_upstream_tls_conf *tc = &c->regions[ridx].tls;
    static const char *const http1[] = {"http/1.1"};
    struct mrd_uptls *t;
    SSL_CTX *ctx;
    int ok = 1;

    pthread_once(&idx_once, idx_init);
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        diag_openssl(d, c, &tc->pos, "regions[%zu].upstream_tls: cannot create a TLS context for", ridx, "client");
        return NULL;
    }
    t = mrd_xcalloc(1, sizeof(*t));
    t->ctx = ctx;
    t->id = atomic_fetch_add(&next_id, 1);
    t->verify = tc->verify;
    SSL_CTX_set_ex_data(ctx, ctx_idx, (void *)(uintptr_t)t->id);
    SSL_CTX_set_min_proto_version(ctx, tc->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* buffers only while a record is in flight: idle pooled connections stay small */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    SSL_CTX_set_info_callback(ctx, info_cb);
    SSL_CTX_set_verify(ctx, tc->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, tc->verify ? verify_cb : NULL);
    if (tc->ca != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, tc->ca, NULL) != 1) {
            diag_openssl(d, c, &tc->ca_pos, "regions[%zu].upstream_tls.ca: cannot load CA file", ridx, tc->ca);
            ok = 0;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        diag_openssl(d, c, &tc->pos, "regions[%zu].upstream_tls: cannot load the system CA store", ridx, "default");
        ok = 0;
    }
    if (tc->certificate.cert != NULL && tc->certificate.key != NULL) {
        const struct mrd_conf_pos *pos = &tc->certificate.pos;
        if (SSL_CTX_use_certificate_chain_file(ctx, tc->certificate.cert) != 1) {
            diag_openssl(d, c, pos, "regions[%zu].upstream_tls.certificate: cannot load certificate", ridx,
                         tc->certificate.cert);
            ok = 0;
        } else if (SSL_CTX_use_PrivateKey_file(ctx, tc->certificate.key, SSL_FILETYPE_PEM) != 1) {
            diag_openssl(d, c, pos, "regions[%zu].upstream_tls.certificate: cannot load private key", ridx,
                         tc->certificate.key);
            ok = 0;
        } else if (SSL_CTX_check_private_key(ctx) != 1) {
            diag_openssl(d, c, pos, "regions[%zu].upstream_tls.certificate: private key does not match certificate",
                         ridx, tc->certificate.cert);
            ok = 0;
        }
    }
    if (ok && mrd_uptls_set_alpn(t, http1, 1) == -1) {
        diag_openssl(d, c, &tc->pos, "regions[%zu].upstream_tls: cannot set ALPN", ridx, "http/1.1");
        ok = 0;
    }
    if (!ok) {
        mrd_uptls_free(t);
        return NULL;
    }
    if (!tc->verify)
        mrd_log(MRD_LOG_WARN,
                "%s:%u:%u: regions[%zu].upstream_tls.verify is false: the certificates of region %s's upstreams "
                "are not verified",
                c->file, tc->verify_pos.line, tc->verify_pos.col, ridx, c->regions[ridx].name);
    return t;
}

void
mrd_uptls_free(struct mrd_uptls *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

int
mrd_uptls_set_alpn(struct mrd_uptls *t, const char *const *protos, size_t n)
{
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(protos[i]);
        if (l == 0 || l > 255 || len + 1 + l > sizeof(t->alpn))
            return -1;
        t->alpn[len++] = (unsigned char)l;
        memcpy(t->alpn + len, protos[i], l);
        len += l;
    }
    t->alpn_len = len;
    /* (SSL_CTX_set_alpn_protos returns 0 on success) */
    return SSL_CTX_set_alpn_protos(t->ctx, t->alpn, (unsigned)len) == 0 ? 0 : -1;
}

static SSL *
ssl_from_ctx(SSL_CTX *ctx, struct mrd_upstream_state *st)
{
    SSL *ssl = SSL_new(ctx);
    uint64_t id = (uint64_t)(uintptr_t)SSL_CTX_get_ex_data(ctx, ctx_idx);
    int verify = (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) != 0, ok;

    if (ssl == NULL)
        return NULL;
    SSL_set_connect_state(ssl);
    ok = SSL_set_ex_data(ssl, st_idx, st) == 1;
    /* RFC 6066 3: no SNI for IP literals; their IP SAN is verified */
    if (ok && !st->tls_name_ip)
        ok = SSL_set_tlsext_host_name(ssl, st->tls_name) == 1;
    if (ok && verify) {
        if (st->tls_name_ip) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), st->tls_name) == 1;
        } else {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(ssl, st->tls_name) == 1;
        }
    }
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    pthread_mutex_lock(&st->tls_lock);
    if (st->tls_session != NULL && st->tls_session_ctx == id)
        SSL_set_session(ssl, st->tls_session);
    pthread_mutex_unlock(&st->tls_lock);
    return ssl;
}

SSL *
mrd_uptls_ssl_new(struct mrd_uptls *t, struct mrd_upstream_state *st)
{
    return ssl_from_ctx(t->ctx, st);
}

SSL *
mrd_uptls_ssl_upstream(struct mrd_uptls *t, struct mrd_upstream_state *st)
{
    SSL_CTX *ctx, *old = NULL;
    SSL *ssl;

    pthread_mutex_lock(&st->tls_lock);
    if (t != NULL && st->tls_ctx_last != t->ctx) {
        old = st->tls_ctx_last;
        SSL_CTX_up_ref(t->ctx);
        st->tls_ctx_last = t->ctx;
    }
    ctx = st->tls_ctx_last;
    if (ctx != NULL)
        SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&st->tls_lock);
    SSL_CTX_free(old);
    if (ctx == NULL)
        return NULL;
    ssl = ssl_from_ctx(ctx, st);
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    return ssl;
}

void
mrd_uptls_handshake_failed(SSL *ssl)
{
    struct mrd_upstream_state *st = SSL_get_ex_data(ssl, st_idx);
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    if (st == NULL)
        return;
    /* (a verification failure or an alert was logged when it happened; the
     * pacing keeps that first reason for the minute) */
    log_failure(st, "%s", r != NULL ? r : "the connection closed during the handshake");
}

void
mrd_uptls_state_dispose(struct mrd_upstream_state *st)
{
    SSL_SESSION_free(st->tls_session);
    st->tls_session = NULL;
    SSL_CTX_free(st->tls_ctx_last);
    st->tls_ctx_last = NULL;
}
