/*
 * accesslog.c: the access log queue and its writer thread (see accesslog.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meridian/accesslog.h"
#include "meridian/buf.h"
#include "meridian/common.h"
#include "meridian/log.h"

#define QUEUE_MAX (16u << 20)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct mrd_buf queue;        /* lines waiting, under lock */
static int fd = -1;                 /* under lock; STDOUT_FILENO for "-" */
static char *path;                  /* under lock */
static int reopen_wanted, stop_wanted, running;
static pthread_t thread;
static atomic_int enabled, json;
static atomic_uint_fast64_t dropped;

static int
open_path(const char *p)
{
    if (strcmp(p, "-") == 0)
        return STDOUT_FILENO;
    return open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void
close_fd(int f)
{
    if (f != -1 && f != STDOUT_FILENO)
        close(f);
}

static void *
writer(void *arg)
{
    struct mrd_buf out = {0};

    pthread_mutex_lock(&lock);
    for (;;) {
        while (queue.len == 0 && !reopen_wanted && !stop_wanted)
            pthread_cond_wait(&wake, &lock);
        if (reopen_wanted && path != NULL) {
            int f = open_path(path);
            reopen_wanted = 0;
            if (f != -1) {
                close_fd(fd);
                fd = f;
            }
        }
        /* swap buffers: write without the lock held */
        struct mrd_buf tmp = queue;
        queue = out;
        queue.len = 0;
        out = tmp;
        int f = fd;
        int done = stop_wanted && out.len == 0;
        pthread_mutex_unlock(&lock);
        for (size_t off = 0; off < out.len && f != -1;) {
            ssize_t n = write(f, out.p + off, out.len - off);
            if (n == -1 && errno == EINTR)
                continue;
            if (n <= 0)
                break; /* disk full or closed: these lines are lost */
            off += (size_t)n;
        }
        out.len = 0;
        pthread_mutex_lock(&lock);
        if (done || (stop_wanted && queue.len == 0))
            break;
    }
    pthread_mutex_unlock(&lock);
    mrd_buf_dispose(&out);
    return NULL;
}

int
mrd_access_log_configure(const char *p, int as_json)
{
    int f = -1;

    if (p != NULL && (f = open_path(p)) == -1) {
        mrd_log(MRD_LOG_ERR, "access log %s: %s", p, strerror(errno));
        return -1;
    }
    pthread_mutex_lock(&lock);
    close_fd(fd);
    fd = f;
    free(path);
    path = p != NULL ? mrd_xstrdup(p) : NULL;
    atomic_store(&json, as_json);
    atomic_store(&enabled, p != NULL);
    if (p != NULL && !running) {
        running = pthread_create(&thread, NULL, writer, NULL) == 0;
        if (!running)
            atomic_store(&enabled, 0);
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

void
mrd_access_log_reopen(void)
{
    pthread_mutex_lock(&lock);
    reopen_wanted = 1;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
}

void
mrd_access_log_stop(void)
{
    pthread_mutex_lock(&lock);
    atomic_store(&enabled, 0);
    stop_wanted = 1;
    pthread_cond_signal(&wake);
    int was_running = running;
    running = 0;
    pthread_mutex_unlock(&lock);
    if (was_running)
        pthread_join(thread, NULL);
    close_fd(fd);
    fd = -1;
    free(path);
    path = NULL;
    mrd_buf_dispose(&queue);
}

int
mrd_access_log_enabled(void)
{
    return atomic_load_explicit(&enabled, memory_order_relaxed);
}

int
mrd_access_log_json(void)
{
    return atomic_load_explicit(&json, memory_order_relaxed);
}

void
mrd_access_log_write(const char *line, size_t len)
{
    pthread_mutex_lock(&lock);
    if (queue.len + len > QUEUE_MAX) {
        pthread_mutex_unlock(&lock);
        atomic_fetch_add(&dropped, 1);
        return;
    }
    mrd_buf_add(&queue, line, len);
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
}

uint64_t
mrd_access_log_dropped(void)
{
    return atomic_load(&dropped);
}
