#include "peers.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

static inline uint32_t mask_of(uint8_t len) { return len == 0 ? 0 : 0xffffffffu << (32 - len); }

static inline uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

static uint32_t table_size(size_t n) {
  uint32_t size = 16;
  while (size < n * 2) size <<= 1;
  return size;
}

static void subnet_insert(struct peer_table *t, uint32_t idx) {
  const struct peer *p = &t->peers[idx];
  for (uint32_t h = hash32(p->subnet ^ p->prefix_len);; h++) {
    uint32_t *slot = &t->slots[h & t->slot_mask];
    if (*slot == 0) {
      *slot = idx + 1;
      return;
    }
    const struct peer *q = &t->peers[*slot - 1];
    if (q->subnet == p->subnet && q->prefix_len == p->prefix_len) {
      *slot = idx + 1; /* a later entry for the same subnet wins */
      return;
    }
  }
}

static void source_insert(struct peer_table *t, uint32_t ip_net) {
  if (ip_net == 0) return;
  for (uint32_t h = hash32(ip_net);; h++) {
    uint32_t *slot = &t->sources[h & t->source_mask];
    if (*slot == ip_net) return;
    if (*slot == 0) {
      *slot = ip_net;
      return;
    }
  }
}

struct peer_table *peer_table_build(const struct peer_spec *specs, size_t n) {
  struct peer_table *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  uint32_t size = table_size(n);
  t->peers = calloc(n ? n : 1, sizeof(struct peer));
  t->slots = calloc(size, sizeof(uint32_t));
  t->sources = calloc(size, sizeof(uint32_t));
  if (!t->peers || !t->slots || !t->sources) {
    peer_table_free(t);
    return NULL;
  }
  t->slot_mask = t->source_mask = size - 1;
  int seen[33] = {0};
  for (size_t i = 0; i < n; i++) {
    uint8_t len = specs[i].prefix_len > 32 ? 32 : specs[i].prefix_len;
    struct peer *p = &t->peers[i];
    p->subnet = specs[i].subnet & mask_of(len);
    p->prefix_len = len;
    p->addr.sin_family = AF_INET;
    p->addr.sin_addr.s_addr = htonl(specs[i].public_ip);
    p->addr.sin_port = htons(specs[i].port);
    subnet_insert(t, (uint32_t)i);
    source_insert(t, p->addr.sin_addr.s_addr);
    seen[len] = 1;
  }
  t->count = n;
  for (int len = 32; len >= 0; len--)
    if (seen[len]) t->lengths[t->nlengths++] = (uint8_t)len;
  return t;
}

void peer_table_free(struct peer_table *t) {
  if (!t) return;
  free(t->peers);
  free(t->slots);
  free(t->sources);
  free(t);
}

const struct peer *peer_lookup(const struct peer_table *t, uint32_t dst_net) {
  if (!t) return NULL;
  uint32_t dst = ntohl(dst_net);
  for (int i = 0; i < t->nlengths; i++) {
    uint8_t len = t->lengths[i];
    uint32_t key = dst & mask_of(len);
    for (uint32_t h = hash32(key ^ len);; h++) {
      uint32_t slot = t->slots[h & t->slot_mask];
      if (slot == 0) break;
      const struct peer *p = &t->peers[slot - 1];
      if (p->subnet == key && p->prefix_len == len) return p;
    }
  }
  return NULL;
}

int peer_is_source(const struct peer_table *t, uint32_t ip_net) {
  if (!t || ip_net == 0) return 0;
  for (uint32_t h = hash32(ip_net);; h++) {
    uint32_t slot = t->sources[h & t->source_mask];
    if (slot == 0) return 0;
    if (slot == ip_net) return 1;
  }
}
