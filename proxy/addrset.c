/* addrset: addresses of one upstream name and their re-resolution (see addrset.h). */
#include "addrset.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

const char *const st_resolve_result_names[ST_RESOLVE_COUNT] = {"unchanged", "changed", "failed"};

void st_addrset_init(st_addrset_t *s, uv_loop_t *loop, const st_addr_t *addr, const char *name,
                     st_addrset_cb cb, void *cb_arg)
{
    memset(s, 0, sizeof(*s));
    s->addr = addr;
    s->name = name;
    s->loop = loop;
    s->cb = cb;
    s->cb_arg = cb_arg;
    s->n = addr->naddrs;
    memcpy(s->a, addr->addrs, sizeof(s->a[0]) * (size_t)s->n);
}

int st_addrset_find(const st_addrset_t *s, const st_sockaddr_t *sa)
{
    for (int i = 0; i < s->n; i++)
        if (s->a[i].len == sa->len && memcmp(&s->a[i].sa, &sa->sa, sa->len) == 0) return i;
    return -1;
}

void st_addrset_format(const st_addrset_t *s, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < s->n && used + 1 < outlen; i++) {
        char one[128];
        st_sockaddr_format(&s->a[i], one, sizeof(one));
        int w = snprintf(out + used, outlen - used, "%s%s", i ? " " : "", one);
        if (w < 0) break;
        used += (size_t)w;
    }
}

/* 1 when fresh[0..n) holds the same addresses as s, in any order. */
static int same_set(const st_addrset_t *s, const st_sockaddr_t *fresh, int n)
{
    if (n != s->n) return 0;
    for (int i = 0; i < n; i++)
        if (st_addrset_find(s, &fresh[i]) < 0) return 0;
    return 1;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    st_addrset_t *s = req->data;
    s->resolving = 0;
    st_sockaddr_t fresh[ST_ADDR_MAX];
    int n = status == 0 ? st_config_addrs_from(res, fresh, ST_ADDR_MAX) : 0;
    if (res) uv_freeaddrinfo(res);
    if (status == UV_EAI_CANCELED || status == UV_ECANCELED) { /* drain */
        if (s->cb) s->cb(s, ST_RESOLVE_CANCELED, s->cb_arg);
        return;
    }
    enum st_resolve_result result;
    if (n == 0) {
        result = ST_RESOLVE_FAILED; /* keep the last addresses: stale beats none */
        if (!s->failing)
            st_log(s->quiet ? ST_LOG_DEBUG : ST_LOG_WARN,
                   "msg=\"upstream name does not resolve, keeping its last addresses\" pool=%s "
                   "upstream=%s err=\"%s\" addresses=%d",
                   s->name, s->addr->authority,
                   status ? uv_strerror(status) : "no IPv4 or IPv6 address", s->n);
        s->failing = 1;
    } else {
        if (s->failing)
            st_log(s->quiet ? ST_LOG_DEBUG : ST_LOG_INFO,
                   "msg=\"upstream name resolves again\" pool=%s upstream=%s", s->name,
                   s->addr->authority);
        s->failing = 0;
        result = ST_RESOLVE_UNCHANGED;
        if (!same_set(s, fresh, n)) { /* a new order alone changes nothing */
            st_sockaddr_t pref = s->a[s->cur];
            int had = s->n > 0;
            memcpy(s->a, fresh, sizeof(fresh[0]) * (size_t)n);
            s->n = n;
            s->gen++;
            int keep = had ? st_addrset_find(s, &pref) : -1;
            s->cur = keep >= 0 ? keep : 0;
            char list[512];
            st_addrset_format(s, list, sizeof(list));
            st_log(s->quiet ? ST_LOG_DEBUG : ST_LOG_INFO,
                   "msg=\"upstream addresses changed\" pool=%s upstream=%s addresses=\"%s\"",
                   s->name, s->addr->authority, list);
            result = ST_RESOLVE_CHANGED;
        }
    }
    if (s->cb) s->cb(s, result, s->cb_arg);
}

void st_addrset_refresh(st_addrset_t *s, uint64_t min_gap_ms)
{
    if (!st_addrset_dynamic(s) || s->resolving) return;
    uint64_t now = uv_now(s->loop);
    if (s->started && now - s->last_start_ms < min_gap_ms) return;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[8];
    snprintf(port, sizeof(port), "%d", s->addr->port);
    s->gai.data = s;
    s->started = 1;
    s->last_start_ms = now;
    if (uv_getaddrinfo(s->loop, &s->gai, on_resolved, s->addr->host, port, &hints) == 0)
        s->resolving = 1;
}

void st_addrset_cancel(st_addrset_t *s)
{
    if (s->resolving) uv_cancel((uv_req_t *)&s->gai);
}

void st_addrset_worked(st_addrset_t *s, unsigned gen, int idx)
{
    if (gen == s->gen && idx < s->n) s->cur = idx;
}

void st_addrset_failed(st_addrset_t *s, unsigned gen, int idx)
{
    if (gen == s->gen && idx == s->cur && s->n > 0) s->cur = (idx + 1) % s->n;
}

int st_addrset_dial(const st_addrset_t *s, int idx, st_sock_t *h, void *data, uv_connect_t *req,
                    uv_connect_cb cb)
{
    const st_sockaddr_t *a = &s->a[idx];
    if (a->sa.ss_family == AF_UNIX) {
        uv_pipe_init(s->loop, &h->pipe, 0);
        h->handle.data = data;
        /* libuv 1.44 cuts a long path silently: config made sure it fits */
        uv_pipe_connect(req, &h->pipe, s->addr->host, cb); /* errors arrive in cb */
        return 0;
    }
    uv_tcp_init(s->loop, &h->tcp);
    h->handle.data = data;
    return uv_tcp_connect(req, &h->tcp, (const struct sockaddr *)&a->sa, cb);
}
