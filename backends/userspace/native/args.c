#include "args.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_int(const char *s, long min, long max, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) return 0;
  *out = (int)v;
  return 1;
}

static int parse_ip(const char *s, uint32_t *out) {
  struct in_addr a;
  if (inet_pton(AF_INET, s, &a) != 1) return 0;
  *out = a.s_addr;
  return 1;
}

int args_parse(int argc, char *const *argv, struct dataplane_args *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  struct engine_config *c = &out->cfg;
  c->mode = -1;
  c->port = 8285;
  c->offload = 1;
  c->outer_ttl = 64;
  c->sockbuf = 8 << 20;
  int have_local = 0, have_gateway = 0, port = 8285;
  for (int i = 0; i < argc; i++) {
    const char *k = argv[i];
    if (strcmp(k, "--peers-stdin") == 0) { out->peers_stdin = 1; continue; }
    if (strcmp(k, "--fault-injection") == 0) { out->fault_injection = 1; continue; }
    if (i + 1 >= argc) {
      snprintf(err, errlen, "%s needs a value (or is unknown)", k);
      return -1;
    }
    const char *v = argv[++i];
    int ok = 1;
    if (strcmp(k, "--mode") == 0) {
      if (strcmp(v, "udp") == 0) c->mode = MODE_UDP;
      else if (strcmp(v, "ipip") == 0) c->mode = MODE_IPIP;
      else ok = 0;
    } else if (strcmp(k, "--tun") == 0 || strcmp(k, "--delete-tun") == 0) {
      ok = strlen(v) >= 1 && strlen(v) < IFNAMSIZ && !strchr(v, '/');
      if (ok) snprintf(k[2] == 'd' ? out->delete_tun : c->tun_name, IFNAMSIZ, "%s", v);
    } else if (strcmp(k, "--local-ip") == 0) {
      ok = have_local = parse_ip(v, &c->local_ip);
    } else if (strcmp(k, "--gateway") == 0) {
      ok = have_gateway = parse_ip(v, &c->gateway_ip);
    } else if (strcmp(k, "--port") == 0) {
      ok = parse_int(v, 1, 65535, &port);
      c->port = (uint16_t)port;
    } else if (strcmp(k, "--mtu") == 0) {
      ok = parse_int(v, 68, 65535, &c->mtu);
    } else if (strcmp(k, "--offload") == 0) {
      ok = parse_int(v, 0, 1, &c->offload);
    } else if (strcmp(k, "--outer-ttl") == 0) {
      ok = parse_int(v, 1, 255, &c->outer_ttl);
    } else if (strcmp(k, "--sockbuf") == 0) {
      ok = parse_int(v, 4096, INT_MAX, &c->sockbuf);
    } else {
      snprintf(err, errlen, "unknown option %s", k);
      return -1;
    }
    if (!ok) {
      snprintf(err, errlen, "bad value for %s: \"%s\"", k, v);
      return -1;
    }
  }
  if (out->delete_tun[0]) return 0;
  if ((int)c->mode < 0 || !c->tun_name[0] || !have_local || !have_gateway) {
    snprintf(err, errlen, "--mode, --tun, --local-ip and --gateway are required");
    return -1;
  }
  return 0;
}

int args_same_engine(const struct engine_config *a, const struct engine_config *b, char *diff, size_t difflen) {
#define DIFF(cond, what)                    \
  if (cond) {                               \
    snprintf(diff, difflen, "%s", what);    \
    return 0;                               \
  }
  DIFF(a->mode != b->mode, "mode");
  DIFF(strcmp(a->tun_name, b->tun_name) != 0, "TUN device");
  DIFF(a->local_ip != b->local_ip, "local address");
  DIFF(a->mode == MODE_UDP && a->port != b->port, "port");
  DIFF(a->mtu != b->mtu, "MTU");
  DIFF(a->gateway_ip != b->gateway_ip, "own subnet (ICMP source)");
  DIFF(a->offload != b->offload, "offload");
  DIFF(a->mode == MODE_IPIP && a->outer_ttl != b->outer_ttl, "outer TTL");
  DIFF(a->sockbuf != b->sockbuf, "socket buffer size");
#undef DIFF
  return 1;
}
