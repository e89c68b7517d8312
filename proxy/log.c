/*
 * log: formatting, per-site rate limiting and the non-blocking writer (see
 * log.h).
 *
 * Every thread logs, so the state is the process's one logger below; all of
 * it is atomics or guarded by `lock`. A line is formatted into a stack
 * buffer and then either written with one write(2) (direct mode: start-up,
 * shutdown, unit tests) or copied into the ring:
 *
 *   ring: RING_BYTES bytes, [head, head + len) mod RING_BYTES queued
 *     producers (any thread)  --lock, copy whole line or drop it-->  ring
 *     writer thread           --lock, take whole lines up to CHUNK-->
 *                             poll(POLLOUT) + write(whole lines, <= PIPE_BUF)
 *
 * The writer waits for POLLOUT and writes at most PIPE_BUF bytes of whole
 * lines at a time (a line is at most LINE_BYTES < PIPE_BUF), so it blocks
 * only in poll with a timeout and a reader never sees half a line; a pipe
 * nobody reads fills the ring and further lines are dropped and counted,
 * never waited for.
 *
 * Rate limit, per call site (sites[], keyed by the format string's address):
 * window_start is the monotonic ms the site's window opened (0: none open).
 * A line inside an open window only increments `repeats`, before any
 * formatting, so a flood costs an atomic add. The first line after the
 * window ended re-opens it (CAS) and first writes the summary of the
 * repeats; so does the writer's sweep every SWEEP_MS when a flood stopped.
 */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_BYTES   2048
#define RING_BYTES   (256 * 1024)
#define CHUNK        (64 * 1024)
#define NSITES       256 /* power of two; call sites beyond it are not limited */
#define SWEEP_MS     250
#define STOP_WAIT_MS 1000

int st_log_min_level = ST_LOG_INFO;

typedef struct {
    _Atomic(const char *) fmt;     /* the call site; NULL: free slot */
    _Atomic uint64_t window_start; /* monotonic ms its window opened, 0: none open */
    _Atomic uint64_t repeats;      /* lines counted, not written, in that window */
    _Atomic int level;
} st_log_site_t;

static struct {
    int fd;
    uint64_t window_ms;
    st_log_site_t sites[NSITES];
    _Atomic uint64_t written, dropped, suppressed;
    _Atomic int threaded; /* 1: the writer thread owns fd, lines go through the ring */
    pthread_mutex_t lock; /* ring, stop */
    pthread_cond_t cond;  /* ring not empty, or stop */
    char *ring;
    size_t head, len;
    int stop;
    uint64_t stop_deadline; /* monotonic ms the writer gives up on a stalled fd */
    pthread_t thread;
} logger = {
    .fd = STDERR_FILENO,
    .window_ms = ST_LOG_WINDOW_MS,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *st_log_level_name(int level)
{
    if (level < ST_LOG_DEBUG || level > ST_LOG_ERROR) return "unknown";
    return level_names[level];
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1; /* never 0 */
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        k++;
    return k;
}

/* ---- output ------------------------------------------------------------- */

/* One whole line: into the ring (or dropped), or one direct write(2). */
static void emit(const char *line, size_t len)
{
    if (!atomic_load_explicit(&logger.threaded, memory_order_acquire)) {
        ssize_t w = write(logger.fd, line, len);
        atomic_fetch_add(w == (ssize_t)len ? &logger.written : &logger.dropped, 1);
        return;
    }
    pthread_mutex_lock(&logger.lock);
    if (RING_BYTES - logger.len < len) {
        pthread_mutex_unlock(&logger.lock);
        atomic_fetch_add(&logger.dropped, 1);
        return;
    }
    size_t tail = (logger.head + logger.len) % RING_BYTES;
    size_t first = len < RING_BYTES - tail ? len : RING_BYTES - tail;
    memcpy(logger.ring + tail, line, first);
    memcpy(logger.ring, line + first, len - first);
    int was_empty = logger.len == 0;
    logger.len += len;
    pthread_mutex_unlock(&logger.lock);
    if (was_empty) pthread_cond_signal(&logger.cond);
}

/* "ts=... level=... " then the message and '\n', cut to LINE_BYTES. */
static size_t format_line(char *line, int level, const char *fmt, va_list ap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, LINE_BYTES, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, st_log_level_name(level));
    int m = vsnprintf(line + n, LINE_BYTES - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > LINE_BYTES - 2) len = LINE_BYTES - 2;
    line[len++] = '\n';
    return len;
}

