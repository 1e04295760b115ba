#include "gro.h"

#include <linux/virtio_net.h>
#include <string.h>

#include "ipv4.h"

void gro_init(struct gro *g, int verify, size_t mtu, gro_write_fn write, void *ctx) {
  memset(g, 0, sizeof(*g));
  g->verify = verify;
  g->mtu = mtu;
  g->write = write;
  g->ctx = ctx;
}

/* TCP/IPv4 without IP options and not a fragment; sets the header lengths. */
static int is_plain_tcp(const uint8_t *p, size_t len, size_t *tcphl) {
  if (len < IP_MIN_HDR + TCP_MIN_HDR || p[9] != PROTO_TCP || ip_ihl(p) != IP_MIN_HDR || ip_is_fragment(p)) return 0;
  *tcphl = (size_t)(p[IP_MIN_HDR + 12] >> 4) * 4;
  return *tcphl >= TCP_MIN_HDR && IP_MIN_HDR + *tcphl <= len;
}

static int same_flow(const uint8_t *a, const uint8_t *b) {
  return memcmp(a + 12, b + 12, 8) == 0 && memcmp(a + IP_MIN_HDR, b + IP_MIN_HDR, 4) == 0;
}

static int checksum_ok(const uint8_t *p, size_t len) {
  uint64_t sum = csum_pseudo(p + 12, p + 16, PROTO_TCP, (uint32_t)(len - IP_MIN_HDR));
  return csum_fold(csum_partial(p + IP_MIN_HDR, len - IP_MIN_HDR, sum)) == 0xffff;
}

static void flush(struct gro *g, int i) {
  struct gro_flow *f = &g->flows[i];
  g->active[i] = 0;
  struct virtio_net_hdr *vh = (struct virtio_net_hdr *)f->vnet;
  memset(vh, 0, sizeof(*vh));
  f->iov[0].iov_base = vh;
  f->iov[0].iov_len = sizeof(*vh);
  size_t total = f->iphl + f->tcphl + f->payload;
  if (f->payload > f->mss) {
    uint8_t *ip = f->head, *tcp = f->head + f->iphl;
    wr16(ip + 2, (uint16_t)total);
    ip_header_checksum(ip, f->iphl);
    /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, the kernel (or nobody, on local delivery) finishes it. */
    uint16_t partial = csum_fold(csum_pseudo(ip + 12, ip + 16, PROTO_TCP, (uint32_t)(f->tcphl + f->payload)));
    memcpy(tcp + 16, &partial, 2);
    vh->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    vh->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    vh->hdr_len = (uint16_t)(f->iphl + f->tcphl);
    vh->gso_size = (uint16_t)f->mss;
    vh->csum_start = (uint16_t)f->iphl;
    vh->csum_offset = 16;
  }
  g->write(g->ctx, f->iov, f->nseg + 1, f->packets, f->bytes);
}

void gro_flush_all(struct gro *g) {
  for (int i = 0; i < GRO_FLOWS; i++)
    if (g->active[i]) flush(g, i);
}

static int can_join(const struct gro_flow *f, const uint8_t *q, size_t tcphl, size_t plen) {
  const uint8_t *h = f->head, *ht = h + IP_MIN_HDR, *qt = q + IP_MIN_HDR;
  if (f->closed || f->nseg >= GRO_MAX_SEGS || tcphl != f->tcphl || plen == 0 || plen > f->mss) return 0;
  if (f->iphl + f->tcphl + f->payload + plen > 65535) return 0;
  if (h[1] != q[1] || h[8] != q[8] || (h[6] & 0x40) != (q[6] & 0x40)) return 0; /* TOS, TTL, DF */
  if (rd32(qt + 4) != f->next_seq || memcmp(ht + 8, qt + 8, 4) != 0) return 0;   /* seq, ack */
  if (ht[12] != qt[12] || (qt[13] & ~TCP_PSH) != TCP_ACK || memcmp(ht + 14, qt + 14, 2) != 0) return 0; /* flags, window */
  return memcmp(ht + TCP_MIN_HDR, qt + TCP_MIN_HDR, tcphl - TCP_MIN_HDR) == 0; /* options */
}

static void start(struct gro *g, int i, uint8_t *p, size_t len, size_t tcphl) {
  struct gro_flow *f = &g->flows[i];
  g->active[i] = 1;
  f->head = p;
  f->iphl = IP_MIN_HDR;
  f->tcphl = tcphl;
  f->payload = f->mss = len - IP_MIN_HDR - tcphl;
  f->next_seq = rd32(p + IP_MIN_HDR + 4) + (uint32_t)f->payload;
  f->nseg = 1;
  f->packets = 1;
  f->bytes = len;
  f->closed = (p[IP_MIN_HDR + 13] & TCP_PSH) != 0;
  f->iov[1].iov_base = p;
  f->iov[1].iov_len = len;
}

static int free_slot(struct gro *g) {
  for (int i = 0; i < GRO_FLOWS; i++)
    if (!g->active[i]) return i;
  int slot = g->victim;
  g->victim = (g->victim + 1) % GRO_FLOWS;
  flush(g, slot);
  return slot;
}

/* A train the kernel merged already: one GSO write cut at the MTU, after what precedes it in its flow. */
static int add_oversized(struct gro *g, uint8_t *p, size_t len, size_t tcphl) {
  size_t mss = g->mtu > IP_MIN_HDR + tcphl ? g->mtu - IP_MIN_HDR - tcphl : 0;
  if (mss == 0) return 0;
  for (int i = 0; i < GRO_FLOWS; i++)
    if (g->active[i] && same_flow(g->flows[i].head, p)) flush(g, i);
  int slot = free_slot(g);
  start(g, slot, p, len, tcphl);
  struct gro_flow *f = &g->flows[slot];
  f->mss = mss;
  f->packets = (int)((f->payload + mss - 1) / mss);
  f->closed = 1;
  return 1;
}

int gro_add(struct gro *g, uint8_t *p, size_t len) {
  size_t tcphl;
  if (!is_plain_tcp(p, len, &tcphl)) return 0;
  if (len > g->mtu) return add_oversized(g, p, len, tcphl);
  size_t plen = len - IP_MIN_HDR - tcphl;
  int candidate = plen > 0 && (p[IP_MIN_HDR + 13] & ~TCP_PSH) == TCP_ACK && (!g->verify || checksum_ok(p, len));

  int slot = -1;
  for (int i = 0; i < GRO_FLOWS; i++) {
    if (g->active[i] && same_flow(g->flows[i].head, p)) {
      slot = i;
      break;
    }
  }
  if (slot >= 0) {
    struct gro_flow *f = &g->flows[slot];
    if (candidate && can_join(f, p, tcphl, plen)) {
      f->iov[f->nseg + 1].iov_base = p + IP_MIN_HDR + tcphl;
      f->iov[f->nseg + 1].iov_len = plen;
      f->nseg++;
      f->packets++;
      f->bytes += len;
      f->payload += plen;
      f->next_seq += (uint32_t)plen;
      f->head[IP_MIN_HDR + 13] |= p[IP_MIN_HDR + 13] & TCP_PSH;
      if (plen < f->mss || (p[IP_MIN_HDR + 13] & TCP_PSH)) f->closed = 1;
      g->merged++;
      return 1;
    }
    flush(g, slot);
  }
  if (!candidate) return 0;
  if (slot < 0) slot = free_slot(g);
  start(g, slot, p, len, tcphl);
  return 1;
}
