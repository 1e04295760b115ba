/*
 * twill-dataplane: the packet engine (engine.c and friends) as its own small
 * program, controlled by twilld over a Unix socket instead of living in a
 * forked Node.js process. This header holds what the program's parts share:
 * the process state (one engine, one listening socket, a few connections,
 * at most one of them the controller) and the pieces of main.c the request
 * handlers in control.c call.
 *
 * Lifecycle, as twilld's EngineSupervisor relies on it:
 * - one dataplane per TUN device and network namespace (instance.c holds a
 *   lock for its whole life; a second one is refused, a stale socket left
 *   by a dead one is replaced);
 * - it exits when its controller goes without having asked to `detach`
 *   (a dataplane never outlives the twilld that runs it), or, after a
 *   detach, when no new controller attached within the grace period;
 * - SIGTERM/SIGINT stop it; the TUN device stays in every case but destroy.
 */
#ifndef TWILL_DATAPLANE_H
#define TWILL_DATAPLANE_H

#include <stdint.h>

#include "args.h"
#include "engine.h"
#include "instance.h"

#define MAX_CONNS 8

struct conn {
  int fd; /* -1: free slot */
  uint8_t *buf;
  size_t len, cap;
};

struct dataplane {
  struct dataplane_args args;
  struct instance inst;
  struct engine *engine;
  struct conn conns[MAX_CONNS];
  int controller;       /* index into conns, or -1 */
  int detached;         /* the controller asked us to outlive it */
  uint32_t grace_ms;    /* ... for this long */
  int64_t orphan_since; /* ms (monotonic) since no controller is attached; -1 while one is */
  unsigned attaches;    /* successful attaches so far (the first is the spawner's) */
};

/* Monotonic milliseconds. */
int64_t now_ms(void);

/* Stops the engine (the TUN stays), removes the socket and lock, exits with `code`. */
void dataplane_exit(struct dataplane *dp, int code) __attribute__((noreturn));

/* Stops the engine and releases the instance, without exiting (the reply to stop/destroy goes out after). */
void dataplane_shutdown(struct dataplane *dp);

#endif
