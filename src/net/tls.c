/*
 * tls.c: SSL_CTX construction per listener and generation, SNI, ALPN and
 * rotating session-ticket keys (see tls.h). The handshake and record I/O
 * themselves are in stream.c.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "meridian/common.h"
#include "meridian/log.h"
#include "meridian/tls.h"

#define TICKET_KEY_LIFETIME_S 3600

struct mrd_tls {
    SSL_CTX **ctxs; /* [0] is the default certificate */
    X509 **certs;   /* borrowed from the contexts, for SNI matching */
    size_t n;
    unsigned char alpn[32]; /* wire format, server preference order */
    size_t alpn_len;
    int http1; /* HTTP/1.1 allowed: a client without ALPN overlap falls back to it */
};

/* ---- session ticket keys: current and previous, rotated lazily ---- */

struct ticket_key {
    unsigned char name[16], aes[32], hmac[32];
    time_t created;
    int valid;
};

static pthread_mutex_t ticket_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ticket_key ticket_keys[2]; /* [0] current, [1] previous */

static int
ticket_key_new(struct ticket_key *k, time_t now)
{
    if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
        RAND_bytes(k->hmac, sizeof(k->hmac)) != 1)
        return -1;
    k->created = now;
    k->valid = 1;
    return 0;
}

/* copy of the key ring, rotating it first when the current key is too old */
static int
ticket_keys_get(struct ticket_key out[2])
{
    time_t now = time(NULL);
    int rc = 0;

    pthread_mutex_lock(&ticket_lock);
    if (!ticket_keys[0].valid || now - ticket_keys[0].created >= TICKET_KEY_LIFETIME_S) {
        ticket_keys[1] = ticket_keys[0];
        rc = ticket_key_new(&ticket_keys[0], now);
    }
    memcpy(out, ticket_keys, sizeof(ticket_keys));
    pthread_mutex_unlock(&ticket_lock);
    return rc;
}

static int
set_hmac(EVP_MAC_CTX *hctx, unsigned char *key)
{
    OSSL_PARAM params[3];

    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"sha256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* OpenSSL's ticket callback: 1 = use, 2 = use and renew, 0 = unknown key, -1 error */
static int
ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX *ctx,
          EVP_MAC_CTX *hctx, int enc)
{
    struct ticket_key keys[2];

    if (ticket_keys_get(keys) == -1)
        return -1;
    if (enc) {
        memcpy(key_name, keys[0].name, 16);
        if (RAND_bytes(iv, 16) != 1 || EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, keys[0].aes, iv) != 1 ||
            set_hmac(hctx, keys[0].hmac) != 1)
            return -1;
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        if (!keys[i].valid || memcmp(key_name, keys[i].name, 16) != 0)
            continue;
        if (set_hmac(hctx, keys[i].hmac) != 1 || EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, keys[i].aes, iv) != 1)
            return -1;
        return i == 0 ? 1 : 2;
    }
    return 0;
}

/* ---- SNI and ALPN ---- */

static int
sni_cb(SSL *ssl, int *alert, void *arg)
{
    struct mrd_tls *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    if (name == NULL || t->n < 2)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < t->n; i++) {
        if (X509_check_host(t->certs[i], name, 0, 0, NULL) == 1) {
            if (i > 0)
                SSL_set_SSL_CTX(ssl, t->ctxs[i]);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_OK; /* no match: the default certificate */
}

static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in, unsigned int inlen,
        void *arg)
{
    struct mrd_tls *t = arg;
    unsigned char *sel;

    if (SSL_select_next_proto(&sel, outlen, t->alpn, (unsigned)t->alpn_len, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return t->http1 ? SSL_TLSEXT_ERR_NOACK : SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void
diag_openssl(struct mrd_diag *d, const struct mrd_config *c, const struct mrd_cert_conf *cc, const char *what,
             const char *path)
{
    char buf[256];
    unsigned long e = ERR_get_error();

    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    mrd_diag_add(d, c->file, cc->pos.line, cc->pos.col, "%s \"%s\": %s", what, path, e ? buf : "unknown error");
}

static SSL_CTX *
ctx_new(struct mrd_tls *t, const struct mrd_config *c, const struct mrd_listener_conf *l,
        const struct mrd_cert_conf *cc, struct mrd_diag *d)
{
    static const char ciphers12[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL) {
        diag_openssl(d, c, cc, "cannot create TLS context for", cc->cert);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, l->tls_min_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    /* (client-initiated renegotiation is off by default in OpenSSL 3) */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    /* buffers only while a record is in flight: idle connections stay small */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_cipher_list(ctx, ciphers12);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, t);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    if (SSL_CTX_use_certificate_chain_file(ctx, cc->cert) != 1) {
        diag_openssl(d, c, cc, "cannot load certificate", cc->cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cc->key, SSL_FILETYPE_PEM) != 1) {
        diag_openssl(d, c, cc, "cannot load private key", cc->key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        diag_openssl(d, c, cc, "private key does not match certificate", cc->cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct mrd_tls *
mrd_tls_new(const struct mrd_config *c, const struct mrd_listener_conf *l, struct mrd_diag *d)
{
    struct mrd_tls *t = mrd_xcalloc(1, sizeof(*t));

    t->ctxs = mrd_xcalloc(l->n_certs, sizeof(*t->ctxs));
    t->certs = mrd_xcalloc(l->n_certs, sizeof(*t->certs));
    for (size_t i = 0; i < l->n_alpn; i++) {
        const char *p = l->alpn[i] == MRD_PROTO_H2 ? "h2" : l->alpn[i] == MRD_PROTO_HTTP1 ? "http/1.1" : NULL;
        if (p == NULL)
            continue;
        t->alpn[t->alpn_len++] = (unsigned char)strlen(p);
        memcpy(t->alpn + t->alpn_len, p, strlen(p));
        t->alpn_len += strlen(p);
    }
    t->http1 = (l->protocols & MRD_PROTO_HTTP1) != 0;
    for (size_t i = 0; i < l->n_certs; i++) {
        t->ctxs[i] = ctx_new(t, c, l, &l->certs[i], d);
        if (t->ctxs[i] == NULL) {
            mrd_tls_free(t);
            return NULL;
        }
        t->certs[i] = SSL_CTX_get0_certificate(t->ctxs[i]);
        t->n = i + 1;
    }
    return t;
}

void
mrd_tls_free(struct mrd_tls *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        SSL_CTX_free(t->ctxs[i]);
    free(t->ctxs);
    free(t->certs);
    free(t);
}

SSL *
mrd_tls_ssl_new(struct mrd_tls *t)
{
    SSL *ssl = SSL_new(t->ctxs[0]);

    if (ssl != NULL)
        SSL_set_accept_state(ssl);
    return ssl;
}

enum mrd_proto
mrd_tls_alpn(SSL *ssl)
{
    const unsigned char *p;
    unsigned int len;

    SSL_get0_alpn_selected(ssl, &p, &len);
    if (len == 2 && memcmp(p, "h2", 2) == 0)
        return MRD_PROTO_H2;
    return MRD_PROTO_HTTP1;
}
