/*
 * fleet.h: the pure side of fleet-wide caps (SPEC 8). Several meridian
 * instances share each region's capacity_rps through one GCRA state per
 * region in Redis (the Lua script below, advanced with Redis's own TIME).
 * An instance never asks Redis on the request path: it leases a batch of
 * tokens sized to its recent demand, spends them here with one CAS each,
 * renews every sync_interval, and gives back what it holds beyond its need.
 *
 * Nothing here does I/O, reads a clock, logs or uses a threads API; the
 * lease is shared by all workers through C11 atomics only. The Redis side
 * (connection, timers, failure modes) is src/ops/cluster.c.
 */
#ifndef MERIDIAN_FLEET_H
#define MERIDIAN_FLEET_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* how a capped region admits (struct mrd_fleet_cap.mode) */
enum mrd_fleet_mode {
    MRD_FLEET_OFF = 0,    /* no cluster block: the local bucket alone (SPEC 3.4) */
    MRD_FLEET_SHARED = 1, /* Redis is up: a lease token (the local bucket is not used) */
    MRD_FLEET_LOCAL = 2,  /* Redis failed, on_redis_failure local: the bucket at capacity_rps / N */
    MRD_FLEET_OPEN = 3,   /* Redis failed, on_redis_failure open: the bucket at the full cap */
};

/*
 * Tokens leased from the fleet's bucket for one region on this instance.
 * tokens only goes down on the request path (mrd_lease_take) and is
 * topped up or trimmed by the sync (one thread). demand counts every
 * request that asked for a token, admitted or not: the sync sizes the next
 * lease from it. The counters are cumulative (metrics).
 */
struct mrd_lease {
    _Atomic int64_t tokens;
    _Atomic uint64_t demand;
    _Atomic uint64_t leased;   /* granted by Redis */
    _Atomic uint64_t spent;    /* taken by requests */
    _Atomic uint64_t returned; /* given back to Redis */
    _Atomic uint64_t expired;  /* void when Redis was lost or the cap changed */
};

/* Count the demand and take one token. Returns 1 when taken, 0 when the
 * lease is empty. Safe from any number of threads. */
int mrd_lease_take(struct mrd_lease *l);

/* Add n granted tokens (n >= 0). */
void mrd_lease_add(struct mrd_lease *l, int64_t n);

/* Remove the tokens above keep (>= 0) and return how many were removed
 * (to give back); counted as returned. */
int64_t mrd_lease_trim(struct mrd_lease *l, int64_t keep);

/* Void every token (Redis lost, or this lease is retired); returns how
 * many, counted as expired. */
int64_t mrd_lease_void(struct mrd_lease *l);

/* Tokens held now (>= 0). */
int64_t mrd_lease_tokens(const struct mrd_lease *l);

/*
 * Tokens an instance should hold after a sync: enough for two sync
 * intervals at its demand rate (the next renewal normally comes after one;
 * the second covers a late one), or, when more, a cushion: the fleet
 * bucket's spare tokens shared among the live instances (so a step of load
 * after a quiet time is not shed while the fleet has room; a busy fleet has
 * no spare and no cushion; all cushions together hold at most one burst);
 * at least one token, and never
 * more than the whole fleet's two intervals plus a burst (asking for more
 * than could exist only keeps the rest of the fleet waiting).
 *   demand_per_s   the instance's recent demand (requests that asked for
 *                  a token, per second)
 *   sync_ms        sync_interval
 *   cap_rps, burst the region's capacity_rps and capacity_burst
 *   spare, n_live  the bucket's tokens left and the live instances at the
 *                  last sync (0: unknown)
 */
int64_t mrd_lease_need(double demand_per_s, uint64_t sync_ms, uint64_t cap_rps, uint64_t burst, int64_t spare,
                       unsigned n_live);

/* The demand rate estimate after a sync: count requests over elapsed_ms,
 * smoothed with the previous estimate (EWMA, weight 1/2 per interval); the
 * new interval's rate alone when it is higher, so that a rising load is
 * followed at once and a falling one within a few intervals. */
double mrd_fleet_demand_rate(double prev_per_s, uint64_t count, uint64_t elapsed_ms);

