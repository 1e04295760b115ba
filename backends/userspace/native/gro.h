/*
 * Merging consecutive TCP segments of one flow, received in one batch, into
 * a single GSO write to the TUN (the kernel's GRO, done before the TUN: the
 * stack then forwards and delivers one large packet instead of dozens).
 *
 * Merge rules follow the kernel's tcp_gro_receive: same addresses, ports,
 * TOS, TTL, DF, TCP header length, ack number, window and options; sequence
 * numbers contiguous; plain ACK segments with data (PSH ends a merge); each
 * segment at most as long as the first, a shorter one ends the merge. IPv4
 * options, fragments and anything else go through unmerged. Order within a
 * flow is kept: a packet of an open flow that cannot join it flushes it.
 *
 * A TCP packet longer than the TUN MTU (the kernel's own GRO merged a train
 * before our socket saw it: raw sockets get such packets) is written as a
 * GSO packet cut at the MTU, so that it can be forwarded at all.
 *
 * Packets are referenced, not copied: they must stay in place until
 * gro_flush_all() returns. The head packet's headers are rewritten in place.
 */
#ifndef TWILL_GRO_H
#define TWILL_GRO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define GRO_FLOWS 8
#define GRO_MAX_SEGS 64

/* Writes one packet (iov[0] is the virtio-net header) to the TUN. */
typedef void (*gro_write_fn)(void *ctx, struct iovec *iov, int iovcnt, int segments, size_t bytes);

struct gro_flow {
  uint8_t *head;
  size_t iphl, tcphl, mss, payload;
  size_t bytes; /* the packets' lengths as received, for the counters */
  int packets;  /* packets as they travelled (a kernel-merged train counts as its segments) */
  uint32_t next_seq;
  int nseg, closed;
  uint8_t vnet[12];
  struct iovec iov[GRO_MAX_SEGS + 1];
};

struct gro {
  struct gro_flow flows[GRO_FLOWS];
  int active[GRO_FLOWS];
  int victim;
  int verify;  /* verify each TCP checksum before merging (no outer checksum covers it) */
  size_t mtu;  /* of the TUN: the segment size of what we write, at most */
  gro_write_fn write;
  void *ctx;
  uint64_t merged; /* segments that joined an earlier one */
};

void gro_init(struct gro *g, int verify, size_t mtu, gro_write_fn write, void *ctx);
/* Takes the packet (1) or leaves it to the caller to write now (0); flushes first what must precede it. */
int gro_add(struct gro *g, uint8_t *pkt, size_t len);
void gro_flush_all(struct gro *g);

#endif
