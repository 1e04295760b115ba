/*
 * TUN -> wire. Reads up to TUN_BATCH packets from the TUN (one read each:
 * a TUN has no batched read), then for each: longest-prefix match of the
 * destination over the peer table (none -> ICMP net unreachable back into
 * the TUN), in udp mode TTL - 1 as flanneld does (expired -> ICMP time
 * exceeded; ipip leaves the packet as kernel ipip does), a TSO super-packet cut
 * into MTU-sized packets, a partial checksum completed; then everything goes
 * out in one sendmmsg. In udp mode the segments of one super-packet to one
 * peer travel as UDP GSO messages (one skb down the stack, split at the
 * device or, with UDP GRO, not at all until the peer's engine).
 *
 * Payloads are never copied: iovecs point into the read buffers, segment
 * headers are written to `hdrs`. Both stay valid until flush().
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
#include "ipv4.h"
#include "socket.h"
#include "tso.h"

#define TUN_BATCH 64
#define TUN_BUF (65536 + 64)
#define MAX_MSGS 512
#define MAX_IOVS 4096
#define MAX_HDRS 2048
#define ICMP_BUF (IP_MIN_HDR + 8 + 60 + 8)

struct sender {
  struct engine *e;
  int udp, vnet, gso;
  uint8_t *bufs;
  size_t lens[TUN_BATCH];

  struct mmsghdr msgs[MAX_MSGS];
  int msg_packets[MAX_MSGS];
  size_t msg_bytes[MAX_MSGS];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } cmsgs[MAX_MSGS];
  struct iovec iovs[MAX_IOVS];
  uint8_t hdrs[MAX_HDRS][TSO_MAX_HDR];
  uint8_t outer[MAX_MSGS][IP_MIN_HDR]; /* ipip: the outer header we write (IP_HDRINCL) */
  int nmsgs, niovs, nhdrs;

  /* The UDP GSO message being filled: all its segments but the last are open_size bytes. */
  int open;
  size_t open_size;

  uint8_t icmp[ICMP_BUF];
};

static void close_open(struct sender *s) {
  if (!s->open) return;
  s->open = 0;
  struct msghdr *m = &s->msgs[s->nmsgs - 1].msg_hdr;
  if (s->msg_packets[s->nmsgs - 1] < 2) return;
  m->msg_control = s->cmsgs[s->nmsgs - 1].buf;
  m->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
  struct cmsghdr *c = CMSG_FIRSTHDR(m);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  uint16_t size = (uint16_t)s->open_size;
  memcpy(CMSG_DATA(c), &size, sizeof(size));
}

static void flush(struct sender *s) {
  close_open(s);
  struct engine *e = s->e;
  int done = 0;
  while (done < s->nmsgs) {
    int n = sendmmsg(e->sock_fd, s->msgs + done, (unsigned)(s->nmsgs - done), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      /* Message `done` was refused. A GSO message refused as such: send the rest without GSO. */
      if (s->msgs[done].msg_hdr.msg_controllen && (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT)) s->gso = 0;
      COUNT(e->sc.send_errors, s->msg_packets[done]);
      done++;
      continue;
    }
    for (int i = done; i < done + n; i++) {
      COUNT(e->sc.tx_packets, s->msg_packets[i]);
      COUNT(e->sc.tx_bytes, s->msg_bytes[i]);
    }
    done += n;
  }
  s->nmsgs = s->niovs = s->nhdrs = 0;
}

static void add_iov(struct sender *s, struct msghdr *m, const void *base, size_t len) {
  s->iovs[s->niovs].iov_base = (void *)base;
  s->iovs[s->niovs].iov_len = len;
  s->niovs++;
  m->msg_iovlen++;
}

/*
 * ipip: the outer header as kernel ipip writes it with default settings
 * (the inner ECN bits carried over, CE as ECT(0)), except DF, which we
 * leave off. The kernel fills in the length, the ID and the checksum.
 */