/* The local bucket's rate and burst in a mode: the full cap (OFF, SHARED,
 * OPEN) or its share among n_live instances (LOCAL; n_live 0 counts as 1):
 * capacity_rps * 1000 / n milli-tokens per second and burst / n tokens,
 * both at least 1. */
void mrd_fleet_share(enum mrd_fleet_mode mode, uint64_t cap_rps, uint64_t burst, unsigned n_live,
                     uint64_t *rate_milli_per_s, uint64_t *burst_out);

/* ------------------------------------------------------------------------ */
/* the sync script                                                          */

/*
 * One EVALSHA per sync_interval does everything for every capped region:
 *   KEYS[1]          the sorted set of live instances (score: Redis time, ms)
 *   KEYS[1 + 2i - 1] region i's GCRA state (TAT in microseconds), i = 1..n
 *   KEYS[1 + 2i]     region i's hash of instance -> "rate_milli:time_ms"
 *   ARGV[1] instance id, ARGV[2] liveness window ms (3 * sync_interval),
 *   ARGV[3] TTL ms of the region keys, then per region 5 values:
 *     interval_us (microseconds per token, may be fractional), burst,
 *     want (tokens), back (tokens given back), rate_milli (this instance's
 *     admitted rate * 1000)
 * The reply is an array of integers: now_ms, live instances, then per
 * region: granted tokens, fleet rate * 1000 (the sum of the fresh reports),
 * the tokens left in the bucket.
 * A region key that does not exist starts empty (TAT = now + burst *
 * interval): after a Redis restart the fleet rebuilds its state without a
 * burst over the cap.
 */
extern const char mrd_fleet_sync_script[];

/* values per region in ARGV, and in the reply */
#define MRD_FLEET_ARGS_PER_REGION 5
#define MRD_FLEET_REPLY_PER_REGION 3

struct mrd_fleet_grant {
    int64_t granted;             /* >= 0 */
    uint64_t fleet_rate_milli;   /* the fleet's admitted rate * 1000 */
    int64_t spare;               /* tokens left in the fleet's bucket after the grant */
};

/* Check and decode the script's reply, given as its integers (the caller
 * checked that every element is an integer): n_vals must be 2 + 3 *
 * n_regions, the live count >= 1 (this instance), grants within 0..want
 * (want[i] as sent), rates and spare tokens >= 0. Returns 0 and fills *now_ms, *n_live and
 * out[0..n_regions), or -1 (a malformed reply: the caller treats it as a
 * Redis failure). */
int mrd_fleet_parse_reply(const long long *vals, size_t n_vals, size_t n_regions, const int64_t *want,
                          uint64_t *now_ms, unsigned *n_live, struct mrd_fleet_grant *out);

/*
 * The client script (policies.client_rate_limit.scope: cluster), one
 * EVALSHA per sync when clients came:
 *   KEYS[1] the hash of client -> TAT (microseconds), KEYS[2] the sorted
 *   set of the same (score TAT) that finds the busiest and the stale ones;
 *   ARGV[1] interval_us, ARGV[2] burst, ARGV[3] TTL ms, ARGV[4] how many
 *   busy clients to return, then pairs: client (hex of its address bytes),
 *   admissions since the last report.
 * Each reported client's fleet TAT advances by its admissions (from now
 * when it had refilled); clients whose TAT has passed are forgotten. The
 * reply: pairs of client (hex) and debt (TAT - now, microseconds) of the
 * clients that owe more than a quarter of the burst, most indebted first.
 */
extern const char mrd_fleet_client_script[];

/* hex of a client key into out (2 * len + 1 bytes) */
void mrd_fleet_client_hex(char *out, const uint8_t *key, size_t len);

/* A client of the client script's reply: hex (8 or 32 digits, IPv4 or
 * IPv6) into key, *len 4 or 16. Returns 0, or -1 when it is not one. */
int mrd_fleet_client_unhex(const char *hex, size_t hex_len, uint8_t *key, size_t *len);

/* Redis keys: "meridian:{NAME}:instances", "meridian:{NAME}:cap:REGION"
 * and "meridian:{NAME}:rate:REGION" (the braces are a Redis Cluster hash
 * tag: every key of a fleet is in one slot). Returns the length written
 * (truncated to cap - 1 like snprintf) */
size_t mrd_fleet_key(char *out, size_t cap, const char *name, const char *kind, const char *region);

#endif
