/*
 * shadowtee comparator: the JSONPath subset used by the rules (compile and
 * match patterns) and the JSONPath text of a concrete path (formatting).
 *
 * Pattern grammar (docs/RULES.md):
 *   path  := "$" step*
 *   step  := "." name | ".*" | "[" index "]" | "[*]" | "['" key "']" | "[\"" key "\"]"
 *          | ".." name | "..*" | ".." "[" ... "]"          (recursive descent)
 *   name  := [A-Za-z0-9_-] or any byte >= 0x80, one or more
 * A wildcard matches any child of an object or an array. A descent step
 * matches its selector at any depth below the current node (direct children
 * included): "$..ts" matches "$.ts" and "$.a[2].b.ts".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmp_internal.h"

static int is_name_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c >= 0x80;
}

/* Parses a bracket selector at s[*i] == '['. Keys are unescaped into kb. */
static int parse_bracket(const char *s, size_t len, size_t *i, stc_step_t *st, char *kb,
                         size_t *kbused, const char **why)
{
    size_t p = *i + 1;
    if (p < len && s[p] == '*') {
        if (p + 1 >= len || s[p + 1] != ']') goto bad;
        st->type = STC_STEP_ANY;
        *i = p + 2;
        return 0;
    }
    if (p < len && s[p] >= '0' && s[p] <= '9') {
        size_t v = 0;
        while (p < len && s[p] >= '0' && s[p] <= '9') {
            if (v > (size_t)-1 / 10 - 10) {
                *why = "array index too large";
                return -1;
            }
            v = v * 10 + (size_t)(s[p] - '0');
            p++;
        }
        if (p >= len || s[p] != ']') goto bad;
        st->type = STC_STEP_INDEX;
        st->index = v;
        *i = p + 1;
        return 0;
    }
    if (p < len && (s[p] == '\'' || s[p] == '"')) {
        char q = s[p++];
        size_t start = *kbused;
        while (p < len && s[p] != q) {
            char c = s[p++];
            if (c == '\\') {
                if (p >= len) break;
                c = s[p++];
                if (c != '\\' && c != '\'' && c != '"') {
                    *why = "only \\\\, \\' and \\\" escapes are allowed in a quoted key";
                    return -1;
                }
            }
            kb[(*kbused)++] = c;
        }
        if (p >= len || p + 1 >= len || s[p + 1] != ']') {
            *why = "unterminated quoted key (expected ['key'])";
            return -1;
        }
        st->type = STC_STEP_KEY;
        st->key = kb + start;
        st->keylen = *kbused - start;
        *i = p + 2;
        return 0;
    }
bad:
    *why = "expected [N], [*] or ['key'] after '['";
    return -1;
}

int stc_pattern_compile(const char *s, size_t len, stc_pattern_t *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    *why = NULL;
    if (len == 0 || s[0] != '$') {
        *why = "a path must start with '$'";
        return -1;
    }
    if (memchr(s, '\0', len)) {
        *why = "NUL byte in path";
        return -1;
    }
    out->text = malloc(len + 1);
    out->keybuf = malloc(len + 1);
    /* every step consumes at least 2 bytes */
    out->steps = calloc(len / 2 + 1, sizeof(stc_step_t));
    if (!out->text || !out->keybuf || !out->steps) {
        *why = "out of memory";
        goto fail;
    }
    memcpy(out->text, s, len);
    out->text[len] = '\0';

    size_t i = 1, kbused = 0;
    while (i < len) {
        stc_step_t *st = &out->steps[out->nsteps];
        if (s[i] == '.' && i + 1 < len && s[i + 1] == '.') {
            st->descent = 1;
            out->has_descent = 1;
            i += 2;
            if (i < len && s[i] == '[') {
                if (parse_bracket(s, len, &i, st, out->keybuf, &kbused, why) < 0) goto fail;
                out->nsteps++;
                continue;
            }
        } else if (s[i] == '.') {
            i++;
        } else if (s[i] == '[') {
            if (parse_bracket(s, len, &i, st, out->keybuf, &kbused, why) < 0) goto fail;
            out->nsteps++;
            continue;
        } else {
            *why = "expected '.', '..' or '[' between steps";
            goto fail;
        }
        /* a dotted selector: name or '*' */
        if (i < len && s[i] == '*') {
            st->type = STC_STEP_ANY;
            i++;
        } else {
            size_t start = i;
            while (i < len && is_name_byte((unsigned char)s[i]))
                i++;
            if (i == start) {
                *why = "expected a name or '*' after '.' (use ['key'] for other characters)";
                goto fail;
            }
            st->type = STC_STEP_KEY;
            memcpy(out->keybuf + kbused, s + start, i - start);
            st->key = out->keybuf + kbused;
            st->keylen = i - start;
            kbused += i - start;
        }
        out->nsteps++;
    }
    return 0;
fail:
    stc_pattern_deinit(out);
    return -1;
}

