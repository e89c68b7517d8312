/* list: an intrusive doubly linked list (the node is embedded in its owner). */
#ifndef ST_LIST_H
#define ST_LIST_H

#include <stddef.h>

typedef struct st_list {
    struct st_list *prev, *next;
} st_list_t;

static inline void st_list_init(st_list_t *l)
{
    l->prev = l->next = l;
}
static inline int st_list_empty(const st_list_t *l)
{
    return l->next == l;
}
static inline void st_list_push(st_list_t *head, st_list_t *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}
static inline void st_list_remove(st_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
#define st_list_entry(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
