/*
 * config.h: the configuration schema of SPEC section 2 as plain data, and the
 * YAML loader that fills it. Pure: mrd_config_parse() works on a buffer, so
 * tests feed it strings; nothing here opens sockets, certificates or the geo
 * database (building the runtime from a config is gen.c's job). The one file
 * it reads is cluster.redis.password_file, so that -t reports it at its line.
 *
 * Every problem found is appended to a struct mrd_diag as
 * "FILE:LINE:COL: message" (1-based, like compilers), and validation keeps
 * going so that `meridian -t` reports all of them at once.
 */
#ifndef MERIDIAN_CONFIG_H
#define MERIDIAN_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "meridian/addr.h"

/* accumulated diagnostics; each message is heap-allocated and owned by diag */
struct mrd_diag {
    char **msgs;
    size_t n, cap;
};

void mrd_diag_init(struct mrd_diag *d);
void mrd_diag_dispose(struct mrd_diag *d);
void mrd_diag_add(struct mrd_diag *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* position of a value in the file, for errors found after parsing */
struct mrd_conf_pos {
    unsigned line, col;
};

enum mrd_proto {
    MRD_PROTO_HTTP1 = 1 << 0,
    MRD_PROTO_H2C = 1 << 1, /* plaintext HTTP/2 with prior knowledge */
    MRD_PROTO_H2 = 1 << 2,  /* HTTP/2 over TLS (ALPN "h2") */
};

struct mrd_cert_conf {
    char *cert; /* path to PEM certificate chain */
    char *key;  /* path to PEM private key */
    struct mrd_conf_pos pos;
};

struct mrd_listener_conf {
    char *address; /* as written */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned protocols;     /* enum mrd_proto bits */
    enum mrd_proto alpn[3]; /* protocols in the order written (ALPN preference) */
    size_t n_alpn;
    int tls; /* 1 when a tls: block is present */
    struct mrd_cert_conf *certs;
    size_t n_certs;
    int tls_min_version; /* 12 or 13 (default 13) */
    struct mrd_conf_pos pos;
    int proxy_protocol; /* 1: every connection starts with a PROXY v1/v2 header (proxyproto.h) */
    struct mrd_conf_pos proxy_protocol_pos;
};

struct mrd_admin_conf {
    int enabled; /* 1 when an admin: block with an address is present */
    char *address;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *token; /* NULL = no authentication */
};

struct mrd_timeouts_conf {
    uint64_t connect_ms;           /* default 2s */
    uint64_t request_header_ms;    /* default 10s */
    uint64_t upstream_response_ms; /* default 30s */
    uint64_t idle_ms;              /* default 60s */
    uint64_t shutdown_ms;          /* default 30s */
    uint64_t request_body_ms;      /* default 30s: longest gap between two reads of a request body */
};

struct mrd_limits_conf {
    uint64_t max_header_bytes; /* default 16384 */
    uint64_t max_body_bytes;   /* default 10485760 */
    uint64_t max_connections;  /* default 100000 */
};

struct mrd_geo_network_conf {
    struct mrd_cidr cidr;
    char country[3];   /* ISO 3166 alpha-2, upper case, "" when absent */
    char continent[3]; /* two-letter continent code, "" when absent */
    int has_location;
    double latitude, longitude;
    struct mrd_conf_pos pos;
};

struct mrd_geo_conf {
    char *database; /* NULL when absent */
    struct mrd_conf_pos database_pos;
    uint64_t reload_check_ms; /* default 60s: how often the database file is stat()ed for a replacement */
    struct mrd_geo_network_conf *networks;
    size_t n_networks;
    int has_default_location;
    double default_latitude, default_longitude;
};

struct mrd_client_ip_conf {
    struct mrd_cidr *trusted_proxies;
    size_t n_trusted_proxies;
    char *header; /* default "X-Forwarded-For" */
};

struct mrd_scoring_conf {
    /* normalised so that they sum to 1 */
    double w_geography, w_health, w_latency, w_cost;
    uint64_t latency_ceiling_ms; /* default 500ms */
};

enum mrd_balance {
    MRD_BALANCE_LEAST_CONN = 0, /* default */
    MRD_BALANCE_ROUND_ROBIN,
    MRD_BALANCE_P2C_EWMA,
};

/* the protocol meridian speaks to a region's upstreams */
enum mrd_upstream_protocol {
    MRD_UP_HTTP1 = 0, /* default */
    MRD_UP_H2C,       /* HTTP/2 over cleartext TCP, prior knowledge */
    MRD_UP_H2,        /* HTTP/2 over TLS (ALPN h2) */
};

struct mrd_health_conf {
    int enabled; /* 1 when a health_check block is present */
    char *path;  /* default "/healthz" */
    uint64_t interval_ms; /* default 5s */
    uint64_t timeout_ms;  /* default 2s */
    unsigned rise;        /* default 2 */
    unsigned fall;        /* default 3 */
    int expect_status;    /* default 200 */
};

struct mrd_upstream_conf {
    char *address;
    struct sockaddr_storage addr;
    socklen_t addrlen; /* 0 when the address is a host name */
    char *host;        /* the host name (lower case), NULL for an IP literal */
    uint16_t port;     /* with host */
    unsigned weight; /* default 1, 1..1000 */
    struct mrd_conf_pos pos;
    int send_proxy; /* 0, or the PROXY protocol version (1, 2) sent first on each connection */
};

/* SPEC 7: TLS to every upstream of a region (upstream_tls) */
struct mrd_upstream_tls_conf {
    int enabled;       /* 1 when an upstream_tls block is present */
    char *ca;          /* PEM CA file; NULL = the system store */
    int verify;        /* default 1; 0 is logged as a warning at load */
    char *server_name; /* SNI and the name verified; NULL = the host of each address */
    struct mrd_cert_conf certificate; /* client certificate (mTLS); cert NULL = none */
    int min_version;   /* 12 (default) or 13 */
    struct mrd_conf_pos pos, ca_pos, verify_pos;
};

struct mrd_region_conf {
    char *name;
    double latitude, longitude;
    double cost;             /* default 1.0, > 0 */
    uint64_t capacity_rps;   /* 0 = uncapped */
    uint64_t capacity_burst; /* default capacity_rps / 10 */
    char *fallback;          /* NULL when absent */
    int fallback_idx;        /* index into regions, -1 when none */
    enum mrd_balance balance;
    unsigned retries; /* default 2 */
    enum mrd_upstream_protocol upstream_protocol; /* default http1 */
    struct mrd_health_conf health;
    struct mrd_upstream_tls_conf tls;
    struct mrd_upstream_conf *upstreams;
    size_t n_upstreams;
    struct mrd_conf_pos pos;
};

struct mrd_residency_conf {
    char *name;
    char (*continents)[3];
    size_t n_continents;
    char (*countries)[3];
    size_t n_countries;
    int *region_idx; /* indexes into regions */
    size_t n_regions;
};

struct mrd_policies_conf {
    struct mrd_residency_conf *residency;
    size_t n_residency;
    char (*block_countries)[3];
    size_t n_block_countries;
    int block_status; /* default 403 */
    int client_rate_enabled;
    uint64_t client_rate_milli_per_s; /* requests per second * 1000 */
    uint64_t client_burst;            /* default: one second of rate, at least 1 */
    int client_rate_cluster;          /* scope: cluster (1; needs a cluster block) or instance (0, default) */
};

struct mrd_access_log_conf {
    char *path;  /* "-" stdout, NULL when "off" */
    int json;    /* format: json (1) or text (0, "common") */
};

/* extension: where meridian's own messages go (see README) */
struct mrd_error_log_conf {
    char *path; /* NULL: stderr, or syslog when running as a daemon; "-" stderr; "syslog"; a file */
    int level;  /* enum mrd_log_level: error 0, warn 1, info 2 (default), debug 3 */
};

/* dns: for upstream host names (SPEC 7) */
struct mrd_resolver_conf {
    char *address; /* "ip:port" as written */
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

struct mrd_dns_conf {
    struct mrd_resolver_conf *resolvers; /* none: the nameservers of /etc/resolv.conf */
    size_t n_resolvers;
    uint64_t refresh_ms; /* default 30s */
    int required;        /* default 0: a name that does not resolve fails -t and start only when 1 */
    char *hosts;         /* extension: hosts file consulted first, default "/etc/hosts" */
};

/* cluster: caps and client limits shared by a fleet through Redis (SPEC 8) */
enum mrd_cluster_failure {
    MRD_CLUSTER_LOCAL = 0, /* on_redis_failure: local (default): capacity_rps / N each */
    MRD_CLUSTER_OPEN = 1,  /* open: each instance keeps the whole cap */
};

struct mrd_cluster_conf {
    int enabled;          /* the block is there */
    char *address;        /* redis.address as written: "host:port" or "unix:/path" */
    char *host;           /* host part (a name or an IP literal), NULL for unix */
    unsigned port;        /* 1-65535 for host:port */
    char *unix_path;      /* the path of "unix:/path", NULL otherwise */
    char *password_file;  /* redis.password_file, NULL: no AUTH */
    char *password;       /* its content read at load (trailing newline removed), NULL when no file */
    unsigned database;    /* redis.database, default 0 (SELECT when not 0) */
    char *name;           /* key prefix, default "meridian" */
    char *instance;       /* NULL: the host name (cluster.c fills it in at start) */
    uint64_t sync_interval_ms; /* default 100ms, 10ms - 10s */
    uint64_t timeout_ms;       /* extension: a Redis command slower than this is a failure;
                                * default 2 * sync_interval, at least 50ms */
    enum mrd_cluster_failure on_failure;
    struct mrd_conf_pos pos;   /* of the block (diagnostics) */
};

struct mrd_config {
    char *file; /* the name diagnostics use */
    unsigned workers; /* 0 = auto (number of CPUs) */
    char *user;       /* NULL when absent */
    struct mrd_listener_conf *listeners;
    size_t n_listeners;
    struct mrd_admin_conf admin;
    struct mrd_timeouts_conf timeouts;
    struct mrd_limits_conf limits;
    struct mrd_geo_conf geo;
    struct mrd_client_ip_conf client_ip;
    struct mrd_scoring_conf scoring;
    struct mrd_region_conf *regions;
    size_t n_regions;
    struct mrd_policies_conf policies;
    int response_header_region; /* default 1 */
    struct mrd_access_log_conf access_log;
    struct mrd_error_log_conf error_log;
    struct mrd_dns_conf dns;
    struct mrd_cluster_conf cluster;
};

/* Parse and validate YAML in buf. On success returns 0 and *out (free with
 * mrd_config_free). On any problem returns -1, *out NULL, and every problem
 * found is in diag. `file` is the name used in messages. */
int mrd_config_parse(const char *buf, size_t len, const char *file, struct mrd_config **out, struct mrd_diag *diag);

/* Read the file and call mrd_config_parse. An unreadable file is one
 * diagnostic "FILE:1:1: cannot read: REASON". */
int mrd_config_load(const char *path, struct mrd_config **out, struct mrd_diag *diag);

/* The same, and on success *text (malloc'ed, text_len bytes) is the file as
 * read, so that an identical configuration can be parsed again from it
 * (the generations that DNS changes build, resolver.h). */
int mrd_config_load_text(const char *path, struct mrd_config **out, struct mrd_diag *diag, char **text,
                         size_t *text_len);

void mrd_config_free(struct mrd_config *c);

/* "250ms", "2s", "5m", "1h" -> milliseconds. Returns 0 or -1. */
int mrd_parse_duration_ms(const char *s, uint64_t *ms);

/* "N/s" or "N/min" -> requests per second * 1000. Returns 0 or -1. */
int mrd_parse_rate_milli(const char *s, uint64_t *milli_per_s);

#endif