static void emit_fmt(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit_fmt(int level, const char *fmt, ...)
{
    char line[LINE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_line(line, level, fmt, ap);
    va_end(ap);
    emit(line, len);
}

/* ---- rate limit --------------------------------------------------------- */

static st_log_site_t *site_of(const char *fmt, int level)
{
    uint64_t h = (uint64_t)(uintptr_t)fmt * 0x9E3779B97F4A7C15ULL;
    size_t start = (size_t)(h >> 56);
    for (size_t i = 0; i < NSITES; i++) {
        st_log_site_t *s = &logger.sites[(start + i) & (NSITES - 1)];
        const char *cur = atomic_load(&s->fmt);
        if (cur == fmt) return s;
        if (cur == NULL) {
            if (atomic_compare_exchange_strong(&s->fmt, &cur, fmt)) {
                atomic_store(&s->level, level);
                return s;
            }
            if (cur == fmt) return s;
        }
    }
    return NULL;
}

/* The site's msg value (quoted or a bare word), for the summary line. */
static void site_msg(const char *fmt, const char **p, int *n)
{
    const char *m = strstr(fmt, "msg=");
    m = m ? m + 4 : fmt;
    if (*m == '"') {
        m++;
        *n = (int)strcspn(m, "\"");
    } else {
        *n = (int)strcspn(m, " \"");
    }
    if (*n > 120) *n = 120;
    *p = m;
}

static void summary(st_log_site_t *s, uint64_t n, uint64_t span_ms)
{
    const char *msg;
    int mlen;
    site_msg(atomic_load(&s->fmt), &msg, &mlen);
    emit_fmt(atomic_load(&s->level),
             "msg=\"suppressed repeats\" of=\"%.*s\" count=%llu last_s=%.1f", mlen, msg,
             (unsigned long long)n, (double)span_ms / 1000.0);
}

/* 1: write the line (the window was opened for it); 0: counted as a repeat. */
static int admit(st_log_site_t *s)
{
    uint64_t now = now_ms();
    uint64_t ws = atomic_load(&s->window_start);
    if ((ws == 0 || now - ws >= logger.window_ms) &&
        atomic_compare_exchange_strong(&s->window_start, &ws, now)) {
        uint64_t n = atomic_exchange(&s->repeats, 0);
        if (n) summary(s, n, ws ? now - ws : logger.window_ms);
        return 1;
    }
    atomic_fetch_add_explicit(&s->repeats, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&logger.suppressed, 1, memory_order_relaxed);
    return 0;
}

/* Summaries of the sites with repeats whose window ended (every one when
 * `all`, at exit); their window closes, so the next line is written. */
static void sweep(int all)
{
    uint64_t now = now_ms();
    for (size_t i = 0; i < NSITES; i++) {
        st_log_site_t *s = &logger.sites[i];
        if (!atomic_load(&s->fmt) || atomic_load(&s->repeats) == 0) continue;
        uint64_t ws = atomic_load(&s->window_start);
        if (ws == 0 || (!all && now - ws < logger.window_ms)) continue;
        if (!atomic_compare_exchange_strong(&s->window_start, &ws, 0)) continue;
        uint64_t n = atomic_exchange(&s->repeats, 0);
        if (n) summary(s, n, now - ws);
    }
}

void st_log_flush_repeats(void)
{
    sweep(0);
}

void st_log_write(int level, const char *fmt, ...)
{
    if (level > ST_LOG_DEBUG) {
        st_log_site_t *s = site_of(fmt, level);
        if (s && !admit(s)) return;
    }
    char line[LINE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_line(line, level, fmt, ap);
    va_end(ap);
    emit(line, len);
}

void st_log_write_always(int level, const char *fmt, ...)
{
    char line[LINE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_line(line, level, fmt, ap);
    va_end(ap);
    emit(line, len);
}

/* ---- writer thread ------------------------------------------------------ */

/* Writes buf to the fd, PIPE_BUF at a time once poll says it takes bytes.
 * Gives up (the rest counted dropped) on an error, or past the stop
 * deadline. Called without the lock. */
static void write_out(const char *buf, size_t n)
{
    while (n > 0) {
        struct pollfd pfd = {.fd = logger.fd, .events = POLLOUT};
        int r = poll(&pfd, 1, 100);
        if (r == 0) {
            pthread_mutex_lock(&logger.lock);
            int give_up = logger.stop && now_ms() >= logger.stop_deadline;
            pthread_mutex_unlock(&logger.lock);
            if (give_up) break;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        size_t k = n < PIPE_BUF ? n : PIPE_BUF; /* atomic for a pipe, and whole lines */
        const char *nl = memrchr(buf, '\n', k);
        if (nl) k = (size_t)(nl - buf) + 1;
        ssize_t w = r < 0 ? -1 : write(logger.fd, buf, k);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (w <= 0) break; /* EPIPE (SIGPIPE is ignored), EBADF, ...: nobody can read it */
        atomic_fetch_add(&logger.written, count_lines(buf, (size_t)w));
        buf += w;
        n -= (size_t)w;
    }
    if (n > 0) atomic_fetch_add(&logger.dropped, count_lines(buf, n));
}

static void *writer_main(void *arg)
{
    (void)arg;
    char *buf = malloc(CHUNK);
    uint64_t last_sweep = now_ms();
    pthread_mutex_lock(&logger.lock);
    for (;;) {
        if (logger.len == 0 && !logger.stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += SWEEP_MS * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&logger.cond, &logger.lock, &ts);
        }
        if (now_ms() - last_sweep >= SWEEP_MS) { /* summaries go through emit(): no lock held */
            pthread_mutex_unlock(&logger.lock);
            st_log_flush_repeats();
            last_sweep = now_ms();
            pthread_mutex_lock(&logger.lock);
        }
        if (logger.len == 0) {
            if (logger.stop) break;
            continue;
        }
        size_t n = logger.len < CHUNK ? logger.len : CHUNK;
        size_t first = n < RING_BYTES - logger.head ? n : RING_BYTES - logger.head;
        if (buf) { /* whole lines only: the ring holds whole lines, a chunk may cut one */
            memcpy(buf, logger.ring + logger.head, first);
            memcpy(buf + first, logger.ring, n - first);
            const char *nl = memrchr(buf, '\n', n);
            if (nl) n = (size_t)(nl - buf) + 1;
        }
        logger.head = (logger.head + n) % RING_BYTES;
        logger.len -= n;
        pthread_mutex_unlock(&logger.lock);
        if (buf)
            write_out(buf, n);
        else
            atomic_fetch_add(&logger.dropped, 1);
        pthread_mutex_lock(&logger.lock);
    }
    pthread_mutex_unlock(&logger.lock);
    free(buf);
    return NULL;
}

int st_log_start(void)
{
    if (atomic_load(&logger.threaded)) return 0;
    logger.ring = malloc(RING_BYTES);
    if (!logger.ring) return -1;
    logger.head = logger.len = 0;
    logger.stop = 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals go to the loop threads */
    int rc = pthread_create(&logger.thread, NULL, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        free(logger.ring);
        logger.ring = NULL;
        return -1;
    }
    atomic_store_explicit(&logger.threaded, 1, memory_order_release);
    return 0;
}

void st_log_stop(void)
{
    if (!atomic_load(&logger.threaded)) return;
    sweep(1);
    pthread_mutex_lock(&logger.lock);
    logger.stop = 1;
    logger.stop_deadline = now_ms() + STOP_WAIT_MS;
    pthread_mutex_unlock(&logger.lock);
    pthread_cond_signal(&logger.cond);
    pthread_join(logger.thread, NULL);
    atomic_store_explicit(&logger.threaded, 0, memory_order_release);
    free(logger.ring);
    logger.ring = NULL;
}

void st_log_get_stats(st_log_stats_t *out)
{
    out->written = atomic_load_explicit(&logger.written, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&logger.dropped, memory_order_relaxed);
    out->suppressed = atomic_load_explicit(&logger.suppressed, memory_order_relaxed);
}

void st_log_set_fd(int fd)
{
    logger.fd = fd;
}

void st_log_set_window_ms(uint64_t ms)
{
    logger.window_ms = ms;
}
