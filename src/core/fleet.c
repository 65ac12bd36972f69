/*
 * fleet.c: leases of a region's fleet-wide tokens and the sync script
 * (fleet.h). Pure: C11 atomics, arithmetic and text.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "meridian/common.h"
#include "meridian/fleet.h"

int
mrd_lease_take(struct mrd_lease *l)
{
    int64_t t = atomic_load_explicit(&l->tokens, memory_order_relaxed);

    atomic_fetch_add_explicit(&l->demand, 1, memory_order_relaxed);
    do {
        if (t <= 0)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(&l->tokens, &t, t - 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    atomic_fetch_add_explicit(&l->spent, 1, memory_order_relaxed);
    return 1;
}

void
mrd_lease_add(struct mrd_lease *l, int64_t n)
{
    if (n <= 0)
        return;
    atomic_fetch_add_explicit(&l->tokens, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->leased, (uint64_t)n, memory_order_relaxed);
}

int64_t
mrd_lease_trim(struct mrd_lease *l, int64_t keep)
{
    int64_t t = atomic_load_explicit(&l->tokens, memory_order_relaxed);

    if (keep < 0)
        keep = 0;
    do {
        if (t <= keep)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(&l->tokens, &t, keep, memory_order_relaxed,
                                                    memory_order_relaxed));
    atomic_fetch_add_explicit(&l->returned, (uint64_t)(t - keep), memory_order_relaxed);
    return t - keep;
}

int64_t
mrd_lease_void(struct mrd_lease *l)
{
    int64_t t = atomic_exchange_explicit(&l->tokens, 0, memory_order_relaxed);

    if (t <= 0)
        return 0;
    atomic_fetch_add_explicit(&l->expired, (uint64_t)t, memory_order_relaxed);
    return t;
}

int64_t
mrd_lease_tokens(const struct mrd_lease *l)
{
    int64_t t = atomic_load_explicit(&((struct mrd_lease *)l)->tokens, memory_order_relaxed);

    return t > 0 ? t : 0;
}

int64_t
mrd_lease_need(double demand_per_s, uint64_t sync_ms, uint64_t cap_rps, uint64_t burst, int64_t spare,
               unsigned n_live)
{
    double need, most, cushion;

    if (!(demand_per_s > 0)) /* also NaN */
        demand_per_s = 0;
    need = ceil(demand_per_s * 2.0 * (double)sync_ms / 1000.0);
    cushion = spare > 0 ? floor((double)spare / (double)(n_live ? n_live : 1)) : 0;
    if (cushion > need)
        need = cushion;
    most = ceil((double)cap_rps * 2.0 * (double)sync_ms / 1000.0) + (double)burst;
    if (most < 1)
        most = 1;
    if (need > most)
        need = most;
    if (need < 1)
        need = 1;
    return (int64_t)need;
}

double
mrd_fleet_demand_rate(double prev_per_s, uint64_t count, uint64_t elapsed_ms)
{
    double now;

    if (elapsed_ms == 0)
        return prev_per_s;
    now = (double)count * 1000.0 / (double)elapsed_ms;
    if (!(prev_per_s > 0) || now >= prev_per_s)
        return now;
    return (prev_per_s + now) / 2.0;
}

void
mrd_fleet_share(enum mrd_fleet_mode mode, uint64_t cap_rps, uint64_t burst, unsigned n_live,
                uint64_t *rate_milli_per_s, uint64_t *burst_out)
{
    uint64_t n = mode == MRD_FLEET_LOCAL && n_live > 1 ? n_live : 1;

    *rate_milli_per_s = MRD_MAX(cap_rps * 1000 / n, 1);
    *burst_out = MRD_MAX(burst / n, 1);
}

