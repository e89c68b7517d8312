/*
 * shadowtee comparator: memory of the comparison engine. Every allocation
 * goes through jansson's allocator hooks, and the scratch memory of one
 * comparison comes from a bump arena released by marks.
 */
#include <jansson.h>
#include <string.h>

#include "tape.h"

void *stc_mem_alloc(size_t n)
{
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    return m(n ? n : 1);
}

void stc_mem_free(void *p)
{
    json_malloc_t m;
    json_free_t f;
    if (!p) return;
    json_get_alloc_funcs(&m, &f);
    f(p);
}

#define CHUNK_SIZE (16 * 1024)

struct stc_chunk {
    stc_chunk_t *prev; /* older chunk */
    size_t cap, used;
    _Alignas(8) unsigned char data[];
};

void stc_arena_init(stc_arena_t *a)
{
    a->head = NULL;
    a->spare = NULL;
}

void stc_arena_deinit(stc_arena_t *a)
{
    while (a->head) {
        stc_chunk_t *c = a->head;
        a->head = c->prev;
        stc_mem_free(c);
    }
    stc_mem_free(a->spare);
    a->spare = NULL;
}

void *stc_arena_alloc(stc_arena_t *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    stc_chunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        if (n <= CHUNK_SIZE && a->spare) {
            c = a->spare;
            a->spare = NULL;
        } else {
            size_t cap = n > CHUNK_SIZE ? n : CHUNK_SIZE;
            if (cap > (size_t)-1 - sizeof(*c)) return NULL;
            c = stc_mem_alloc(sizeof(*c) + cap);
            if (!c) return NULL;
            c->cap = cap;
        }
        c->used = 0;
        c->prev = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

stc_arena_mark_t stc_arena_mark(const stc_arena_t *a)
{
    stc_arena_mark_t m;
    m.chunk = a->head;
    m.used = a->head ? a->head->used : 0;
    return m;
}

void stc_arena_release(stc_arena_t *a, stc_arena_mark_t m)
{
    while (a->head && a->head != m.chunk) {
        stc_chunk_t *c = a->head;
        a->head = c->prev;
        if (c->cap == CHUNK_SIZE && !a->spare)
            a->spare = c;
        else
            stc_mem_free(c);
    }
    if (a->head) a->head->used = m.used;
}