void stc_pattern_deinit(stc_pattern_t *p)
{
    free(p->text);
    free(p->steps);
    free(p->keybuf);
    memset(p, 0, sizeof(*p));
}

static int step_eq(const stc_step_t *st, const stc_seg_t *sg)
{
    switch (st->type) {
    case STC_STEP_ANY:
        return 1;
    case STC_STEP_INDEX:
        return sg->key == NULL && sg->index == st->index;
    case STC_STEP_KEY:
        return sg->key != NULL && sg->keylen == st->keylen &&
               memcmp(sg->key, st->key, st->keylen) == 0;
    }
    return 0;
}

static int match_from(const stc_step_t *st, size_t nst, const stc_seg_t *sg, size_t nsg)
{
    while (nst > 0) {
        if (st->descent) {
            for (size_t i = 0; i < nsg; i++)
                if (step_eq(st, &sg[i]) && match_from(st + 1, nst - 1, sg + i + 1, nsg - i - 1))
                    return 1;
            return 0;
        }
        if (nsg == 0 || !step_eq(st, sg)) return 0;
        st++, nst--, sg++, nsg--;
    }
    return nsg == 0;
}

int stc_pattern_match(const stc_pattern_t *p, const stc_seg_t *segs, size_t nsegs)
{
    if (!p->has_descent && p->nsteps != nsegs) return 0;
    return match_from(p->steps, p->nsteps, segs, nsegs);
}

static int is_identifier(const char *k, size_t n)
{
    if (n == 0) return 0;
    if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z') || k[0] == '_')) return 0;
    for (size_t i = 1; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* Appends raw bytes; when they do not fit, the text ends with "..." and the
 * returned length is buflen (a marker that the buffer is full). */
static size_t put(char *buf, size_t buflen, size_t used, const char *s, size_t n)
{
    if (used >= buflen) return used;
    if (used + n + 1 > buflen) {
        size_t room = buflen - 1 - used;
        memcpy(buf + used, s, room);
        if (buflen >= 4) memcpy(buf + buflen - 4, "...", 3);
        buf[buflen - 1] = '\0';
        return buflen;
    }
    memcpy(buf + used, s, n);
    buf[used + n] = '\0';
    return used + n;
}

size_t stc_path_append_key(char *buf, size_t buflen, size_t used, const char *key, size_t keylen)
{
    if (is_identifier(key, keylen)) {
        used = put(buf, buflen, used, ".", 1);
        return put(buf, buflen, used, key, keylen);
    }
    used = put(buf, buflen, used, "['", 2);
    for (size_t i = 0; i < keylen && used < buflen; i++) {
        unsigned char c = (unsigned char)key[i];
        char esc[8];
        if (c == '\'' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            used = put(buf, buflen, used, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            used = put(buf, buflen, used, esc, 4);
        } else {
            used = put(buf, buflen, used, (const char *)&key[i], 1);
        }
    }
    return put(buf, buflen, used, "']", 2);
}

size_t stc_path_format(const stc_seg_t *segs, size_t nsegs, char *buf, size_t buflen)
{
    size_t used = put(buf, buflen, 0, "$", 1);
    for (size_t i = 0; i < nsegs && used < buflen; i++) {
        if (segs[i].key) {
            used = stc_path_append_key(buf, buflen, used, segs[i].key, segs[i].keylen);
        } else {
            char idx[32];
            int n = snprintf(idx, sizeof(idx), "[%zu]", segs[i].index);
            used = put(buf, buflen, used, idx, (size_t)n);
        }
    }
    return used >= buflen ? buflen - 1 : used;
}
