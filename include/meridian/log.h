/*
 * log.h: the error log. Lines go to stderr, the configured error_log file or
 * syslog, with a timestamp and level; one write(2) per line so threads do
 * not interleave.
 */
#ifndef MERIDIAN_LOG_H
#define MERIDIAN_LOG_H

#include <stddef.h>

enum mrd_log_level { MRD_LOG_ERR, MRD_LOG_WARN, MRD_LOG_INFO, MRD_LOG_DEBUG };

extern int mrd_log_verbosity; /* messages above this level are dropped */

/* path: NULL (stderr; syslog when daemon), "-", "syslog" or a file, which is
 * opened onto stderr. -1 and err when the file cannot be opened (the old
 * destination stays). Main thread only. */
int mrd_log_configure(const char *path, int level, int daemon, char *err, size_t errlen);
int mrd_log_to_file(void);   /* stderr is the error log file */
void mrd_log_reopen(void);   /* SIGUSR1: reopen the file (after rotation) */

void mrd_log(enum mrd_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
