/*
 * log.c: error log lines "2026-11-28T13:53:29Z [level] message" on stderr,
 * written with a single write(2) so that worker threads never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "meridian/log.h"

#define LOG_MIN(a, b) ((a) < (b) ? (a) : (b))

int mrd_log_verbosity = MRD_LOG_INFO;

void
mrd_log(enum mrd_log_level lvl, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    char line[2048];
    struct tm tm;
    time_t now;
    va_list ap;
    size_t n;

    if ((int)lvl > mrd_log_verbosity)
        return;
    now = time(NULL);
    gmtime_r(&now, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ ", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "[%s] ", names[lvl]);
    va_start(ap, fmt);
    int r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (r > 0)
        n += LOG_MIN((size_t)r, sizeof(line) - n - 2);
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) == -1) {
        /* nowhere left to report it */
    }
}
