/*
 * The userspace datapath engine: a TUN device on one side, a UDP socket
 * (flanneld's udp wire format) or a raw IP-in-IP socket (kernel ipip's wire
 * format) on the other, and two threads moving packets between them:
 *
 *   send.c     TUN -> wire: longest-prefix match of the inner destination
 *              over the peer table (peers.c), TTL decrement (udp, as
 *              flanneld), TSO super-packets cut back into MTU-sized packets
 *              (tso.c), batched with sendmmsg (and UDP GSO where the kernel
 *              has it); ICMP errors back into the TUN (icmp.c).
 *   receive.c  wire -> TUN: recvmmsg (and UDP GRO), outer header checked
 *              and stripped (ipip), consecutive TCP segments of one flow
 *              merged into one GSO write (gro.c), everything else written
 *              as it came.
 *   tun.c, socket.c  the two file descriptors, as the mode asks.
 *
 * The program around it (main.c, control.c: twill-dataplane) starts and
 * stops the engine, swaps the peer table and reads the counters on
 * twilld's requests.
 *
 * Failure semantics: engine_start() either returns a running engine or an
 * error message and leaves nothing open (the TUN device, when it created
 * one, stays: it is persistent by design). A thread that meets an error it
 * cannot survive (the TUN device was deleted) records it in `fatal` and
 * exits; twill-dataplane polls engine_fatal() and exits so that its
 * supervisor restarts it.
 */
#ifndef TWILL_ENGINE_H
#define TWILL_ENGINE_H

#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "peers.h"

enum engine_mode { MODE_UDP = 0, MODE_IPIP = 1 };

struct engine_config {
  enum engine_mode mode;
  char tun_name[IFNAMSIZ];
  uint32_t local_ip;   /* network order; the socket binds here */
  uint16_t port;       /* host order; udp mode only */
  int mtu;             /* TUN MTU */
  uint32_t gateway_ip; /* network order; source of the ICMP errors we write into the TUN */
  int offload;         /* ask for TSO/checksum offload on the TUN and GRO on the socket */
  int outer_ttl;       /* ipip: TTL of the outer header */
  int sockbuf;         /* SO_RCVBUF / SO_SNDBUF in bytes */
};

/* What the engine ended up with (offloads are best effort). */
struct engine_info {
  int ifindex;
  int tun_created; /* 1: this start created the device; 0: adopted an existing one */
  int mtu;         /* the TUN's MTU */
  int accept_local; /* the kernel takes our ICMP errors (see tun.c) */
  int tun_offload; /* TUN hands us TSO super-packets and takes GSO writes */
  int udp_gso;     /* UDP_SEGMENT on send */
  int udp_gro;     /* UDP_GRO on receive */
  int rcvbuf, sndbuf;
};

/*
 * Counters. Each is written by one thread only (relaxed atomics), read by
 * anyone. Send-side and receive-side counters live on separate cache lines.
 */
struct send_counters {
  _Atomic uint64_t tx_packets, tx_bytes; /* inner packets sent to peers */
  _Atomic uint64_t no_route;             /* no peer holds the destination */
  _Atomic uint64_t icmp_sent;            /* ICMP errors written into the TUN */
  _Atomic uint64_t ttl_expired;
  _Atomic uint64_t not_ipv4;             /* IPv6 the kernel routed into the TUN */
  _Atomic uint64_t malformed;            /* truncated, bad header, bad GSO metadata */
  _Atomic uint64_t send_errors;          /* sendmmsg refused the packet */
  _Atomic uint64_t tun_reads, super_packets;
} __attribute__((aligned(64)));

struct receive_counters {
  _Atomic uint64_t rx_packets, rx_bytes; /* inner packets written to the TUN */
  _Atomic uint64_t unknown_source;       /* the sender is not a peer */
  _Atomic uint64_t spoofed_source;       /* the inner source is outside the sending peer's subnet */
  _Atomic uint64_t malformed;
  _Atomic uint64_t write_errors;         /* the TUN refused the packet */
  _Atomic uint64_t datagrams, tun_writes, merged;
} __attribute__((aligned(64)));

struct engine {
  struct engine_config cfg;
  struct engine_info info;
  int tun_fd;
  int sock_fd;
  int stop_fd; /* eventfd: readable once engine_stop() was called */

  /* Current peer table; readers announce themselves through their epoch. */
  _Atomic(struct peer_table *) peers;
  _Atomic uint64_t send_epoch, receive_epoch; /* odd while a thread may hold a table pointer */
  pthread_mutex_t peers_lock;                 /* serialises writers */

  struct send_counters sc;
  struct receive_counters rc;

  pthread_t send_thread, receive_thread;
  int threads_started;
  _Atomic int stopping; /* checked between batches: a busy thread may not poll stop_fd for a while */
  _Atomic(const char *) fatal; /* static string, set once */
  char fatal_buf[256];
  _Atomic int fatal_claimed;
};

int engine_start(const struct engine_config *cfg, struct engine **out, char *err, size_t errlen);
/* Replaces the peer table; takes ownership of `t`. Waits until no thread uses the old one. */
void engine_set_peers(struct engine *e, struct peer_table *t);
void engine_stop(struct engine *e); /* joins the threads, closes everything, frees e; the TUN stays */
const char *engine_fatal(struct engine *e);
void engine_set_fatal(struct engine *e, const char *what, int errnum);

void *send_loop(void *arg);
void *receive_loop(void *arg);

/* A relaxed add for counters owned by the calling thread. */
#define COUNT(c, n) atomic_fetch_add_explicit(&(c), (uint64_t)(n), memory_order_relaxed)
#define READ(c) atomic_load_explicit(&(c), memory_order_relaxed)

/* Peer table access from the datapath threads (see engine_set_peers). */
static inline struct peer_table *peers_enter(struct engine *e, _Atomic uint64_t *epoch) {
  atomic_fetch_add(epoch, 1); /* odd: holding */
  return atomic_load(&e->peers);
}
static inline void peers_leave(_Atomic uint64_t *epoch) {
  atomic_fetch_add(epoch, 1); /* even: not holding */
}

#endif
