/*
 * The peer table: pod subnet -> the peer's public address, looked up by
 * longest prefix match, plus the set of peer public IPs (ipip accepts
 * packets from those only). Built once from what TypeScript pushes, never
 * modified afterwards: the engine swaps whole tables (engine_set_peers).
 *
 * Lookup cost: one hash probe per distinct prefix length in the table
 * (a flannel network has one: every lease is a /24, say), longest first.
 */
#ifndef TWILL_PEERS_H
#define TWILL_PEERS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

struct peer_spec {
  uint32_t subnet; /* host order */
  uint8_t prefix_len;
  uint32_t public_ip; /* host order */
  uint16_t port;      /* host order; 0 for ipip */
};

struct peer {
  uint32_t subnet; /* host order, host bits cleared */
  uint8_t prefix_len;
  struct sockaddr_in addr; /* where packets for this subnet go */
};

struct peer_table {
  size_t count;
  struct peer *peers;
  /* subnet hash: slots hold index+1 into peers, 0 = empty */
  uint32_t *slots;
  uint32_t slot_mask;
  /* distinct prefix lengths, longest first */
  uint8_t lengths[33];
  int nlengths;
  /* public IPs (network order), open addressing, 0 = empty */
  uint32_t *sources;
  uint32_t source_mask;
};

/* NULL on allocation failure. Later duplicates of a subnet replace earlier ones. */
struct peer_table *peer_table_build(const struct peer_spec *specs, size_t n);
void peer_table_free(struct peer_table *t);
/* dst in network order; NULL when no peer's subnet holds it. */
const struct peer *peer_lookup(const struct peer_table *t, uint32_t dst_net);
/* ip in network order. */
int peer_is_source(const struct peer_table *t, uint32_t ip_net);

#endif
