/*
 * Wire -> TUN. recvmmsg up to RX_BATCH datagrams (udp: each may be a UDP
 * GRO train of datagrams, split at the size the kernel reports); ipip:
 * the outer header is checked and stripped. Only peers may send (the outer
 * source is a peer's public IP), and only for their own pods (the inner
 * source lies in the sender's subnet): anything else is dropped and
 * counted, and a spoofing peer is named on stderr at most once a minute.
 * Each inner IPv4 packet goes to the TUN; TCP segments of one flow are
 * merged into GSO writes first (gro.c) when the TUN takes virtio-net headers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "gro.h"
#include "ipv4.h"
#include "socket.h"

#define RX_BATCH 32
#define RX_BUF 65536
#define SPOOF_NOTES 64        /* senders whose last spoof line is remembered */
#define SPOOF_NOTE_EVERY_S 60

struct receiver {
  struct engine *e;
  int udp, vnet;
  uint8_t *bufs;
  struct mmsghdr msgs[RX_BATCH];
  struct iovec iovs[RX_BATCH];
  struct sockaddr_in names[RX_BATCH];
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } cmsgs[RX_BATCH];
  struct gro gro;
  struct virtio_net_hdr plain; /* all zero: a packet as it is */
  struct {
    uint32_t from;
    time_t at;
  } spoof_notes[SPOOF_NOTES];
};

/* One stderr line per sending peer a minute at most: enough to find it, never a flood. */
static void note_spoof(struct receiver *r, uint32_t from, uint32_t inner_src) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  int slot = -1, oldest = 0;
  for (int i = 0; i < SPOOF_NOTES; i++) {
    if (r->spoof_notes[i].from == from) {
      slot = i;
      break;
    }
    if (r->spoof_notes[i].at < r->spoof_notes[oldest].at) oldest = i;
  }
  if (slot >= 0 && r->spoof_notes[slot].at && now.tv_sec - r->spoof_notes[slot].at < SPOOF_NOTE_EVERY_S) return;
  if (slot < 0) slot = oldest;
  r->spoof_notes[slot].from = from;
  r->spoof_notes[slot].at = now.tv_sec ? now.tv_sec : 1;
  char peer[INET_ADDRSTRLEN], src[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &from, peer, sizeof(peer));
  inet_ntop(AF_INET, &inner_src, src, sizeof(src));
  fprintf(stderr, "twill-dataplane: dropping packets from peer %s whose inner source (%s) is outside that peer's subnet; said at most once a minute per peer\n", peer, src);
}

static void tun_write(void *ctx, struct iovec *iov, int iovcnt, int segments, size_t bytes) {
  struct receiver *r = ctx;
  struct engine *e = r->e;
  if (!r->vnet) { /* no virtio-net header on this TUN */
    iov++;
    iovcnt--;
  }
  for (;;) {
    if (writev(e->tun_fd, iov, iovcnt) >= 0) {
      COUNT(e->rc.rx_packets, segments);
      COUNT(e->rc.rx_bytes, bytes);
      COUNT(e->rc.tun_writes, 1);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EBADFD) engine_set_fatal(e, "writing to the TUN device", errno);
    COUNT(e->rc.write_errors, segments); /* EIO: the device is down */
    return;
  }
}

/* `from`: the outer source, a peer's public IP (network order). */
static void deliver(struct receiver *r, const struct peer_table *t, uint32_t from, uint8_t *p, size_t len) {
  if ((len = ip_valid_length(p, len)) == 0) {
    COUNT(r->e->rc.malformed, 1);
    return;
  }
  const struct peer *owner = peer_lookup(t, addr_at(p + 12));
  if (!owner || owner->addr.sin_addr.s_addr != from) {
    COUNT(r->e->rc.spoofed_source, 1);
    note_spoof(r, from, addr_at(p + 12));
    return;
  }
  if (r->vnet && gro_add(&r->gro, p, len)) return;
  struct iovec iov[2] = {{&r->plain, sizeof(r->plain)}, {p, len}};
  tun_write(r, iov, 2, 1, len);
}

