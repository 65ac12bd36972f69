/*
 * accesslog.h: the access log (SPEC 2 access_log): one line per request, JSON
 * or text, to stdout or a file. Workers only append to a shared in-memory
 * queue under a short lock; a logger thread does the write(2)s, so a slow
 * disk never blocks a worker. When the queue holds more than 16 MiB, lines
 * are dropped and counted rather than buffered without bound.
 */
#ifndef MERIDIAN_ACCESSLOG_H
#define MERIDIAN_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

/* (Re)configure from the main thread: path NULL = off, "-" = stdout.
 * Returns 0, or -1 when the file cannot be opened (the old one stays). */
int mrd_access_log_configure(const char *path, int json);
/* SIGUSR1: reopen the file (after rotation) */
void mrd_access_log_reopen(void);
void mrd_access_log_stop(void);

/* 1 when lines are wanted (checked per request before formatting one) */
int mrd_access_log_enabled(void);
int mrd_access_log_json(void);
void mrd_access_log_write(const char *line, size_t len);
uint64_t mrd_access_log_dropped(void);

#endif
