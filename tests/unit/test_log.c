/*
 * Unit tests of the logger (proxy/log.c): a call site writes one line per
 * window and the rest become one summary with their count; sites, debug
 * lines and the access log are not limited by each other; with the writer
 * thread, a pipe nobody reads never blocks the caller and every line is
 * counted as written or dropped. A watchdog (alarm) fails a test that blocks.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../proxy/log.h"

#define WINDOW_MS 100

static int pfd[2];

static int setup(void **state)
{
    (void)state;
    assert_int_equal(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
    st_log_set_fd(pfd[1]);
    st_log_set_window_ms(WINDOW_MS);
    st_log_min_level = ST_LOG_DEBUG;
    alarm(20);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    alarm(0);
    st_log_set_fd(STDERR_FILENO);
    close(pfd[0]);
    close(pfd[1]);
    return 0;
}

/* Everything written to the pipe so far (NUL-terminated, caller frees). */
static char *drain(void)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t n = read(pfd[0], buf + len, cap - len - 1);
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void wait_window(void)
{
    struct timespec ts = {0, (WINDOW_MS + 60) * 1000000L};
    nanosleep(&ts, NULL); /* the thing under test is a time window */
}

static void test_one_line_then_a_summary(void **state)
{
    (void)state;
    st_log_stats_t before, after;
    st_log_get_stats(&before);
    for (int i = 0; i < 1000; i++)
        st_warn("msg=\"accept failed\" worker=%d err=EMFILE", i);
    char *out = drain();
    assert_int_equal(count(out, "\n"), 1);
    assert_non_null(strstr(out, "level=warn msg=\"accept failed\" worker=0 err=EMFILE\n"));
    free(out);
    wait_window();
    st_log_flush_repeats();
    out = drain();
    assert_int_equal(count(out, "\n"), 1);
    assert_non_null(strstr(
        out, "level=warn msg=\"suppressed repeats\" of=\"accept failed\" count=999 last_s="));
    free(out);
    st_log_get_stats(&after);
    assert_int_equal(after.suppressed - before.suppressed, 999);
    /* the window closed with the summary: the next line is written again */
    st_warn("msg=\"accept failed\" worker=%d err=EMFILE", 7);
    out = drain();
    assert_non_null(strstr(out, "worker=7 err=EMFILE\n"));
    free(out);
}

static void test_next_window_writes_summary_then_line(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        st_error("msg=\"upstream failed\" n=%d", i);
    wait_window();
    st_error("msg=\"upstream failed\" n=%d", 3); /* a new window: summary of 2, then this line */
    char *out = drain();
    assert_int_equal(count(out, "\n"), 3);
    const char *first = strstr(out, "n=0\n");
    const char *sum = strstr(out, "of=\"upstream failed\" count=2 ");
    const char *last = strstr(out, "n=3\n");
    assert_non_null(first);
    assert_non_null(sum);
    assert_non_null(last);
    assert_true(first < sum && sum < last);
    free(out);
}

static void test_sites_debug_and_access_not_limited(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++) {
        st_info("msg=\"site a\" i=%d", i);
        st_info("msg=\"site b\" i=%d", i);
        st_debug("msg=\"debug line\" i=%d", i);
        st_access("msg=access i=%d", i);
    }
    char *out = drain();
    assert_int_equal(count(out, "msg=\"site a\""), 1);
    assert_int_equal(count(out, "msg=\"site b\""), 1);
    assert_int_equal(count(out, "msg=\"debug line\""), 50);
    assert_int_equal(count(out, "msg=access"), 50);
    free(out);
    wait_window();
    st_log_flush_repeats();
    out = drain();
    assert_int_equal(count(out, "of=\"site a\" count=49 "), 1);
    assert_int_equal(count(out, "of=\"site b\" count=49 "), 1);
    free(out);
}

/* The writer thread owns a pipe nobody reads: it fills; the caller goes on
 * (the alarm would fire if a call blocked) and every line is accounted. */
static void test_full_pipe_never_blocks(void **state)
{
    (void)state;
    int fl = fcntl(pfd[1], F_GETFL);
    fcntl(pfd[1], F_SETFL, fl & ~O_NONBLOCK); /* a blocking stderr, like a real one */
    st_log_stats_t before, after;
    st_log_get_stats(&before);
    assert_int_equal(st_log_start(), 0);
    const int lines = 20000;
    for (int i = 0; i < lines; i++)
        st_access("msg=access client=127.0.0.1 method=GET uri=\"/v1/predict\" status=200 i=%d", i);
    st_log_get_stats(&after);
    assert_true(after.dropped - before.dropped > 0); /* 64 KiB pipe + 256 KiB ring < 2 MB */
    st_log_stop(); /* gives up on the stalled pipe within about a second */
    st_log_get_stats(&after);
    assert_int_equal((after.written - before.written) + (after.dropped - before.dropped), lines);
    char *out = drain(); /* what did get through is whole lines, in order */
    assert_true(strlen(out) > 0);
    assert_non_null(strstr(out, " i=0\n"));
    assert_int_equal(out[strlen(out) - 1], '\n');
    free(out);
    fcntl(pfd[1], F_SETFL, fl);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_line_then_a_summary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_window_writes_summary_then_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sites_debug_and_access_not_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_pipe_never_blocks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