/* ipip: what the raw socket returns is the outer packet. */
static void deliver_ipip(struct receiver *r, const struct peer_table *t, uint8_t *p, size_t len) {
  size_t tot = ip_valid_length(p, len);
  if (tot == 0 || p[9] != PROTO_IPIP || ip_is_fragment(p)) {
    COUNT(r->e->rc.malformed, 1);
    return;
  }
  uint32_t from = addr_at(p + 12);
  if (!peer_is_source(t, from)) {
    COUNT(r->e->rc.unknown_source, 1);
    return;
  }
  size_t ihl = ip_ihl(p);
  deliver(r, t, from, p + ihl, tot - ihl);
}

static size_t gro_size(struct msghdr *m) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int size;
      memcpy(&size, CMSG_DATA(c), sizeof(size));
      return size > 0 ? (size_t)size : 0;
    }
  }
  return 0;
}

void *receive_loop(void *arg) {
  struct engine *e = arg;
  struct receiver *r = calloc(1, sizeof(*r));
  uint8_t *bufs = r ? malloc((size_t)RX_BATCH * RX_BUF) : NULL;
  if (!r || !bufs) {
    free(r);
    engine_set_fatal(e, "receive thread", ENOMEM);
    return NULL;
  }
  r->e = e;
  r->bufs = bufs;
  r->udp = e->cfg.mode == MODE_UDP;
  r->vnet = e->info.tun_offload;
  /* udp: the UDP checksum covered the inner packet; ipip: nothing did, so check TCP before merging. */
  gro_init(&r->gro, !r->udp, (size_t)e->info.mtu, tun_write, r);
  for (int i = 0; i < RX_BATCH; i++) {
    r->iovs[i].iov_base = bufs + (size_t)i * RX_BUF;
    r->iovs[i].iov_len = RX_BUF;
  }

  struct pollfd pfd[2] = {{.fd = e->sock_fd, .events = POLLIN}, {.fd = e->stop_fd, .events = POLLIN}};
  while (!atomic_load_explicit(&e->stopping, memory_order_relaxed)) {
    for (int i = 0; i < RX_BATCH; i++) {
      struct msghdr *m = &r->msgs[i].msg_hdr;
      memset(m, 0, sizeof(*m));
      m->msg_name = &r->names[i];
      m->msg_namelen = sizeof(r->names[i]);
      m->msg_iov = &r->iovs[i];
      m->msg_iovlen = 1;
      m->msg_control = r->cmsgs[i].buf;
      m->msg_controllen = sizeof(r->cmsgs[i].buf);
    }
    int n = recvmmsg(e->sock_fd, r->msgs, RX_BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        /* Errors queued on the socket (ICMP from a peer) are transient: note and go on. */
        if (errno == EBADF || errno == ENOTSOCK || errno == EFAULT) {
          engine_set_fatal(e, "receiving from the socket", errno);
          break;
        }
        continue;
      }
      if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
        engine_set_fatal(e, "poll", errno);
        break;
      }
      continue;
    }
    const struct peer_table *t = peers_enter(e, &e->receive_epoch);
    for (int i = 0; i < n; i++) {
      struct msghdr *m = &r->msgs[i].msg_hdr;
      uint8_t *p = r->iovs[i].iov_base;
      size_t len = r->msgs[i].msg_len;
      if (m->msg_flags & MSG_TRUNC) {
        COUNT(e->rc.malformed, 1);
        continue;
      }
      if (!r->udp) {
        COUNT(e->rc.datagrams, 1);
        deliver_ipip(r, t, p, len);
        continue;
      }
      uint32_t from = r->names[i].sin_addr.s_addr;
      size_t seg = gro_size(m);
      if (seg == 0) seg = len;
      if (!peer_is_source(t, from)) {
        COUNT(e->rc.datagrams, (len + seg - 1) / seg);
        COUNT(e->rc.unknown_source, (len + seg - 1) / seg);
        continue;
      }
      for (size_t off = 0; off < len; off += seg) {
        COUNT(e->rc.datagrams, 1);
        deliver(r, t, from, p + off, len - off < seg ? len - off : seg);
      }
    }
    gro_flush_all(&r->gro);
    peers_leave(&e->receive_epoch);
    COUNT(e->rc.merged, r->gro.merged);
    r->gro.merged = 0;
  }
  free(bufs);
  free(r);
  return NULL;
}
