/*
 * client: one client connection and the exchange it carries (one request
 * at a time: pipelined requests wait in the read buffer and are answered in
 * order). The connection is kept apart from the upstream connection it
 * borrows for each exchange (upstream.h) and from the mirror copy (tee.h).
 *
 * Request side (state):                      Response side (resp):
 *   IDLE     keep-alive, no bytes yet           NONE  nothing from the primary
 *   HEAD     reading the request head           BODY  head sent to the client, relaying
 *   CONNECT  head parsed, waiting for upstream  DONE  response complete
 *   BODY     streaming the request body
 *   SENT     request complete, waiting for the response
 *   TUNNEL   101 / CONNECT accepted: raw bytes both ways
 *   LINGER   error answered, draining input before close
 *
 * The exchange ends when the request is SENT, the response DONE and no write
 * is pending in either direction; then the connection goes back to IDLE (or
 * HEAD when pipelined bytes wait) or closes.
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
