/*
 * log.h: the error log. Lines go to stderr (or the daemon's log file) with a
 * timestamp and level; one write(2) per line so threads do not interleave.
 */
#ifndef MERIDIAN_LOG_H
#define MERIDIAN_LOG_H

enum mrd_log_level { MRD_LOG_ERR, MRD_LOG_WARN, MRD_LOG_INFO, MRD_LOG_DEBUG };

extern int mrd_log_verbosity; /* messages above this level are dropped */

void mrd_log(enum mrd_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
