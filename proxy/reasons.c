/* reasons: the name and label arrays of the reason tables (see reasons.h). */
#include "reasons.h"

#include <string.h>

#define NAME_UPFAIL(id, label)  "ST_UPFAIL_" #id,
#define NAME_TLSFAIL(id, label) "ST_TLSFAIL_" #id,
#define NAME_CLOSE(id, label)   "ST_CLOSE_" #id,
#define NAME_SKIP(id, label)    "ST_SKIP_" #id,
#define NAME_MDROP(id, label)   "ST_MDROP_" #id,
#define NAME_CMPSKIP(id, label) "ST_CMPSKIP_" #id,
#define NAME_REJ(id, label)     "ST_REJ_" #id,
#define NAME_ACCEPT(id, label)  "ST_ACCEPT_" #id,
#define LABEL(id, label)        label,

const char *const st_upfail_names[ST_UPFAIL_COUNT] = {ST_UPFAIL_TABLE(NAME_UPFAIL)};
const char *const st_upfail_labels[ST_UPFAIL_COUNT] = {ST_UPFAIL_TABLE(LABEL)};
const char *const st_tls_fail_names[ST_TLSFAIL_COUNT] = {ST_TLSFAIL_TABLE(NAME_TLSFAIL)};
const char *const st_tls_fail_labels[ST_TLSFAIL_COUNT] = {ST_TLSFAIL_TABLE(LABEL)};
const char *const st_close_names[ST_CLOSE_COUNT] = {ST_CLOSE_TABLE(NAME_CLOSE)};
const char *const st_close_labels[ST_CLOSE_COUNT] = {ST_CLOSE_TABLE(LABEL)};
const char *const st_skip_names[ST_SKIP_COUNT] = {ST_SKIP_TABLE(NAME_SKIP)};
const char *const st_skip_labels[ST_SKIP_COUNT] = {ST_SKIP_TABLE(LABEL)};
const char *const st_mesh_drop_names[ST_MDROP_COUNT] = {ST_MDROP_TABLE(NAME_MDROP)};
const char *const st_mesh_drop_labels[ST_MDROP_COUNT] = {ST_MDROP_TABLE(LABEL)};
const char *const st_cmpskip_names[ST_CMPSKIP_COUNT] = {ST_CMPSKIP_TABLE(NAME_CMPSKIP)};
const char *const st_cmpskip_labels[ST_CMPSKIP_COUNT] = {ST_CMPSKIP_TABLE(LABEL)};
const char *const st_reject_names[ST_REJ_COUNT] = {ST_REJ_TABLE(NAME_REJ)};
const char *const st_reject_labels[ST_REJ_COUNT] = {ST_REJ_TABLE(LABEL)};
const char *const st_accept_err_names[ST_ACCEPT_ERR_COUNT] = {ST_ACCEPT_TABLE(NAME_ACCEPT)};
const char *const st_accept_err_labels[ST_ACCEPT_ERR_COUNT] = {ST_ACCEPT_TABLE(LABEL)};

int st_reason_find(const char *const *labels, int n, const char *s, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(labels[i]) == len && memcmp(labels[i], s, len) == 0) return i;
    return -1;
}
