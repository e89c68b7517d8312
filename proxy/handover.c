/* handover: passing listening sockets to a successor (see handover.h). */
#include "handover.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "worker.h"

#define MAGIC          "shadowtee-handover 1"
#define TAKE_TIMEOUT_S 3

struct st_handover {
    st_listener_t listener;
    st_app_t *app;
    st_admin_t *const *admin;
    char path[108];
    ino_t ino; /* of the socket file we created: a successor's replaces it */
    dev_t dev;
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int unix_addr(const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun->sun_path)) return -1;
    memcpy(sun->sun_path, path, strlen(path));
    return 0;
}

/* ---- successor side ----------------------------------------------------- */

int st_handover_take(const char *path, int *fds, int max, int *nlisten, int *nadmin, char *err,
                     size_t errlen)
{
    *nlisten = *nadmin = 0;
    struct sockaddr_un sun;
    if (unix_addr(path, &sun) != 0) return fail(err, errlen, "--handover %s: path too long", path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return fail(err, errlen, "--handover %s: socket: %s", path, strerror(errno));
    if (connect(s, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        int e = errno;
        close(s);
        if (e == ENOENT || e == ECONNREFUSED) return 0; /* nobody to take over from */
        return fail(err, errlen, "--handover %s: connect: %s", path, strerror(e));
    }
    struct timeval tv = {TAKE_TIMEOUT_S, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[128];
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * ST_HANDOVER_MAX_FDS)];
    } ctl;
    struct iovec iov = {buf, sizeof(buf) - 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
    ssize_t r = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
    int e = errno;
    close(s);
    int got[ST_HANDOVER_MAX_FDS], ngot = 0;
    for (struct cmsghdr *c = r > 0 ? CMSG_FIRSTHDR(&msg) : NULL; c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && ngot < ST_HANDOVER_MAX_FDS; i++)
            memcpy(&got[ngot++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    int nl = -1, na = -1, used = 0;
    if (r > 0) {
        buf[r] = '\0';
        if (sscanf(buf, MAGIC " %d %d\n%n", &nl, &na, &used) != 2 || used != r) nl = na = -1;
    }
    if (r <= 0 || nl < 0 || na < 0 || nl + na != ngot || ngot > max ||
        (msg.msg_flags & MSG_CTRUNC)) {
        for (int i = 0; i < ngot; i++)
            close(got[i]);
        if (r <= 0)
            return fail(err, errlen, "--handover %s: no answer from the running instance: %s", path,
                        r == 0 ? "connection closed" : strerror(e));
        return fail(err, errlen, "--handover %s: unexpected answer (%d descriptors)", path, ngot);
    }
    memcpy(fds, got, (size_t)ngot * sizeof(int));
    *nlisten = nl;
    *nadmin = na;
    return 0;
}

/* ---- serving side ------------------------------------------------------- */

static void on_accept(st_listener_t *l, int fd)
{
    st_handover_t *h = l->data;
    st_app_t *app = h->app;
    int fds[ST_HANDOVER_MAX_FDS], nl = 0, na = 0;
    /* The workers' sockets are set before their threads start and closed
     * only after a drain or stop command, which this (main) thread sends
     * after setting draining: while not draining they are stable. */
    if (!atomic_load(&app->draining)) {
        for (int i = 0; i < app->nworkers; i++) {
            const st_listener_t *wl = &app->workers[i].listener;
            for (int k = 0; wl->open && k < wl->nsocks && nl < ST_HANDOVER_MAX_FDS; k++)
                fds[nl++] = wl->socks[k].fd;
        }
        if (*h->admin) na = st_admin_fds(*h->admin, fds + nl, ST_HANDOVER_MAX_FDS - nl);
    }
    char text[96];
    int tlen = snprintf(text, sizeof(text), MAGIC " %d %d\n", nl, na);
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * ST_HANDOVER_MAX_FDS)];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {text, (size_t)tlen};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nl + na > 0) {
        msg.msg_control = ctl.b;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)(nl + na));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)(nl + na));
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)(nl + na));
    }
    /* a fresh connection's empty buffer takes these few bytes at once */
    ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
    close(fd);
    if (w != tlen) {
        st_warn("msg=\"handover failed\" path=%s err=\"%s\"", h->path,
                w < 0 ? strerror(errno) : "short write");
        return;
    }
    if (nl + na == 0) return;
    app->handed_over = 1;
    st_info("msg=\"listening sockets handed over to a successor\" path=%s listen=%d admin=%d",
            h->path, nl, na);
}

int st_handover_listen(const char *path)
{
    struct sockaddr_un sun;
    struct stat st;
    if (unix_addr(path, &sun) != 0) {
        st_error("msg=\"--handover: path too long\" path=%s", path);
        return -1;
    }
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            st_error("msg=\"--handover: not a socket, not replacing it\" path=%s", path);
            return -1;
        }
        unlink(path); /* a predecessor's (handed over, or dead): ours from now on */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old = umask(077);
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 && listen(fd, 8) == 0;
    umask(old);
    if (!ok) {
        st_error("msg=\"--handover: cannot serve\" path=%s err=\"%s\"", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

st_handover_t *st_handover_serve(st_app_t *app, st_admin_t *const *admin, const char *path, int fd)
{
    struct stat st;
    st_handover_t *h = calloc(1, sizeof(*h));
    if (!h || stat(path, &st) != 0) {
        st_error("msg=\"--handover: cannot serve\" path=%s err=\"%s\"", path,
                 h ? strerror(errno) : "out of memory");
        free(h);
        close(fd);
        unlink(path);
        return NULL;
    }
    h->app = app;
    h->admin = admin;
    snprintf(h->path, sizeof(h->path), "%s", path);
    h->ino = st.st_ino;
    h->dev = st.st_dev;
    h->listener.data = h;
    h->listener.name = "handover";
    h->listener.on_accept = on_accept;
    if (st_listener_start(&h->listener, app->loop, &fd, 1) != 0) {
        st_error("msg=\"--handover: cannot serve\" path=%s", path);
        st_listener_close(&h->listener);
        unlink(path);
        return NULL; /* h is freed by nobody: the caller exits */
    }
    return h;
}

static void on_listener_closed(st_listener_t *l)
{
    free(l->data);
}

void st_handover_stop(st_handover_t *h)
{
    struct stat st;
    if (stat(h->path, &st) == 0 && st.st_ino == h->ino && st.st_dev == h->dev) unlink(h->path);
    h->listener.on_closed = on_listener_closed;
    st_listener_close(&h->listener);
}
