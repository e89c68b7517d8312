/*
 * cmpjob: one unit of work for a comparator thread, and what the thread does
 * with it. The worker builds a job from a finished mirror by MOVING the
 * mirror's captures into it (the st_sbuf_t pointers change hands, no byte is
 * copied), pushes it through its st_cmpq_t ring and forgets it; from then on
 * the comparator thread owns it and frees it, bodies included, as soon as it
 * is compared or dropped. A job never points into worker memory.
 *
 * Kinds: ST_CMPJOB_PAIR, a tee'd pair (primary, shadow, optional noise)
 * compared at once. The kind field is where issue 16's mesh mode adds a
 * half-pair (one side's capture, published to Redis and joined by request
 * id on the comparator's loop and Redis connection); a joined pair goes
 * through st_cmpjob_compare() like a tee'd one, so both are recorded alike.
 */
#ifndef ST_CMPJOB_H
#define ST_CMPJOB_H

#include <stddef.h>
#include <stdint.h>

#include "tee.h"
#include "shadowtee/comparator.h"
#include "shadowtee/stats.h"

typedef enum { ST_CMPJOB_PAIR = 0 } st_cmpjob_kind_t;

typedef struct st_cmpjob {
    st_cmpjob_kind_t kind;
    size_t bytes;    /* memory the job holds (st_cmpjob_size), what the byte budget counts */
    int64_t wall_ms; /* wall clock when the pair was complete (ms since epoch) */
    int has_noise;   /* noise holds the noise replica's answer, to be used */
    st_capture_t primary;
    st_capture_t shadow; /* shadow.error set: no answer, recorded as an error */
    st_capture_t noise;
    char *path; /* request target, NUL-terminated; owned */
    char request_id[129];
    char method[24];
} st_cmpjob_t;

/* A zeroed job of `kind` with empty captures; NULL on allocation failure. */
st_cmpjob_t *st_cmpjob_new(st_cmpjob_kind_t kind);
/* Frees the job and everything it owns. */
void st_cmpjob_free(st_cmpjob_t *job);
/* Bytes held: the struct, the path and the capacity (not the length) of
 * every capture buffer, i.e. what the job keeps allocated. */
size_t st_cmpjob_size(const st_cmpjob_t *job);

/* Where a comparison is recorded: owned by one comparator thread. */
typedef struct {
    const st_rules_t *rules;
    st_endpoint_set_t *endpoints; /* interns endpoint keys (bounded) */
    st_stats_t *stats;            /* aggregation + Redis sink */
} st_cmpjob_sink_t;

/* Compares a PAIR job's primary and shadow (and noise) under the rules for
 * its endpoint and records the verdict in sink->stats. The job is not
 * freed. 0, or -1 when an allocation failed (nothing recorded). */
int st_cmpjob_compare(const st_cmpjob_t *job, st_cmpjob_sink_t *sink);

#endif
