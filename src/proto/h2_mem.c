/*
 * h2_mem.c: memory for nghttp2 sessions (h2.c). Blocks of a page or more
 * are mapped on their own (up to three per connection), kept in a per-worker
 * pool when a connection closes, and an idle connection hands their all-zero
 * pages back to the kernel (mrd_h2_trim); everything else goes to malloc.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <nghttp2/nghttp2.h>

#include "meridian/common.h"
#include "meridian/h2-int.h"

#define BIG_ALLOC 4096 /* nghttp2's stream map table is exactly one page */

static int
big_find(struct mrd_h2_conn *h, void *p)
{
    for (int i = 0; i < (int)MRD_ARRAY_LEN(h->big_p); i++)
        if (h->big_p[i] == p && p != NULL)
            return i;
    return -1;
}

/* a mapping of len bytes: one the worker kept from a closed connection
 * (cleared when zero is asked), else a fresh one (zero already) */
static void *
block_get(struct mrd_worker *w, size_t len, int zero)
{
    for (unsigned i = 0; i < w->n_h2_blocks; i++) {
        if (w->h2_blocks[i].len != len)
            continue;
        void *p = w->h2_blocks[i].p;
        w->h2_blocks[i] = w->h2_blocks[--w->n_h2_blocks];
        if (zero)
            memset(p, 0, len);
        return p;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* keep a closed connection's mapping for the next one (no munmap, no page
 * faults on the next connection), up to a few per worker */
static void
block_put(struct mrd_worker *w, void *p, size_t len)
{
    if ((int)w->n_h2_blocks < (MRD_POOL_MAX ? (int)MRD_ARRAY_LEN(w->h2_blocks) : 0)) {
        w->h2_blocks[w->n_h2_blocks].p = p;
        w->h2_blocks[w->n_h2_blocks].len = len;
        w->n_h2_blocks++;
        return;
    }
    munmap(p, len);
}

void
mrd_h2_blocks_dispose(struct mrd_worker *w)
{
    while (w->n_h2_blocks > 0) {
        w->n_h2_blocks--;
        munmap(w->h2_blocks[w->n_h2_blocks].p, w->h2_blocks[w->n_h2_blocks].len);
    }
}

static void *
big_alloc(struct mrd_h2_conn *h, size_t size, int zero)
{
    for (size_t i = 0; i < MRD_ARRAY_LEN(h->big_p); i++) {
        if (h->big_p[i] != NULL)
            continue;
        size_t len = (size + 4095) & ~(size_t)4095;
        void *p = block_get(h->w, len, zero);
        if (p == NULL)
            return NULL;
        h->big_p[i] = p;
        h->big_len[i] = (uint32_t)len;
        return p;
    }
    return NULL;
}

static void *
ng_malloc(size_t size, void *ud)
{
    void *p = size >= BIG_ALLOC ? big_alloc(ud, size, 0) : NULL;
    return p != NULL ? p : malloc(size);
}

static void
ng_free(void *p, void *ud)
{
    struct mrd_h2_conn *h = ud;
    int i = big_find(h, p);

    if (i < 0) {
        free(p);
        return;
    }
    block_put(h->w, h->big_p[i], h->big_len[i]);
    h->big_p[i] = NULL;
}

static void *
ng_calloc(size_t n, size_t size, void *ud)
{
    void *p = (n && size <= SIZE_MAX / n && n * size >= BIG_ALLOC) ? big_alloc(ud, n * size, 1) : NULL;
    return p != NULL ? p : calloc(n, size);
}

static void *
ng_realloc(void *p, size_t size, void *ud)
{
    struct mrd_h2_conn *h = ud;
    int i = big_find(h, p);
    void *q;
    size_t old;

    if (i < 0 && size < BIG_ALLOC)
        return realloc(p, size);
    old = i >= 0 ? h->big_len[i] : (p != NULL ? malloc_usable_size(p) : 0);
    q = ng_malloc(size, ud);
    if (q == NULL)
        return NULL;
    if (p != NULL) {
        memcpy(q, p, MRD_MIN(old, size));
        ng_free(p, ud);
    }
    return q;
}

/*
 * Hand an idle connection's unused pages back to the kernel, safely whatever
 * nghttp2 keeps in its blocks. The rule: a page goes only if every byte of it
 * is zero. Why no byte of any block can change:
 *  - every block in big_p is a private anonymous mapping (block_get: a fresh
 *    mmap(MAP_PRIVATE | MAP_ANONYMOUS), or such a mapping kept by block_put
 *    from a closed connection, never a file or shared mapping);
 *  - after MADV_DONTNEED, a page of a private anonymous mapping reads back as
 *    zero-fill-on-demand (madvise(2)), so a page that was all zeros reads back
 *    with the same bytes, and the next write faults a fresh zero page in;
 *  - the block belongs to this connection and only this worker's thread
 *    touches it, and trim runs from the event loop, never inside nghttp2, so
 *    nothing writes between the scan and the madvise.
 * So nghttp2 sees the same contents whatever the block holds (frame buffers,
 * HPACK buffers of a header value in progress or in the dynamic table, the
 * stream map), and nothing here depends on knowing which. The same holds for
 * a block that later goes back to the worker's pool (block_put keeps the
 * mapping as it is; block_get with zero=0 hands it out uninitialised, as
 * malloc would; with zero=1 it is cleared) and for ng_realloc, which copies
 * the old block's bytes, zero pages included, before freeing it. The
 * conditions below (no stream, nothing to send) only avoid scanning a busy
 * connection; safety does not rest on them.
 */
void
mrd_h2_trim(struct mrd_h2_conn *h)
{
    if (h->n_streams != 0 || !h->big_dirty || h->broken || nghttp2_session_want_write(h->ng))
        return;
    for (size_t i = 0; i < MRD_ARRAY_LEN(h->big_p); i++) {
        const unsigned char *p = h->big_p[i];
        if (p == NULL)
            continue;
        for (size_t off = 0; off + 4096 <= h->big_len[i]; off += 4096) {
            const uint64_t *q = (const uint64_t *)(const void *)(p + off); /* page-aligned */
            uint64_t any = 0;
            for (size_t k = 0; k < 4096 / sizeof(*q); k++)
                any |= q[k];
            if (any == 0)
                madvise((void *)(uintptr_t)(p + off), 4096, MADV_DONTNEED);
        }
    }
    h->big_dirty = 0;
}

void
mrd_h2_mem_init(nghttp2_mem *mem, struct mrd_h2_conn *h)
{
    *mem = (nghttp2_mem){h, ng_malloc, ng_free, ng_calloc, ng_realloc};
}
