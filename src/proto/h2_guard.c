/*
 * h2_guard.c: checks nghttp2 does not make for meridian's HTTP/2 connections
 * (h2.c): frame boundaries in the input (a frame on a stream closed not by
 * us is STREAM_CLOSED, frame headers go to nghttp2 only whole), stream ids
 * skipped below the highest one (PROTOCOL_ERROR), the RST_STREAM window, and
 * the per-second bound on frames that cost work without progress.
 */
#include <stdint.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "meridian/clock.h"
#include "meridian/common.h"
#include "meridian/h2-int.h"
#include "meridian/log.h"

#define CHEAP_FRAMES_PER_S 1000 /* PING/SETTINGS/PRIORITY/empty DATA/unknown: flood bound */

/* an odd id below last_sid that no HEADERS opened (RFC 9113 5.1.1) */
static int
in_gap(const struct mrd_h2_conn *h, int32_t id)
{
    for (unsigned i = 0; i < h->n_gaps; i++)
        if (id >= h->gaps[i][0] && id <= h->gaps[i][1])
            return 1;
    return 0;
}

static unsigned
rst_slot(int32_t id)
{
    return ((uint32_t)id >> 1) & 127;
}

/* the slots of the ids entering the window (above last_sid, up to id) start clear */
static void
rst_window_advance(struct mrd_h2_conn *h, int32_t id)
{
    if ((int64_t)id - h->last_sid >= 2 * 128) {
        h->rst_sent[0] = h->rst_sent[1] = 0;
        return;
    }
    for (int32_t k = h->last_sid + 2; k <= id; k += 2)
        h->rst_sent[rst_slot(k) >> 6] &= ~(1ULL << (rst_slot(k) & 63));
}

void
mrd_h2_rst_mark(struct mrd_h2_conn *h, int32_t id)
{
    if ((id & 1) && id <= h->last_sid && h->last_sid - id < 2 * 128)
        h->rst_sent[rst_slot(id) >> 6] |= 1ULL << (rst_slot(id) & 63);
}

/* a client stream that was open and is closed now, not by our RST_STREAM:
 * frames other than PRIORITY, WINDOW_UPDATE and RST_STREAM on it are a
 * STREAM_CLOSED error (RFC 9113 5.1). Beyond the window we cannot tell,
 * and let nghttp2 ignore the frame. */
static int
closed_not_by_us(struct mrd_h2_conn *h, int32_t id)
{
    if (!(id & 1) || id > h->last_sid || h->last_sid - id >= 2 * 128 ||
        nghttp2_session_find_stream(h->ng, id) != NULL)
        return 0;
    if (in_gap(h, id))
        return 0; /* never opened: skipped_id's case */
    return !(h->rst_sent[rst_slot(id) >> 6] & (1ULL << (rst_slot(id) & 63)));
}

/* RFC 9113 5.1.1: a new stream's id is above every earlier one. nghttp2
 * ignores HEADERS on a lower id it never saw; that is a PROTOCOL_ERROR.
 * Returns 1 for such an id (an id skipped earlier). */
static int
skipped_id(struct mrd_h2_conn *h, int32_t id)
{
    if (!(id & 1))
        return 0; /* nghttp2 rejects even ids itself */
    if (id > h->last_sid) {
        rst_window_advance(h, id);
        if (id > h->last_sid + 2) {
            if (h->n_gaps == MRD_ARRAY_LEN(h->gaps)) {
                memmove(h->gaps[0], h->gaps[1], sizeof(h->gaps) - sizeof(h->gaps[0]));
                h->n_gaps--;
            }
            h->gaps[h->n_gaps][0] = h->last_sid + 2;
            h->gaps[h->n_gaps][1] = id - 2;
            h->n_gaps++;
        }
        h->last_sid = id;
        return 0;
    }
    return in_gap(h, id) && nghttp2_session_find_stream(h->ng, id) == NULL;
}

