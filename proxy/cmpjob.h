/*
 * cmpjob: one unit of work for a comparator thread, and what the thread does
 * with it. The worker builds a job from a finished mirror by MOVING the
 * mirror's captures into it (the st_sbuf_t pointers change hands, no byte is
 * copied), pushes it through its st_cmpq_t ring and forgets it; from then on
 * the comparator thread owns it and frees it, bodies included, as soon as it
 * is compared or dropped. A job never points into worker memory.
 *
 * Kinds: ST_CMPJOB_PAIR, a tee'd pair (primary, shadow, optional noise)
 * compared at once. ST_CMPJOB_HALF (mesh mode, issue 16): one side's own
 * capture, in `primary` whatever the side (`role`), published to Redis by
 * the comparator thread and joined there by request id; when the join
 * script hands the partner's half back, the partner is decoded into the
 * other capture (stable's in primary, shadow's in shadow) and the pair goes
 * through st_cmpjob_compare() like a tee'd one, so both are recorded alike
 * (with source "mesh").
 */
#ifndef ST_CMPJOB_H
#define ST_CMPJOB_H

#include <stddef.h>
#include <stdint.h>

#include "tee.h"
#include "shadowtee/comparator.h"
#include "shadowtee/redis_sink.h"

typedef enum { ST_CMPJOB_PAIR = 0, ST_CMPJOB_HALF = 1 } st_cmpjob_kind_t;

struct st_cmpq;
struct st_cmpthread;

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
    /* ST_CMPJOB_HALF */
    int role;                   /* enum st_mesh_role (config.h) of the side that captured it */
    struct st_cmpq *from;       /* the ring it came through: released once Redis answered */
    struct st_cmpthread *owner; /* the comparator thread publishing it */
    st_sbuf_t wire;             /* the half as published (mesh.h), alive until the reply */
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
    st_sink_t *stats;             /* aggregation + Redis sink */
} st_cmpjob_sink_t;

/* Compares a PAIR job's primary and shadow (and noise) under the rules for
 * its endpoint and records the verdict in sink->stats. The job is not
 * freed. 0, or -1 when an allocation failed (nothing recorded). */
int st_cmpjob_compare(const st_cmpjob_t *job, st_cmpjob_sink_t *sink);

#endif
