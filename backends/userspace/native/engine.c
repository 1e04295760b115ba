#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "socket.h"
#include "tun.h"

int engine_start(const struct engine_config *cfg, struct engine **out, char *err, size_t errlen) {
  struct engine *e = calloc(1, sizeof(*e));
  if (!e) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  e->cfg = *cfg;
  if (e->cfg.outer_ttl <= 0 || e->cfg.outer_ttl > 255) e->cfg.outer_ttl = 64;
  e->tun_fd = e->sock_fd = e->stop_fd = -1;
  pthread_mutex_init(&e->peers_lock, NULL);
  atomic_store(&e->peers, peer_table_build(NULL, 0));

  int rc;
  struct tun_opened tun;
  if ((rc = tun_open(cfg->tun_name, cfg->mtu, cfg->offload, &tun, err, errlen)) != 0) goto fail;
  e->tun_fd = tun.fd;
  e->info.ifindex = tun.ifindex;
  e->info.tun_created = tun.created;
  e->info.mtu = tun.mtu;
  e->info.accept_local = tun.accept_local;
  e->info.tun_offload = tun.vnet_hdr;

  if ((rc = wire_socket_open(e, err, errlen)) != 0) goto fail;

  if ((e->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
    rc = -errno;
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    goto fail;
  }
  if ((rc = pthread_create(&e->send_thread, NULL, send_loop, e)) != 0) {
    snprintf(err, errlen, "starting the send thread: %s", strerror(rc));
    rc = -rc;
    goto fail;
  }
  if ((rc = pthread_create(&e->receive_thread, NULL, receive_loop, e)) != 0) {
    snprintf(err, errlen, "starting the receive thread: %s", strerror(rc));
    uint64_t one = 1;
    if (write(e->stop_fd, &one, sizeof(one)) < 0) { /* the thread also stops on close */ }
    pthread_join(e->send_thread, NULL);
    rc = -rc;
    goto fail;
  }
  pthread_setname_np(e->send_thread, "twill-send");
  pthread_setname_np(e->receive_thread, "twill-receive");
  e->threads_started = 1;
  *out = e;
  return 0;

fail:
  if (e->stop_fd >= 0) close(e->stop_fd);
  if (e->sock_fd >= 0) close(e->sock_fd);
  if (e->tun_fd >= 0) close(e->tun_fd);
  peer_table_free(atomic_load(&e->peers));
  pthread_mutex_destroy(&e->peers_lock);
  free(e);
  return rc;
}

/* Waits until `epoch` is even or has moved on: that thread no longer holds the table it held. */
static void wait_quiescent(_Atomic uint64_t *epoch) {
  uint64_t seen = atomic_load(epoch);
  if (!(seen & 1)) return;
  struct timespec pause = {0, 20 * 1000};
  while (atomic_load(epoch) == seen) nanosleep(&pause, NULL);
}

void engine_set_peers(struct engine *e, struct peer_table *t) {
  pthread_mutex_lock(&e->peers_lock);
  struct peer_table *old = atomic_exchange(&e->peers, t);
  wait_quiescent(&e->send_epoch);
  wait_quiescent(&e->receive_epoch);
  pthread_mutex_unlock(&e->peers_lock);
  peer_table_free(old);
}

void engine_set_fatal(struct engine *e, const char *what, int errnum) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&e->fatal_claimed, &expected, 1)) return;
  snprintf(e->fatal_buf, sizeof(e->fatal_buf), "%s: %s", what, strerror(errnum));
  atomic_store(&e->fatal, (const char *)e->fatal_buf);
  /* The other thread stops too: one direction alone is no datapath. */
  atomic_store(&e->stopping, 1);
  uint64_t one = 1;
  if (write(e->stop_fd, &one, sizeof(one)) < 0) { /* already signalled */ }
}

const char *engine_fatal(struct engine *e) { return atomic_load(&e->fatal); }

void engine_stop(struct engine *e) {
  if (!e) return;
  if (e->threads_started) {
    atomic_store(&e->stopping, 1);
    uint64_t one = 1;
    if (write(e->stop_fd, &one, sizeof(one)) < 0) { /* already signalled */ }
    pthread_join(e->send_thread, NULL);
    pthread_join(e->receive_thread, NULL);
  }
  if (e->info.tun_offload) tun_offload_off(e->tun_fd);
  close(e->stop_fd);
  close(e->sock_fd);
  close(e->tun_fd);
  peer_table_free(atomic_load(&e->peers));
  pthread_mutex_destroy(&e->peers_lock);
  free(e);
}
