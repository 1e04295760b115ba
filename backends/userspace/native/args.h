/*
 * The command line of twill-dataplane. The same parser reads the arguments
 * a twilld sends with `attach`, so that "is the running engine the one this
 * twilld wants?" is a comparison of two parsed configs, not of strings.
 *
 *   twill-dataplane --mode udp|ipip --tun NAME --local-ip A.B.C.D --gateway A.B.C.D
 *                   [--port N] [--mtu N] [--offload 0|1] [--outer-ttl N]
 *                   [--sockbuf BYTES] [--peers-stdin] [--fault-injection]
 *   twill-dataplane --delete-tun NAME
 */
#ifndef TWILL_ARGS_H
#define TWILL_ARGS_H

#include <stddef.h>

#include "engine.h"

struct dataplane_args {
  struct engine_config cfg;
  int peers_stdin;     /* read the first peer table from stdin (u32 LE quadruples) before starting */
  int fault_injection; /* the `crash` request is allowed */
  char delete_tun[IFNAMSIZ]; /* one-shot mode: delete this TUN device and exit */
};

/* 0, or -1 with `err` set. argv[0] is not skipped: pass argc-1, argv+1 for main's. */
int args_parse(int argc, char *const *argv, struct dataplane_args *out, char *err, size_t errlen);

/* 1 when both configs run the same engine; otherwise 0 with the first difference in `diff`. */
int args_same_engine(const struct engine_config *a, const struct engine_config *b, char *diff, size_t difflen);

#endif
