#define _GNU_SOURCE
#include "control.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "report.h"
#include "tun.h"

#define MAX_ATTACH_ARGS 64
#define SEND_WAIT_MS 1000

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

int control_send(int fd, uint8_t kind, uint8_t status, uint32_t id, const void *payload, size_t len) {
  uint8_t h[FRAME_HEADER] = {0};
  put32(h, (uint32_t)(len + FRAME_HEADER - 4));
  h[4] = kind;
  h[5] = status;
  put32(h + 8, id);
  struct iovec iov[2] = {{h, sizeof(h)}, {(void *)payload, len}};
  int n = 2;
  struct iovec *v = iov;
  while (n > 0) {
    ssize_t w = writev(fd, v, n); /* SIGPIPE is ignored: a gone peer is EPIPE here */
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return -1;
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      if (poll(&p, 1, SEND_WAIT_MS) <= 0) return -1;
      continue;
    }
    while (n > 0 && (size_t)w >= v->iov_len) {
      w -= (ssize_t)v->iov_len;
      v++;
      n--;
    }
    if (n > 0) {
      v->iov_base = (uint8_t *)v->iov_base + w;
      v->iov_len -= (size_t)w;
    }
  }
  return 0;
}

static void reply_ok(struct conn *c, uint32_t id, const char *json) {
  control_send(c->fd, MSG_REPLY, 0, id, json, json ? strlen(json) : 0);
}

static void reply_error(struct conn *c, uint32_t id, const char *code, const char *message) {
  char buf[512];
  size_t n = report_error(buf, sizeof(buf), code, message);
  control_send(c->fd, MSG_REPLY, 1, id, buf, n);
}

struct peer_table *peers_from_wire(const uint8_t *buf, size_t len) {
  if (len % 16 != 0) return NULL;
  size_t n = len / 16;
  struct peer_spec *specs = calloc(n ? n : 1, sizeof(*specs));
  if (!specs) return NULL;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *q = buf + 16 * i;
    uint32_t plen = get32(q + 4);
    specs[i].subnet = get32(q);
    specs[i].prefix_len = (uint8_t)(plen > 32 ? 32 : plen);
    specs[i].public_ip = get32(q + 8);
    specs[i].port = (uint16_t)get32(q + 12);
  }
  struct peer_table *t = peer_table_build(specs, n);
  free(specs);
  return t;
}

static void close_conn(struct dataplane *dp, int i) {
  struct conn *c = &dp->conns[i];
  close(c->fd);
  free(c->buf);
  memset(c, 0, sizeof(*c));
  c->fd = -1;
  if (dp->controller != i) return;
  dp->controller = -1;
  if (!dp->detached) {
    /* twilld died or closed without detaching: a dataplane never outlives the agent that runs it. */
    fprintf(stderr, "twill-dataplane: twilld went away without detaching; stopping (the TUN device stays)\n");
    dataplane_exit(dp, 0);
  }
  dp->orphan_since = now_ms();
  fprintf(stderr, "twill-dataplane: twilld detached; forwarding on for up to %u ms until the next twilld attaches\n", dp->grace_ms);
}

static void attach(struct dataplane *dp, int i, uint32_t id, uint8_t *payload, size_t len) {
  struct conn *c = &dp->conns[i];
  if (dp->controller >= 0 && dp->controller != i && !dp->detached) {
    char msg[256];
    snprintf(msg, sizeof(msg), "twill-dataplane (pid %ld) on %s is run by another twilld; stop that one first",
             (long)getpid(), dp->args.cfg.tun_name);
    return reply_error(c, id, "EBUSY", msg);
  }
  char *argv[MAX_ATTACH_ARGS];
  int argc = 0;
  for (size_t at = 0; at < len && argc < MAX_ATTACH_ARGS;) {
    char *arg = (char *)payload + at;
    size_t n = strnlen(arg, len - at);
    if (at + n >= len) break; /* unterminated: ignored */
    argv[argc++] = arg;
    at += n + 1;
  }
  struct dataplane_args want;
  char err[256];
  if (args_parse(argc, argv, &want, err, sizeof(err)) != 0) return reply_error(c, id, "EINVAL", err);
  char mismatch[64] = "";
  int adopted = args_same_engine(&dp->args.cfg, &want.cfg, mismatch, sizeof(mismatch));
  /* A previous controller that detached but has not closed yet is superseded. */
  dp->controller = i;
  dp->detached = 0;
  dp->orphan_since = -1;
  dp->attaches++;
  dp->args.fault_injection = want.fault_injection;

  char info[512], sock[160], out[1024];
  report_info(info, sizeof(info), &dp->engine->info);
  report_string(sock, sizeof(sock), dp->inst.sock_path);
  snprintf(out, sizeof(out), "{\"pid\":%ld,\"socket\":%s,\"attaches\":%u,\"adopted\":%s,\"mismatch\":\"%s\",\"info\":%s}", (long)getpid(),
           sock, dp->attaches, adopted ? "true" : "false", mismatch, info);
  reply_ok(c, id, out);
}

