/*
 * fuzz_resp.c: libFuzzer target for what a Redis sends meridian (SPEC 8):
 * bytes through hiredis's reply reader with the functions cluster.c's
 * connection uses (arrays bounded), every complete reply through the checks of both scripts' replies
 * (cluster.c: mrd_cluster_caps_reply, mrd_cluster_clients_reply).
 *
 * Byte 0: the number of capped regions the sync asked for (0..7); bytes
 * 1..8: what it wanted from each. The rest is the stream from "Redis",
 * cut in two at a place byte 0 also picks (a reply split across reads).
 * Checks: a reply accepted for the caps has every grant within 0..want,
 * rates and spare >= 0, at least one live instance; a client reply
 * accepted calls back only with 4- or 16-byte keys; a refused one always
 * says why; nothing is called back for a refused client reply.
 */
#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "meridian/cluster-int.h"
#include "meridian/fleet.h"

#include "fuzz_require.h"

#include <stdint.h>
#include <string.h>

static int calls;

static void
on_client(void *arg, const uint8_t *key, size_t len, uint64_t debt_us)
{
    REQUIRE(len == 4 || len == 16);
    REQUIRE(debt_us <= (uint64_t)INT64_MAX);
    calls++;
}

static void
check(const redisReply *r, size_t n, const int64_t *want)
{
    struct mrd_fleet_grant g[8];
    uint64_t now;
    unsigned live;
    char why[240];

    why[0] = '\0';
    if (mrd_cluster_caps_reply(r, n, want, &now, &live, g, why, sizeof(why)) == 0) {
        REQUIRE(live >= 1 && now > 0);
        for (size_t i = 0; i < n; i++)
            REQUIRE(g[i].granted >= 0 && g[i].granted <= want[i] && g[i].spare >= 0);
    } else {
        REQUIRE(why[0] != '\0');
    }
    why[0] = '\0';
    calls = 0;
    if (mrd_cluster_clients_reply(r, on_client, NULL, why, sizeof(why)) == -1) {
        REQUIRE(why[0] != '\0');
        REQUIRE(calls == 0);
    } else {
        REQUIRE((size_t)calls * 2 == r->elements);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t want[8];
    size_t n, cut;
    redisReader *rd;
    void *reply;

    if (size < 9)
        return 0;
    n = data[0] % 8;
    for (size_t i = 0; i < 8; i++)
        want[i] = data[1 + i];
    data += 9;
    size -= 9;
    cut = size ? (size_t)(data[-9] >> 3) % (size + 1) : 0;
    /* the reader functions meridian's connection uses (arrays bounded) */
    rd = redisReaderCreateWithFunctions((redisReplyObjectFunctions *)mrd_cluster_reader_functions());
    REQUIRE(rd != NULL);
    for (int part = 0; part < 2; part++) {
        const uint8_t *p = part == 0 ? data : data + cut;
        size_t len = part == 0 ? cut : size - cut;
        if (len > 0 && redisReaderFeed(rd, (const char *)p, len) != REDIS_OK)
            break;
        for (;;) {
            reply = NULL;
            if (redisReaderGetReply(rd, &reply) != REDIS_OK) {
                /* a protocol error: the connection would be dropped */
                REQUIRE(rd->err != 0);
                goto done;
            }
            if (reply == NULL)
                break;
            check(reply, n, want);
            freeReplyObject(reply);
        }
    }
done:
    redisReaderFree(rd);
    return 0;
}
