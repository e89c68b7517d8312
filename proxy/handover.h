/*
 * handover: the listening sockets of a running shadowtee passed to its
 * successor, so that a restart on the same port refuses and resets nothing.
 *
 * Why: with SO_REUSEPORT a new instance can bind the port next to the old
 * one, but when the old one closes its sockets (SIGTERM, drain) the kernel
 * resets every connection still waiting in their accept queues (unless
 * net.ipv4.tcp_migrate_req=1, Linux 5.14+, off by default, moves them to
 * another socket of the group). With --handover PATH an instance serves a
 * unix socket at PATH; a new instance started with the same flag connects
 * to it first and receives, with SCM_RIGHTS, the old one's client listening
 * sockets and its admin socket. Both processes then accept from the same
 * sockets; when the old one drains and closes its descriptors, the sockets
 * and their queues live on in the new process: nothing queued is lost. The
 * new instance then serves PATH itself, for the next restart. A handed-over
 * instance that starts draining stops answering admin requests at once, so
 * that /readyz is answered by the successor only.
 *
 * Message (one, then the sender closes): the text
 * "shadowtee-handover 1 <n_listen> <n_admin>\n" carrying n_listen + n_admin
 * descriptors, client listeners first. A draining instance sends "... 0 0".
 * PATH is created under umask 077: only its owner can take the sockets.
 */
#ifndef ST_HANDOVER_H
#define ST_HANDOVER_H

#include <stddef.h>

#include "app.h"

#define ST_HANDOVER_MAX_FDS 64

/* Connects to PATH and takes the sockets offered there: fds[0..*nlisten)
 * are client listeners, then *nadmin admin sockets. No instance at PATH
 * (nothing there, or a stale socket file): 0 with both counts 0. -1 with a
 * message in err when PATH answers but the handover fails. */
int st_handover_take(const char *path, int *fds, int max, int *nlisten, int *nadmin, char *err,
                     size_t errlen);

typedef struct st_handover st_handover_t;

/* Creates the listening unix socket at PATH (a stale socket file there is
 * replaced; another kind of file is an error), under umask 077. Called at
 * start-up before anything else is set up, so a bad PATH exits with nothing
 * to undo. The descriptor, or -1 with a message logged. */
int st_handover_listen(const char *path);
/* Serves fd (from st_handover_listen(path)) on app->loop; the handover owns
 * fd from now on, also on failure. *admin is read at each handover (it may
 * be NULL). NULL with a message logged on error. */
st_handover_t *st_handover_serve(st_app_t *app, st_admin_t *const *admin, const char *path, int fd);
/* Stops serving; removes PATH unless a successor replaced it. */
void st_handover_stop(st_handover_t *h);

#endif
