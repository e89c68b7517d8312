/*
 * log: one key=value line per event on stderr, with a level.
 * The level is set once at start-up, before any worker thread runs, and only
 * read afterwards; the macro checks it before any formatting is done.
 *
 * Repeats are rate-limited per call site (its format string): a site writes
 * its first line, the rest of that window (ST_LOG_WINDOW_MS) is only counted,
 * and one summary line says how many were suppressed
 * (msg="suppressed repeats" of="<the site's msg>" count=N last_s=T). Debug
 * lines (asked for explicitly) and the access log (st_access: one line per
 * request by design) are not limited.
 *
 * Writing never blocks the thread that logs once st_log_start() ran: lines go
 * into a bounded ring that one writer thread drains to stderr; a line that
 * does not fit (stderr is a full pipe nobody reads) is dropped and counted.
 * Before st_log_start() and after st_log_stop() lines are written directly.
 */
#ifndef ST_LOG_H
#define ST_LOG_H

#include <stdint.h>

enum st_log_level { ST_LOG_DEBUG = 0, ST_LOG_INFO, ST_LOG_WARN, ST_LOG_ERROR };

#define ST_LOG_WINDOW_MS 1000 /* one line per call site per window */

extern int st_log_min_level; /* written once by main() before threads start */

/* Rate-limited by `fmt` (the call site) unless level is debug. */
void st_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Never rate-limited (the access log). Still dropped, not blocked, when full. */
void st_log_write_always(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *st_log_level_name(int level);

/* Starts the writer thread that owns stderr from now on. 0, or -1 (lines keep
 * being written directly). Call before any loop thread starts. */
int st_log_start(void);
/* Writes what is queued (waiting at most ~1 s for a stalled stderr: the rest
 * is counted as dropped), stops the writer thread; direct writes again. */
void st_log_stop(void);
/* Writes the summary of every call site whose window ended with suppressed
 * repeats. The writer thread does this on its own every 250 ms. */
void st_log_flush_repeats(void);

typedef struct {
    uint64_t written;    /* lines handed to write(2) (or queued for it) */
    uint64_t dropped;    /* lines lost: queue full, or stderr failed or stalled at exit */
    uint64_t suppressed; /* repeats counted instead of written */
} st_log_stats_t;
void st_log_get_stats(st_log_stats_t *out);

/* Tests: where lines go (default STDERR_FILENO) and a window other than
 * ST_LOG_WINDOW_MS. Not for use while other threads log. */
void st_log_set_fd(int fd);
void st_log_set_window_ms(uint64_t ms);

#define st_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= st_log_min_level) st_log_write((level), __VA_ARGS__);                       \
    } while (0)
#define st_debug(...) st_log(ST_LOG_DEBUG, __VA_ARGS__)
#define st_info(...)  st_log(ST_LOG_INFO, __VA_ARGS__)
#define st_warn(...)  st_log(ST_LOG_WARN, __VA_ARGS__)
#define st_error(...) st_log(ST_LOG_ERROR, __VA_ARGS__)
#define st_access(...)                                                                             \
    do {                                                                                           \
        if (ST_LOG_INFO >= st_log_min_level) st_log_write_always(ST_LOG_INFO, __VA_ARGS__);        \
    } while (0)

#endif
