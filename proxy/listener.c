/* listener: accept by hand, pause on a descriptor shortage (see listener.h). */
#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

int st_listen_socket(const struct sockaddr *sa, int reuseport, int backlog)
{
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        (sa->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        bind(fd, sa, len) != 0 || listen(fd, backlog) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int st_listen_socket_matches(int fd, const struct sockaddr *sa)
{
    int on = 0, type = 0;
    socklen_t olen = sizeof(on), tlen = sizeof(type);
    struct sockaddr_storage ss;
    socklen_t slen = sizeof(ss);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &olen) != 0 || !on ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM ||
        getsockname(fd, (struct sockaddr *)&ss, &slen) != 0 || ss.ss_family != sa->sa_family)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&ss, *b = (const void *)sa;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&ss, *b = (const void *)sa;
        return a->sin6_port == b->sin6_port &&
               memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
    }
    return 0;
}

static void set_paused_gauge(st_listener_t *l)
{
    if (l->metrics)
        atomic_store_explicit(&l->metrics->accept_paused, l->paused ? 1 : 0, memory_order_relaxed);
}

static void on_poll(uv_poll_t *p, int status, int events);

static void polls_start(st_listener_t *l)
{
    for (int i = 0; i < l->nsocks; i++)
        uv_poll_start(&l->socks[i].poll, UV_READABLE, on_poll);
}

static void pause_for(st_listener_t *l, int why)
{
    if (!l->paused)
        for (int i = 0; i < l->nsocks; i++)
            uv_poll_stop(&l->socks[i].poll);
    l->paused |= why;
    set_paused_gauge(l);
}

static void unpause(st_listener_t *l, int why)
{
    if (!(l->paused & why)) return;
    l->paused &= ~why;
    if (why == ST_PAUSE_BACKOFF) uv_timer_stop(&l->timer);
    if (!l->paused && l->open) polls_start(l);
    set_paused_gauge(l);
}

static void on_backoff(uv_timer_t *t)
{
    unpause(t->data, ST_PAUSE_BACKOFF);
}

static void back_off(st_listener_t *l, int err)
{
    int reason = err == EMFILE                     ? ST_ACCEPT_EMFILE
                 : err == ENFILE                   ? ST_ACCEPT_ENFILE
                 : err == ENOBUFS || err == ENOMEM ? ST_ACCEPT_ENOBUFS
                                                   : ST_ACCEPT_OTHER;
    if (l->metrics) ST_INC(l->metrics->accept_errors[reason]);
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : ST_ACCEPT_BACKOFF_MIN_MS;
    if (l->backoff_ms > ST_ACCEPT_BACKOFF_MAX_MS) l->backoff_ms = ST_ACCEPT_BACKOFF_MAX_MS;
    st_warn("msg=\"accept failed, pausing the listener\" listener=\"%s\" err=%s backoff_ms=%llu",
            l->name, uv_err_name(-err), (unsigned long long)l->backoff_ms);
    pause_for(l, ST_PAUSE_BACKOFF);
    uv_timer_start(&l->timer, on_backoff, l->backoff_ms, 0);
}

static int at_cap(const st_listener_t *l)
{
    return l->max_conns && l->nconns && *l->nconns >= l->max_conns;
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    st_listener_t *l = p->data;
    (void)events;
    uv_os_fd_t fd;
    if (status < 0 || uv_fileno((uv_handle_t *)p, &fd) != 0) {
        back_off(l, status < 0 ? -status : EBADF);
        return;
    }
    for (int i = 0; i < ST_ACCEPT_BATCH && l->open && !l->paused; i++) {
        if (at_cap(l)) {
            st_warn("msg=\"connection limit reached, not accepting\" listener=\"%s\" "
                    "max_connections=%zu",
                    l->name, l->max_conns);
            pause_for(l, ST_PAUSE_FULL);
            return;
        }
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0) {
            l->backoff_ms = 0;
            l->on_accept(l, c);
            continue;
        }
        switch (errno) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return;
        case EINTR:
        case ECONNABORTED: /* the client gave up while queued: nothing of ours failed */
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case EPERM: /* accept(2): pending network errors of that connection, retry */
            continue;
        default:
            back_off(l, errno);
            return;
        }
    }
}

int st_listener_start(st_listener_t *l, uv_loop_t *loop, const int *fds, int n)
{
    int rc = 0;
    l->nsocks = 0;
    l->paused = 0;
    l->backoff_ms = 0;
    l->handles = 0;
    if (n > ST_LISTENER_MAX) rc = UV_EINVAL;
    for (int i = 0; i < n; i++) {
        if (rc || i >= ST_LISTENER_MAX) {
            close(fds[i]);
            continue;
        }
        l->socks[i].fd = fds[i];
        rc = uv_poll_init_socket(loop, &l->socks[i].poll, fds[i]);
        if (rc) {
            close(fds[i]);
            continue;
        }
        l->socks[i].poll.data = l;
        l->nsocks++;
        l->handles++;
    }
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    l->handles++;
    l->open = 1;
    if (l->metrics)
        atomic_store_explicit(&l->metrics->max_connections, l->max_conns, memory_order_relaxed);
    if (rc == 0) polls_start(l);
    return rc;
}

void st_listener_resume(st_listener_t *l)
{
    /* only the cap: after EMFILE the timer decides, as a descriptor that came
     * free is most often taken at once by an upstream connect (the fault
     * suite saw ~6,000 futile accepts a second when every close retried) */
    if (l->open && (l->paused & ST_PAUSE_FULL) && !at_cap(l)) unpause(l, ST_PAUSE_FULL);
}

static void on_handle_closed(uv_handle_t *h)
{
    st_listener_t *l = h->data;
    if (--l->handles > 0) return;
    for (int i = 0; i < l->nsocks; i++) /* after the polls are gone from epoll */
        close(l->socks[i].fd);
    l->nsocks = 0;
    if (l->on_closed) l->on_closed(l);
}

void st_listener_close(st_listener_t *l)
{
    if (!l->open) return;
    l->open = 0;
    l->paused = 0;
    set_paused_gauge(l);
    for (int i = 0; i < l->nsocks; i++)
        uv_close((uv_handle_t *)&l->socks[i].poll, on_handle_closed);
    uv_close((uv_handle_t *)&l->timer, on_handle_closed);
}