/* Lua numbers are doubles: microseconds since 1970 (~1.8e15) are exact. */
const char mrd_fleet_sync_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local now_ms = math.floor(now / 1000)\n"
    "local me = ARGV[1]\n"
    "local window = tonumber(ARGV[2])\n"
    "local ttl = tonumber(ARGV[3])\n"
    "redis.call('ZADD', KEYS[1], now_ms, me)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)\n"
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"
    "local out = {now_ms, redis.call('ZCARD', KEYS[1])}\n"
    "local n = (#KEYS - 1) / 2\n"
    "for i = 1, n do\n"
    "  local a = 3 + (i - 1) * 5\n"
    "  local interval = tonumber(ARGV[a + 1])\n"
    "  local burst = tonumber(ARGV[a + 2])\n"
    "  local want = tonumber(ARGV[a + 3])\n"
    "  local back = tonumber(ARGV[a + 4])\n"
    "  local rate = tonumber(ARGV[a + 5])\n"
    "  local ck, rk = KEYS[2 * i], KEYS[2 * i + 1]\n"
    "  local tat = tonumber(redis.call('GET', ck) or (now + burst * interval))\n"
    "  if tat < now then tat = now end\n"
    "  if back > 0 then tat = math.max(now, tat - back * interval) end\n"
    "  local avail = math.floor((now + burst * interval - tat) / interval)\n"
    "  local grant = math.max(0, math.min(want, avail))\n"
    "  tat = tat + grant * interval\n"
    "  redis.call('SET', ck, string.format('%.0f', tat), 'PX', ttl)\n"
    "  redis.call('HSET', rk, me, rate .. ':' .. now_ms)\n"
    "  redis.call('PEXPIRE', rk, ttl)\n"
    "  local sum = 0\n"
    "  local all = redis.call('HGETALL', rk)\n"
    "  for j = 1, #all, 2 do\n"
    "    local v = all[j + 1]\n"
    "    local c = string.find(v, ':', 1, true)\n"
    "    local r = c and tonumber(string.sub(v, 1, c - 1))\n"
    "    local at = c and tonumber(string.sub(v, c + 1))\n"
    "    if r and at and at > now_ms - window then sum = sum + r\n"
    "    else redis.call('HDEL', rk, all[j]) end\n"
    "  end\n"
    "  out[#out + 1] = grant\n"
    "  out[#out + 1] = sum\n"
    "  out[#out + 1] = math.max(0, math.floor((now + burst * interval - tat) / interval))\n"
    "end\n"
    "return out\n";

const char mrd_fleet_client_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local interval = tonumber(ARGV[1])\n"
    "local tau = tonumber(ARGV[2]) * interval\n"
    "local ttl = tonumber(ARGV[3])\n"
    "local most = tonumber(ARGV[4])\n"
    "for i = 5, #ARGV - 1, 2 do\n"
    "  local c = ARGV[i]\n"
    "  local tat = tonumber(redis.call('HGET', KEYS[1], c) or now)\n"
    "  if tat < now then tat = now end\n"
    "  tat = tat + tonumber(ARGV[i + 1]) * interval\n"
    "  redis.call('HSET', KEYS[1], c, string.format('%.0f', tat))\n"
    "  redis.call('ZADD', KEYS[2], string.format('%.0f', tat), c)\n"
    "end\n"
    "local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now), 'LIMIT', 0, 1000)\n"
    "if #stale > 0 then\n"
    "  redis.call('HDEL', KEYS[1], unpack(stale))\n"
    "  redis.call('ZREM', KEYS[2], unpack(stale))\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"
    "redis.call('PEXPIRE', KEYS[2], ttl)\n"
    "local busy = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', string.format('%.0f', now + tau / 4),\n"
    "                        'WITHSCORES', 'LIMIT', 0, most)\n"
    "local out = {}\n"
    "for i = 1, #busy, 2 do\n"
    "  out[#out + 1] = busy[i]\n"
    "  out[#out + 1] = math.floor(tonumber(busy[i + 1]) - now)\n"
    "end\n"
    "return out\n";

void
mrd_fleet_client_hex(char *out, const uint8_t *key, size_t len)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[key[i] >> 4];
        out[2 * i + 1] = digits[key[i] & 15];
    }
    out[2 * len] = '\0';
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int
mrd_fleet_client_unhex(const char *hex, size_t hex_len, uint8_t *key, size_t *len)
{
    if (hex_len != 8 && hex_len != 32)
        return -1;
    for (size_t i = 0; i < hex_len / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = hex_len / 2;
    return 0;
}

int
mrd_fleet_parse_reply(const long long *vals, size_t n_vals, size_t n_regions, const int64_t *want,
                      uint64_t *now_ms, unsigned *n_live, struct mrd_fleet_grant *out)
{
    if (n_vals != 2 + MRD_FLEET_REPLY_PER_REGION * n_regions || vals[0] <= 0 || vals[1] < 1 ||
        vals[1] > 1000000)
        return -1;
    for (size_t i = 0; i < n_regions; i++) {
        const long long *v = &vals[2 + MRD_FLEET_REPLY_PER_REGION * i];
        if (v[0] < 0 || v[0] > want[i] || v[1] < 0 || v[2] < 0)
            return -1;
    }
    *now_ms = (uint64_t)vals[0];
    *n_live = (unsigned)vals[1];
    for (size_t i = 0; i < n_regions; i++) {
        const long long *v = &vals[2 + MRD_FLEET_REPLY_PER_REGION * i];
        out[i].granted = v[0];
        out[i].fleet_rate_milli = (uint64_t)v[1];
        out[i].spare = v[2];
    }
    return 0;
}

size_t
mrd_fleet_key(char *out, size_t cap, const char *name, const char *kind, const char *region)
{
    int n = region != NULL ? snprintf(out, cap, "meridian:{%s}:%s:%s", name, kind, region)
                           : snprintf(out, cap, "meridian:{%s}:%s", name, kind);

    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : (cap ? cap - 1 : 0);
}
