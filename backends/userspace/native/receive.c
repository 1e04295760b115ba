/*
 * Wire -> TUN. recvmmsg up to RX_BATCH datagrams (udp: each may be a UDP
 * GRO train of datagrams, split at the size the kernel reports); ipip:
 * the outer header is checked (a known peer sent it) and stripped. Each
 * inner IPv4 packet goes to the TUN; TCP segments of one flow are merged
 * into GSO writes first (gro.c) when the TUN takes virtio-net headers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine.h"
#include "gro.h"
#include "ipv4.h"
#include "socket.h"

#define RX_BATCH 32
#define RX_BUF 65536

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
};

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

static void deliver(struct receiver *r, uint8_t *p, size_t len) {
  if ((len = ip_valid_length(p, len)) == 0) {
    COUNT(r->e->rc.malformed, 1);
    return;
  }
  if (r->vnet && gro_add(&r->gro, p, len)) return;
  struct iovec iov[2] = {{&r->plain, sizeof(r->plain)}, {p, len}};
  tun_write(r, iov, 2, 1, len);
}

/* ipip: what the raw socket returns is the outer packet; a known peer must have sent it. */
static void deliver_ipip(struct receiver *r, const struct peer_table *t, uint8_t *p, size_t len) {
  size_t tot = ip_valid_length(p, len);
  if (tot == 0 || p[9] != PROTO_IPIP || ip_is_fragment(p)) {
    COUNT(r->e->rc.malformed, 1);
    return;
  }
  if (!peer_is_source(t, addr_at(p + 12))) {
    COUNT(r->e->rc.unknown_source, 1);
    return;
  }
  size_t ihl = ip_ihl(p);
  deliver(r, p + ihl, tot - ihl);
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
    const struct peer_table *t = r->udp ? NULL : peers_enter(e, &e->receive_epoch);
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
      size_t seg = gro_size(m);
      if (seg == 0) seg = len;
      for (size_t off = 0; off < len; off += seg) {
        COUNT(e->rc.datagrams, 1);
        deliver(r, p + off, len - off < seg ? len - off : seg);
      }
    }
    gro_flush_all(&r->gro);
    if (!r->udp) peers_leave(&e->receive_epoch);
    COUNT(e->rc.merged, r->gro.merged);
    r->gro.merged = 0;
  }
  free(bufs);
  free(r);
  return NULL;
}