static void outer_header(struct sender *s, uint8_t *h, const struct peer *p, const uint8_t *inner) {
  uint8_t ecn = inner[1] & 3;
  memset(h, 0, IP_MIN_HDR);
  h[0] = 0x45;
  h[1] = ecn == 3 ? 2 : ecn;
  h[8] = (uint8_t)s->e->cfg.outer_ttl;
  h[9] = PROTO_IPIP;
  memcpy(h + 12, &s->e->cfg.local_ip, 4);
  memcpy(h + 16, &p->addr.sin_addr.s_addr, 4);
}

static struct msghdr *new_msg(struct sender *s, const struct peer *p, const uint8_t *inner) {
  struct mmsghdr *mm = &s->msgs[s->nmsgs];
  memset(mm, 0, sizeof(*mm));
  mm->msg_hdr.msg_name = (void *)&p->addr;
  mm->msg_hdr.msg_namelen = sizeof(p->addr);
  mm->msg_hdr.msg_iov = &s->iovs[s->niovs];
  if (!s->udp) {
    outer_header(s, s->outer[s->nmsgs], p, inner);
    add_iov(s, &mm->msg_hdr, s->outer[s->nmsgs], IP_MIN_HDR);
  }
  s->msg_packets[s->nmsgs] = 0;
  s->msg_bytes[s->nmsgs] = 0;
  s->nmsgs++;
  return &mm->msg_hdr;
}

static void emit_packet(struct sender *s, const struct peer *p, const uint8_t *pkt, size_t len) {
  close_open(s);
  if (s->nmsgs >= MAX_MSGS || s->niovs + 2 > MAX_IOVS) flush(s);
  struct msghdr *m = new_msg(s, p, pkt);
  add_iov(s, m, pkt, len);
  s->msg_packets[s->nmsgs - 1] = 1;
  s->msg_bytes[s->nmsgs - 1] = len;
}

static void emit_segments(struct sender *s, const struct peer *p, const uint8_t *pkt, size_t len, size_t mss) {
  struct tso t;
  if (!tso_init(&t, pkt, len, mss)) {
    COUNT(s->e->sc.malformed, 1);
    return;
  }
  COUNT(s->e->sc.super_packets, 1);
  close_open(s);
  for (int i = 0; i < t.count; i++) {
    if (s->nhdrs >= MAX_HDRS || s->niovs + 3 > MAX_IOVS || (s->nmsgs >= MAX_MSGS && !s->open)) flush(s);
    uint8_t *hdr = s->hdrs[s->nhdrs++];
    size_t plen;
    const uint8_t *payload = tso_segment(&t, i, hdr, &plen);
    size_t seg = t.hdr_len + plen;
    int k = s->nmsgs - 1;
    if (s->open && (s->msg_packets[k] >= UDP_GSO_MAX_SEGMENTS || s->msg_bytes[k] + seg > UDP_GSO_MAX_BYTES || seg > s->open_size)) {
      close_open(s);
      if (s->nmsgs >= MAX_MSGS) flush(s);
    }
    struct msghdr *m;
    if (s->open) {
      m = &s->msgs[s->nmsgs - 1].msg_hdr;
    } else {
      m = new_msg(s, p, pkt);
      if (s->udp && s->gso) {
        s->open = 1;
        s->open_size = seg;
      }
    }
    add_iov(s, m, hdr, t.hdr_len);
    add_iov(s, m, payload, plen);
    s->msg_packets[s->nmsgs - 1]++;
    s->msg_bytes[s->nmsgs - 1] += seg;
    if (s->open && seg < s->open_size) close_open(s); /* a short segment ends a GSO message */
  }
  close_open(s);
}

static void write_icmp(struct sender *s, const uint8_t *pkt, size_t len, uint8_t type, uint8_t code) {
  struct engine *e = s->e;
  size_t n = icmp_error(s->icmp, pkt, len, type, code, e->cfg.gateway_ip);
  if (n == 0) return;
  struct virtio_net_hdr vh;
  memset(&vh, 0, sizeof(vh));
  struct iovec iov[2] = {{&vh, sizeof(vh)}, {s->icmp, n}};
  if (writev(e->tun_fd, s->vnet ? iov : iov + 1, s->vnet ? 2 : 1) >= 0) COUNT(e->sc.icmp_sent, 1);
}

