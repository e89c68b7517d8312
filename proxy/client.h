/*
 * client: the entry points of the client side. A client connection is
 * st_conn_t (conn.h: socket, read buffer, timers, TLS, write batches; its
 * states and transitions) and carries one exchange at a time (exchange.h:
 * one request, its primary leg and its mirror; pipelined requests wait in
 * the read buffer and are answered in order). The connection is kept apart
 * from the upstream connection it borrows for each exchange (upstream.h)
 * and from the mirror copy (tee.h). Implemented in conn.c.
 */
#ifndef ST_CLIENT_H
#define ST_CLIENT_H

#include <uv.h>

struct st_worker;

/* Takes a connection the worker's listener accepted (fd: the client's now). */
void st_client_accept(struct st_worker *w, int fd);
/* Drain: busy connections close after their exchange, idle keep-alive ones
 * after a request that was on its way or a grace of 1 s. Force (stop):
 * closes all. */
void st_client_drain_all(struct st_worker *w, int force);

#endif
