/*
 * log: one key=value line per event on stderr, with a level.
 * The level is set once at start-up, before any worker thread runs, and only
 * read afterwards; the macro checks it before any formatting is done.
 */
#ifndef ST_LOG_H
#define ST_LOG_H

enum st_log_level { ST_LOG_DEBUG = 0, ST_LOG_INFO, ST_LOG_WARN, ST_LOG_ERROR };

extern int st_log_min_level; /* written once by main() before threads start */

void st_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *st_log_level_name(int level);

#define st_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= st_log_min_level) st_log_write((level), __VA_ARGS__);                       \
    } while (0)
#define st_debug(...) st_log(ST_LOG_DEBUG, __VA_ARGS__)
#define st_info(...)  st_log(ST_LOG_INFO, __VA_ARGS__)
#define st_warn(...)  st_log(ST_LOG_WARN, __VA_ARGS__)
#define st_error(...) st_log(ST_LOG_ERROR, __VA_ARGS__)

#endif
