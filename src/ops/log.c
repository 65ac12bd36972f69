/*
 * log.c: meridian's own messages, "2026-11-28T13:53:29Z [level] message".
 * They go to stderr, which is the configured error log file when there is
 * one (dup2'd over fd 2, so a reopen swaps it atomically under threads that
 * are writing), or to syslog(3). One write(2) per line, so worker threads
 * never interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "meridian/common.h"
#include "meridian/log.h"

#define LOG_MIN(a, b) ((a) < (b) ? (a) : (b))

int mrd_log_verbosity = MRD_LOG_INFO;

enum { TO_STDERR, TO_FILE, TO_SYSLOG };
static atomic_int log_to = TO_STDERR;
static char *log_path; /* the file, for reopening (main thread only) */

void
mrd_log(enum mrd_log_level lvl, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    char line[2048];
    struct tm tm;
    time_t now;
    va_list ap;
    size_t n, text;

    if ((int)lvl > mrd_log_verbosity)
        return;
    now = time(NULL);
    gmtime_r(&now, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ ", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "[%s] ", names[lvl]);
    text = n;
    va_start(ap, fmt);
    int r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (r > 0)
        n += LOG_MIN((size_t)r, sizeof(line) - n - 2);
    if (atomic_load_explicit(&log_to, memory_order_relaxed) == TO_SYSLOG) {
        line[n] = '\0';
        syslog(prio[lvl], "%s", line + text); /* syslog adds its own time */
        return;
    }
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) == -1) {
        /* nowhere left to report it */
    }
}

static int
open_onto_stderr(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

    if (fd == -1) {
        snprintf(err, errlen, "error_log: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fd != STDERR_FILENO) {
        if (dup2(fd, STDERR_FILENO) == -1) {
            snprintf(err, errlen, "error_log: %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        close(fd);
    }
    return 0;
}

int
mrd_log_configure(const char *path, int level, int daemon, char *err, size_t errlen)
{
    int to;

    if (path == NULL)
        to = daemon ? TO_SYSLOG : TO_STDERR;
    else if (strcmp(path, "-") == 0)
        to = TO_STDERR;
    else if (strcmp(path, "syslog") == 0)
        to = TO_SYSLOG;
    else
        to = TO_FILE;
    if (to == TO_FILE && (log_path == NULL || strcmp(log_path, path) != 0)) {
        if (open_onto_stderr(path, err, errlen) == -1)
            return -1;
        free(log_path);
        log_path = mrd_xstrdup(path);
    } else if (to != TO_FILE) {
        free(log_path);
        log_path = NULL;
    }
    if (to == TO_SYSLOG && atomic_load(&log_to) != TO_SYSLOG)
        openlog("meridian", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    atomic_store(&log_to, to);
    mrd_log_verbosity = level;
    return 0;
}

int
mrd_log_to_file(void)
{
    return atomic_load(&log_to) == TO_FILE;
}

void
mrd_log_reopen(void)
{
    char err[512];

    if (log_path != NULL && open_onto_stderr(log_path, err, sizeof(err)) == -1)
        mrd_log(MRD_LOG_ERR, "%s (still writing to the old file)", err);
}
