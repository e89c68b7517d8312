/*
 * shadowtee comparator: jansson parsing of a body for the parts that keep a
 * jansson tree (sample redaction, the text of a parse error) and the byte
 * scan that bounds nesting before any parser runs.
 */
#include <stdio.h>
#include <string.h>

#include "cmp_internal.h"

/* ---- parsing ------------------------------------------------------------ */

size_t stc_json_depth(const char *s, size_t len, size_t limit)
{
    size_t depth = 0, max = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '"') {
            /* skip the string: jump to each next quote, done when it is not
             * escaped (preceded by an even number of backslashes) */
            for (;;) {
                const char *q = memchr(s + i + 1, '"', len - i - 1);
                if (!q) return max;
                i = (size_t)(q - s);
                size_t bs = 0;
                while (bs < i && s[i - 1 - bs] == '\\')
                    bs++;
                if (bs % 2 == 0) break;
            }
        } else if (c == '{' || c == '[') {
            if (++depth > max) {
                max = depth;
                if (max > limit) return max;
            }
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return max;
}

stc_parse_status_t stc_json_parse(const char *body, size_t len, size_t max_depth, json_t **out,
                                  char *errbuf, size_t errlen)
{
    json_error_t jerr;
    *out = NULL;
    if (errbuf && errlen) errbuf[0] = '\0';
    if (stc_json_depth(body, len, max_depth) > max_depth) {
        if (errbuf && errlen) snprintf(errbuf, errlen, "nesting deeper than %zu", max_depth);
        return STC_PARSE_TOO_DEEP;
    }
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    /* jansson leaves the error unset when an early allocation fails */
    memset(&jerr, 0, sizeof(jerr));
    json_t *j = json_loadb(body, len, flags, &jerr);
    if (!j && json_error_code(&jerr) == json_error_numeric_overflow) {
        /* an integer beyond int64: compare this document's integers as doubles */
        memset(&jerr, 0, sizeof(jerr));
        j = json_loadb(body, len, flags | JSON_DECODE_INT_AS_REAL, &jerr);
    }
    if (!j) {
        if (jerr.text[0] == '\0' || json_error_code(&jerr) == json_error_out_of_memory)
            return STC_PARSE_NOMEM;
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return STC_PARSE_INVALID;
    }
    *out = j;
    return STC_PARSE_OK;
}