/* frames that cost us work but make no progress: bounded per second */
int
mrd_h2_on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *arg)
{
    struct mrd_h2_conn *h = arg;
    int cheap;

    switch (hd->type) {
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
        cheap = 1;
        break;
    case NGHTTP2_DATA:
        cheap = hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM);
        break;
    case NGHTTP2_HEADERS:
        if (skipped_id(h, hd->stream_id)) {
            h->cb_error = NGHTTP2_PROTOCOL_ERROR;
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        cheap = 0;
        break;
    case NGHTTP2_CONTINUATION:
    case NGHTTP2_RST_STREAM:
    case NGHTTP2_WINDOW_UPDATE:
    case NGHTTP2_GOAWAY:
    case NGHTTP2_PUSH_PROMISE:
        cheap = 0;
        break;
    default:
        cheap = 1; /* unknown types are ignored, but still read */
        break;
    }
    if (!cheap)
        return 0;
    uint32_t now = (uint32_t)mrd_now_ms();
    if ((uint32_t)(now - h->cheap_window_ms) >= 1000) {
        h->cheap_window_ms = now;
        h->cheap_frames = 0;
    }
    if (++h->cheap_frames > CHEAP_FRAMES_PER_S) {
        mrd_log(MRD_LOG_INFO, "%s: h2 control frame flood", h->client_ip);
        h->cb_error = NGHTTP2_ENHANCE_YOUR_CALM;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int32_t
hd_stream_id(const uint8_t *hd)
{
    return (int32_t)(((uint32_t)(hd[5] & 0x7f) << 24) | ((uint32_t)hd[6] << 16) | ((uint32_t)hd[7] << 8) | hd[8]);
}

/* does the frame with this header need closed_not_by_us()? (a DATA or
 * HEADERS on a stream that was opened before, perhaps earlier in this
 * very input, which nghttp2 has not read yet) */
static int
scan_wants_check(const struct mrd_h2_conn *h, const uint8_t *hd)
{
    int32_t id = hd_stream_id(hd);

    return (hd[3] == NGHTTP2_DATA || hd[3] == NGHTTP2_HEADERS) && (id & 1) &&
           (id <= h->last_sid || id <= h->scan_max_sid);
}

/*
 * How many of the n bytes at p to give nghttp2 now: up to the next frame
 * whose stream must be checked, so that the check sees the state the frames
 * before it left; and never part of a frame header: an incomplete one at the
 * end stays in the input until the rest arrives (0: nothing to give yet).
 * nghttp2 1.52.0-1+deb12u3 (fixed upstream in 1.70.0) counts a CONTINUATION
 * against max_continuations once per mem_recv call that reads part of its
 * frame header, so a header split across reads would count two to nine
 * times and a legitimate client could be cut off; whole headers count once.
 * *bad: that frame is on a stream closed not by us (a connection error
 * STREAM_CLOSED, RFC 9113 5.1).
 */
size_t
mrd_h2_scan_input(struct mrd_h2_conn *h, const uint8_t *p, size_t n, int *bad)
{
    size_t i = 0;

    *bad = 0;
    while (i < n) {
        if (h->scan_skip > 0) {
            size_t k = MRD_MIN(h->scan_skip, n - i);
            h->scan_skip -= (uint32_t)k;
            i += k;
            continue;
        }
        if (n - i < 9)
            break; /* a partial frame header: with the rest, later */
        const uint8_t *hd = p + i;
        if (scan_wants_check(h, hd)) {
            if (i > 0)
                return i; /* let nghttp2 take what comes before first */
            if (closed_not_by_us(h, hd_stream_id(hd))) {
                *bad = 1;
                return 0;
            }
        }
        if (hd[3] == NGHTTP2_HEADERS && hd_stream_id(hd) > h->scan_max_sid)
            h->scan_max_sid = hd_stream_id(hd);
        h->scan_skip = ((uint32_t)hd[0] << 16) | ((uint32_t)hd[1] << 8) | hd[2];
        i += 9;
    }
    return i;
}