static void handle(struct sender *s, const struct peer_table *t, uint8_t *buf, size_t n) {
  struct engine *e = s->e;
  struct virtio_net_hdr vh;
  memset(&vh, 0, sizeof(vh));
  uint8_t *pkt = buf;
  size_t len = n;
  if (s->vnet) {
    if (n < sizeof(vh)) {
      COUNT(e->sc.malformed, 1);
      return;
    }
    memcpy(&vh, buf, sizeof(vh));
    pkt += sizeof(vh);
    len -= sizeof(vh);
  }
  if (len > 0 && (pkt[0] >> 4) != 4) {
    COUNT(e->sc.not_ipv4, 1); /* IPv6 (router solicitations on the TUN, say): this datapath carries IPv4 */
    return;
  }
  if ((len = ip_valid_length(pkt, len)) == 0) {
    COUNT(e->sc.malformed, 1);
    return;
  }
  const struct peer *p = peer_lookup(t, addr_at(pkt + 16));
  if (!p) {
    COUNT(e->sc.no_route, 1);
    write_icmp(s, pkt, len, 3, 0); /* destination net unreachable */
    return;
  }
  /* udp: flanneld decrements the TTL once more; ipip: kernel ipip does not, nor do we. */
  if (s->udp) {
    if (pkt[8] <= 1) {
      COUNT(e->sc.ttl_expired, 1);
      write_icmp(s, pkt, len, 11, 0); /* time exceeded in transit */
      return;
    }
    ip_decrement_ttl(pkt);
  }
  uint8_t gso = vh.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
  if (gso == VIRTIO_NET_HDR_GSO_TCPV4) {
    emit_segments(s, p, pkt, len, vh.gso_size);
    return;
  }
  if (gso != VIRTIO_NET_HDR_GSO_NONE ||
      ((vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !complete_checksum(pkt, len, vh.csum_start, vh.csum_offset))) {
    COUNT(e->sc.malformed, 1);
    return;
  }
  emit_packet(s, p, pkt, len);
}

void *send_loop(void *arg) {
  struct engine *e = arg;
  struct sender *s = calloc(1, sizeof(*s));
  uint8_t *bufs = s ? malloc((size_t)TUN_BATCH * TUN_BUF) : NULL;
  if (!s || !bufs) {
    free(s);
    engine_set_fatal(e, "send thread", ENOMEM);
    return NULL;
  }
  s->e = e;
  s->bufs = bufs;
  s->udp = e->cfg.mode == MODE_UDP;
  s->vnet = e->info.tun_offload;
  s->gso = e->info.udp_gso;

  struct pollfd pfd[2] = {{.fd = e->tun_fd, .events = POLLIN}, {.fd = e->stop_fd, .events = POLLIN}};
  while (!atomic_load_explicit(&e->stopping, memory_order_relaxed)) {
    int n = 0;
    while (n < TUN_BATCH) {
      ssize_t r = read(e->tun_fd, bufs + (size_t)n * TUN_BUF, TUN_BUF);
      if (r >= 0) {
        s->lens[n++] = (size_t)r;
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      engine_set_fatal(e, "reading the TUN device", errno); /* EBADFD: the device was deleted */
      goto out;
    }
    if (n == 0) {
      if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
        engine_set_fatal(e, "poll", errno);
        break;
      }
      continue;
    }
    COUNT(e->sc.tun_reads, n);
    const struct peer_table *t = peers_enter(e, &e->send_epoch);
    for (int i = 0; i < n; i++) handle(s, t, bufs + (size_t)i * TUN_BUF, s->lens[i]);
    flush(s);
    peers_leave(&e->send_epoch);
  }
out:
  free(bufs);
  free(s);
  return NULL;
}
