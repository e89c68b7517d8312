/* reqcheck: request-head grammar, target forms, Host, Upgrade (see reqcheck.h). */
#include "reqcheck.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

/* Byte classes: C_TOKEN tchar (RFC 9110 5.6.2), C_TARGET a request-target
 * byte (visible ASCII but '#': the grammar has no fragment, and no byte
 * above 0x7e), C_REG a reg-name byte besides pct-encoded (RFC 3986
 * unreserved / sub-delims). Bytes from 0x80 are in no class. */
enum { C_TOKEN = 1, C_TARGET = 2, C_REG = 4 };
static const unsigned char cls[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    0, 7, 2, 1, 7, 3, 7, 7, 6, 6, 7, 7, 6, 7, 7, 2, /* 0x20  !"#$%&'()*+,-./ */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 6, 2, 6, 2, 2, /* 0x30 0-9:;<=>? */
    2, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x40 @A-O */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 2, 2, 3, 7, /* 0x50 P-Z[\]^_ */
    3, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x60 `a-o */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 3, 2, 7, 0, /* 0x70 p-z{|}~ DEL */
};

static inline int is(unsigned char ch, int c)
{
    return cls[ch] & c;
}

/* ---- the head scanner ---------------------------------------------------- */

enum scan_state {
    S_START = 0, /* before the request line: empty lines are skipped (RFC 9112 2.2) */
    S_START_LF,  /* CR of an empty line before the request line seen */
    S_METHOD,    /* in the method token */
    S_TARGET0,   /* right after the method's SP: the target's first byte */
    S_TARGET,    /* in the request-target */
    S_VERSION,   /* in the HTTP-version, which starts at mark */
    S_RL_LF,     /* CR after the version seen */
    S_LINE,      /* at the start of a field line or of the empty line */
    S_NAME,      /* in a field name */
    S_VALUE,     /* after the colon: value bytes are llhttp's to judge */
    S_VALUE_LF,  /* CR after a value seen */
    S_END_LF,    /* CR of the empty line seen */
};

/* Where a CR/LF at the wrong place sends the verdict. */
static enum st_reject line_end(unsigned char ch, enum st_reject otherwise)
{
    return ch == '\n' ? ST_REJ_BARE_LF : otherwise;
}

/* The first offset from i on whose byte is not in class c, or len. */
static inline size_t span(const unsigned char *b, size_t i, size_t len, int c)
{
    while (i < len && is(b[i], c))
        i++;
    return i;
}

enum st_reject st_reqcheck_scan(st_reqcheck_scan_t *s, const char *head, size_t len)
{
    static const char version[] = "HTTP/1.1"; /* digits stand for any DIGIT */
    const unsigned char *b = (const unsigned char *)head;
    size_t i = s->pos;
    enum scan_state st = (enum scan_state)s->state;
    if (s->done) return ST_REJ_NONE;
    /* Each state consumes at least one byte; the long runs (target, names,
     * values) in one inner loop or memchr. */
    while (i < len) {
        unsigned char ch = b[i];
        switch (st) {
        case S_START:
            if (ch == '\r')
                st = S_START_LF;
            else if (is(ch, C_TOKEN))
                st = S_METHOD;
            else
                return line_end(ch, ST_REJ_BAD_REQUEST_LINE);
            i++;
            break;
        case S_START_LF:
        case S_RL_LF:
        case S_VALUE_LF:
            if (ch != '\n') return ST_REJ_BARE_CR;
            st = st == S_START_LF ? S_START : S_LINE;
            i++;
            break;
        case S_METHOD:
            i = span(b, i, len, C_TOKEN);
            if (i == len) break;
            if (b[i] != ' ') return line_end(b[i], ST_REJ_BAD_REQUEST_LINE);
            st = S_TARGET0;
            i++;
            break;
        case S_TARGET0: /* a second SP, a tab, an empty target */
            if (!is(ch, C_TARGET)) return line_end(ch, ST_REJ_BAD_REQUEST_LINE);
            st = S_TARGET;
            i++;
            break;
        case S_TARGET:
            i = span(b, i, len, C_TARGET);
            if (i == len) break;
            if (b[i] == '\r' || b[i] == '\n')
                return ST_REJ_HTTP09; /* method SP target CRLF: nothing more will come */
            if (b[i] != ' ') return ST_REJ_BAD_REQUEST_LINE;
            st = S_VERSION;
            s->mark = ++i;
            break;
        case S_VERSION: {
            size_t k = i - s->mark; /* "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 2.3) */
            if (k == 0 && len - i >= 9 && memcmp(b + i, "HTTP/", 5) == 0 && isdigit(b[i + 5]) &&
                b[i + 6] == '.' && isdigit(b[i + 7]) && b[i + 8] == '\r') {
                st = S_RL_LF; /* the whole version at once; anything else byte by byte */
                i += 9;
                break;
            }
            if (k == 8) {
                if (ch != '\r') return line_end(ch, ST_REJ_BAD_REQUEST_LINE);
                st = S_RL_LF;
            } else if (k == 5 || k == 7 ? !isdigit(ch) : ch != (unsigned char)version[k]) {
                return line_end(ch, ST_REJ_BAD_REQUEST_LINE);
            }
            i++;
            break;
        }
        case S_LINE:
            if (ch == '\r')
                st = S_END_LF;
            else if (is(ch, C_TOKEN))
                st = S_NAME;
            else /* ":" (an empty name), SP/HTAB (obs-fold), any other byte */
                return line_end(ch, ST_REJ_BAD_HEADER_NAME);
            i++;
            break;
        case S_NAME:
            i = span(b, i, len, C_TOKEN);
            if (i == len) break;
            if (b[i] != ':') /* whitespace before the colon, a line without one */
                return ST_REJ_BAD_HEADER_NAME;
            st = S_VALUE;
            i++;
            break;
        case S_VALUE: { /* to the CR; an LF before it is bare (memchr: vectorised) */
            const unsigned char *cr = memchr(b + i, '\r', len - i);
            size_t end = cr ? (size_t)(cr - b) : len;
            if (memchr(b + i, '\n', end - i)) return ST_REJ_BARE_LF;
            i = end;
            if (cr) {
                st = S_VALUE_LF;
                i++;
            }
            break;
        }
        case S_END_LF:
            if (ch != '\n') return ST_REJ_BARE_CR;
            s->done = 1;
            s->pos = i + 1;
            s->state = (unsigned char)st;
            return ST_REJ_NONE;
        }
    }
    s->pos = len;
    s->state = (unsigned char)st;
    return ST_REJ_NONE;
}

/* ---- authority, target forms, Host ---------------------------------------- */

/* IP-literal without its brackets: IPv6address or IPvFuture (RFC 3986 3.2.2). */
static int ip_literal(const char *s, size_t len)
{
    /* IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ) */
    if (len > 1 && (s[0] == 'v' || s[0] == 'V')) {
        size_t i = 1;
        while (i < len && isxdigit((unsigned char)s[i]))
            i++;
        if (i == 1 || i == len || s[i] != '.' || i + 1 == len) return 0;
        for (i++; i < len; i++)
            if (!is((unsigned char)s[i], C_REG) && s[i] != ':') return 0;
        return 1;
    }
    char buf[64];
    unsigned char addr[16];
    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, addr) == 1; /* no zone id (RFC 6874): not in a Host */
}

int st_reqcheck_authority(const char *s, size_t len, int need_port)
{
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    size_t i = 0;
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || !ip_literal(s + 1, (size_t)(close - s) - 1)) return 0;
        i = (size_t)(close - s) + 1;
    } else { /* reg-name: runs of C_REG bytes between pct-encoded triplets */
        const unsigned char *u = (const unsigned char *)s;
        for (i = span(u, 0, len, C_REG);
             i + 2 < len && u[i] == '%' && isxdigit(u[i + 1]) && isxdigit(u[i + 2]);
             i = span(u, i + 3, len, C_REG))
            ;
        if (i == 0) return 0; /* an http(s) URI has a non-empty host (RFC 9110 4.2.1) */
    }
    if (i == len) return !need_port;
    if (s[i] != ':' || len - i - 1 == 0 || len - i - 1 > 5) return 0;
    unsigned port = 0;
    for (i++; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return 0;
        port = port * 10 + (unsigned)(s[i] - '0');
    }
    return port <= 65535;
}

/* absolute-form: "http" / "https" "://" authority [path-abempty] ["?" query].
 * Narrows m->url to the origin-form and points m->authority at the host. */
static enum st_reject absolute_form(st_http_msg_t *m, int method)
{
    const char *u = m->url, *end = m->url + m->url_len;
    size_t skip = 0;
    if (m->url_len > 7 && st_http_name_eq(u, 7, "http://"))
        skip = 7;
    else if (m->url_len > 8 && st_http_name_eq(u, 8, "https://"))
        skip = 8;
    if (!skip) return ST_REJ_BAD_REQUEST_LINE; /* another scheme, or not a URI at all */
    const char *a = u + skip, *p = a;
    while (p < end && *p != '/' && *p != '?')
        p++;
    size_t alen = (size_t)(p - a);
    if (!st_reqcheck_authority(a, alen, 0)) return ST_REJ_BAD_HOST; /* userinfo '@' included */
    m->authority = a;
    m->authority_len = alen;
    if (p == end) { /* no path: "/" (RFC 9112 3.2.1), "*" for OPTIONS (3.2.4) */
        m->url = method == HTTP_OPTIONS ? "*" : "/";
        m->url_len = 1;
    } else if (*p == '/') {
        m->url = p;
        m->url_len = (size_t)(end - p);
    } else { /* "?query" with an empty path: the authority moves one byte left, onto the
                scheme's second '/', so that "/" fits right before the '?' */
        char *w = (char *)a - 1;
        memmove(w, a, alen);
        w[alen] = '/';
        m->authority = w;
        m->url = w + alen;
        m->url_len = (size_t)(end - m->url);
    }
    return ST_REJ_NONE;
}

enum st_reject st_reqcheck_head(st_http_msg_t *m, int method, int http_minor, int allow_connect)
{
    if (method == HTTP_CONNECT && !allow_connect) return ST_REJ_CONNECT;
    if (!m->url || m->url_len == 0) return ST_REJ_BAD_REQUEST_LINE;
    enum st_reject why = ST_REJ_NONE;
    if (method == HTTP_CONNECT) /* authority-form, port required (RFC 9110 9.3.6) */
        why = st_reqcheck_authority(m->url, m->url_len, 1) ? ST_REJ_NONE : ST_REJ_BAD_REQUEST_LINE;
    else if (m->url[0] == '*' && m->url_len == 1)
        why = method == HTTP_OPTIONS ? ST_REJ_NONE : ST_REJ_BAD_REQUEST_LINE;
    else if (m->url[0] != '/')
        why = absolute_form(m, method);
    if (why) return why;
    /* RFC 9112 3.2: a 1.1 request without Host, any request with more than one */
    if (m->nhost > 1 || (m->nhost == 0 && http_minor >= 1)) return ST_REJ_BAD_HOST;
    if (m->host >= 0 && !st_reqcheck_authority(m->hdr[m->host].value, m->hdr[m->host].value_len, 0))
        return ST_REJ_BAD_HOST;
    return ST_REJ_NONE;
}

/* ---- Upgrade ---------------------------------------------------------------- */

static int in_list(const char *list, const char *name, size_t len)
{
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *t = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        if ((size_t)(p - t) == len && len > 0) {
            size_t i = 0;
            while (i < len && tolower((unsigned char)t[i]) == tolower((unsigned char)name[i]))
                i++;
            if (i == len) return 1;
        }
    }
    return 0;
}

int st_reqcheck_protocols_allowed(const char *v, size_t len, const char *allow)
{
    size_t i = 0;
    int n = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i == len) break;
        size_t name = i;
        while (i < len && is((unsigned char)v[i], C_TOKEN))
            i++;
        size_t name_len = i - name;
        if (name_len == 0) return 0;
        if (i < len && v[i] == '/') { /* protocol-version */
            size_t ver = ++i;
            while (i < len && is((unsigned char)v[i], C_TOKEN))
                i++;
            if (i == ver) return 0;
        }
        if (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t') return 0;
        if (!in_list(allow, v + name, name_len)) return 0;
        n++;
    }
    return n > 0;
}

int st_reqcheck_upgrade_allowed(const st_http_msg_t *m, const char *allow)
{
    int n = 0;
    for (size_t i = 0; i < m->nhdr; i++) {
        const st_header_t *h = &m->hdr[i];
        if (!st_http_name_eq(h->name, h->name_len, "upgrade")) continue;
        if (!st_reqcheck_protocols_allowed(h->value, h->value_len, allow)) return 0;
        n++;
    }
    return n > 0;
}

int st_reqcheck_allow_list_valid(const char *allow)
{
    for (const char *p = allow; *p; p++)
        if (*p != ',' && *p != ' ' && !is((unsigned char)*p, C_TOKEN)) return 0;
    return 1;
}

/* ---- statuses and llhttp's refusals --------------------------------------- */

int st_reqcheck_status(enum st_reject why)
{
    switch (why) {
    case ST_REJ_CONNECT:
        return 405;
    case ST_REJ_UNKNOWN_METHOD:
    case ST_REJ_TRANSFER_CODING:
        return 501;
    case ST_REJ_VERSION:
        return 505;
    case ST_REJ_HEAD_TOO_LARGE:
        return 431;
    case ST_REJ_URI_TOO_LONG:
        return 414;
    case ST_REJ_BODY_TOO_LARGE:
        return 413;
    case ST_REJ_TIMEOUT:
        return 408;
    default:
        return 400;
    }
}

enum st_reject st_reqcheck_errno(llhttp_errno_t err)
{
    switch (err) {
    case HPE_INVALID_METHOD: /* a token llhttp has no entry for: RFC 9110 9.1 says 501 */
        return ST_REJ_UNKNOWN_METHOD;
    case HPE_PAUSED_H2_UPGRADE: /* the HTTP/2 connection preface */
        return ST_REJ_VERSION;
    case HPE_INVALID_URL:
    case HPE_INVALID_VERSION: /* HTTP/1.2 and up: llhttp knows 0.9, 1.0, 1.1, 2.0 */
    case HPE_INVALID_CONSTANT:
        return ST_REJ_BAD_REQUEST_LINE;
    case HPE_INVALID_HEADER_TOKEN: /* names passed the scanner: a value byte */
        return ST_REJ_BAD_HEADER_VALUE;
    case HPE_INVALID_CONTENT_LENGTH:
    case HPE_UNEXPECTED_CONTENT_LENGTH:
    case HPE_INVALID_TRANSFER_ENCODING:
    case HPE_INVALID_CHUNK_SIZE:
    case HPE_STRICT:
    case HPE_CR_EXPECTED:
    case HPE_LF_EXPECTED:
        return ST_REJ_BAD_FRAMING;
    default:
        return ST_REJ_MALFORMED;
    }
}