static void handle(struct dataplane *dp, int i, uint8_t kind, uint32_t id, uint8_t *payload, size_t len) {
  struct conn *c = &dp->conns[i];
  if (kind == REQ_ATTACH) return attach(dp, i, id, payload, len);
  if (dp->controller != i) return reply_error(c, id, "EPERM", "attach first: only the controlling twilld may do this");
  char buf[1024];
  switch (kind) {
    case REQ_SET_PEERS: {
      struct peer_table *t = peers_from_wire(payload, len);
      if (!t) return reply_error(c, id, len % 16 ? "EINVAL" : "ENOMEM", len % 16 ? "the peer table is not whole quadruples" : "out of memory building the peer table");
      engine_set_peers(dp->engine, t);
      return reply_ok(c, id, NULL);
    }
    case REQ_COUNTERS:
      report_counters(buf, sizeof(buf), dp->engine);
      return reply_ok(c, id, buf);
    case REQ_STOP:
    case REQ_DESTROY: {
      /* Everything is released before the reply: whoever acts on it finds the TUN, port and name free. */
      report_counters(buf, sizeof(buf), dp->engine);
      control_send(c->fd, MSG_COUNTERS, 0, 0, buf, strlen(buf));
      char tun[IFNAMSIZ];
      memcpy(tun, dp->args.cfg.tun_name, sizeof(tun));
      dataplane_shutdown(dp);
      char err[256] = "";
      if (kind == REQ_DESTROY && tun_delete(tun, err, sizeof(err)) != 0) {
        reply_error(c, id, "EIO", err);
      } else {
        reply_ok(c, id, NULL);
      }
      dataplane_exit(dp, 0);
    }
    case REQ_DETACH:
      dp->detached = 1;
      dp->grace_ms = len >= 4 ? get32(payload) : 0;
      return reply_ok(c, id, NULL);
    case REQ_CRASH:
      if (!dp->args.fault_injection) return reply_error(c, id, "EPERM", "fault injection is off");
      {
        volatile int *volatile nowhere = NULL;
        *nowhere = 1; /* a native fault on purpose: the supervisor's crash tests */
      }
      return;
    default:
      return reply_error(c, id, "EINVAL", "unknown request");
  }
}

void control_read(struct dataplane *dp, int i) {
  struct conn *c = &dp->conns[i];
  for (;;) {
    if (c->cap - c->len < 65536) {
      size_t cap = c->cap ? c->cap * 2 : 65536;
      uint8_t *b = realloc(c->buf, cap);
      if (!b) return close_conn(dp, i);
      c->buf = b;
      c->cap = cap;
    }
    ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (r == 0) return close_conn(dp, i);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return close_conn(dp, i);
    }
    c->len += (size_t)r;
  }
  size_t at = 0;
  while (c->len - at >= 4) {
    uint32_t n = get32(c->buf + at);
    if (n < FRAME_HEADER - 4 || n > FRAME_MAX) return close_conn(dp, i);
    if (c->len - at < 4 + (size_t)n) break;
    uint8_t *f = c->buf + at;
    at += 4 + (size_t)n;
    handle(dp, i, f[4], get32(f + 8), f + FRAME_HEADER, (size_t)n + 4 - FRAME_HEADER);
    if (c->fd < 0) return; /* closed meanwhile */
  }
  memmove(c->buf, c->buf + at, c->len - at);
  c->len -= at;
  if (c->cap > (1u << 20) && c->len < 65536) { /* a big table came through: give the memory back */
    uint8_t *b = realloc(c->buf, 65536);
    if (b) {
      c->buf = b;
      c->cap = 65536;
    }
  }
}

void control_accept(struct dataplane *dp) {
  for (;;) {
    int fd = accept4(dp->inst.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    int slot = -1;
    for (int i = 0; i < MAX_CONNS && slot < 0; i++)
      if (dp->conns[i].fd < 0) slot = i;
    if (slot < 0) {
      close(fd);
      continue;
    }
    dp->conns[slot].fd = fd;
  }
}
