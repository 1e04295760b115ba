/*
 * twill-dataplane: the userspace packet engine (engine.c, send.c,
 * receive.c, ...) as a small program of its own. Before, the engine ran in
 * a forked Node.js process (~50 MB only to host two native threads); here
 * the same engine costs a few MB. twilld's EngineSupervisor starts it,
 * talks to it over a Unix socket (control.h) and restarts it when it dies.
 *
 * Start-up, in this order, so that every refusal leaves nothing behind:
 * claim the TUN's instance (instance.c: lock, stale socket, listen), read
 * the first peer table from stdin (--peers-stdin), start the engine with
 * it, then print one JSON line on stdout — {"ready":{pid, socket, info}}
 * or {"error":{code, message}} (the message also goes to stderr) — and
 * serve the socket. Exit codes: 0 stopped, 1 could not start, 2 usage,
 * 70 the engine gave up (its TUN device was deleted, say).
 *
 * It needs no attention to forward: the control loop below wakes ten times
 * a second to send the controller a counters heartbeat (each second) and
 * to notice that the engine's threads gave up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "dataplane.h"
#include "report.h"
#include "tun.h"

#define TICK_MS 100
#define HEARTBEAT_MS 1000
/* The twilld that started us attaches within this, or we are not wanted (it died meanwhile). */
#define FIRST_ATTACH_MS 15000
#define EXIT_FATAL 70

int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void dataplane_shutdown(struct dataplane *dp) {
  if (dp->engine) {
    engine_stop(dp->engine);
    dp->engine = NULL;
  }
  instance_release(&dp->inst);
}

void dataplane_exit(struct dataplane *dp, int code) {
  dataplane_shutdown(dp);
  exit(code);
}

/* The start-up verdict for twilld (stdout) and for a human (stderr). */
static int refuse(int rc, const char *message) {
  char buf[600];
  report_error(buf, sizeof(buf), strcmp(message, TUN_MISSING_MESSAGE) == 0 ? "ENOTUN" : errno_code(-rc), message);
  printf("{\"error\":%s}\n", buf);
  fflush(stdout);
  fprintf(stderr, "twill-dataplane: %s\n", message);
  return 1;
}

/* The first peer table, so that the engine never forwards without it. */
static struct peer_table *read_stdin_table(void) {
  size_t len = 0, cap = 65536;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (!buf) return NULL;
    if (len == cap) {
      uint8_t *b = realloc(buf, cap *= 2);
      if (!b) free(buf);
      buf = b;
      continue;
    }
    ssize_t r = read(0, buf + len, cap - len);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    len += (size_t)r;
  }
  struct peer_table *t = peers_from_wire(buf, len);
  free(buf);
  return t;
}

static int delete_tun(const char *name) {
  char err[256] = "";
  int rc = tun_delete(name, err, sizeof(err));
  if (rc != 0) return refuse(rc, err);
  printf("{\"deleted\":true}\n");
  return 0;
}

static void heartbeat(struct dataplane *dp) {
  if (dp->controller < 0) return;
  char buf[1024];
  size_t n = report_counters(buf, sizeof(buf), dp->engine);
  control_send(dp->conns[dp->controller].fd, MSG_COUNTERS, 0, 0, buf, n);
}

static void check_fatal(struct dataplane *dp) {
  const char *why = engine_fatal(dp->engine);
  if (!why) return;
  fprintf(stderr, "twill-dataplane: engine stopped: %s\n", why);
  if (dp->controller >= 0) {
    char buf[512] = "{\"message\":";
    size_t at = strlen(buf);
    at += report_string(buf + at, sizeof(buf) - at - 2, why);
    snprintf(buf + at, sizeof(buf) - at, "}");
    heartbeat(dp); /* the last counters, so that none are lost */
    control_send(dp->conns[dp->controller].fd, MSG_FATAL, 0, 0, buf, strlen(buf));
  }
  dataplane_exit(dp, EXIT_FATAL);
}

static void serve(struct dataplane *dp, int sigfd) {
  int64_t started = now_ms(), last_beat = started;
  for (;;) {
    struct pollfd p[2 + MAX_CONNS];
    int map[2 + MAX_CONNS], n = 0;
    p[n] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    map[n++] = -2;
    p[n] = (struct pollfd){.fd = dp->inst.listen_fd, .events = POLLIN};
    map[n++] = -1;
    for (int i = 0; i < MAX_CONNS; i++) {
      if (dp->conns[i].fd < 0) continue;
      p[n] = (struct pollfd){.fd = dp->conns[i].fd, .events = POLLIN};
      map[n++] = i;
    }
    if (poll(p, (nfds_t)n, TICK_MS) < 0 && errno != EINTR) {
      fprintf(stderr, "twill-dataplane: poll: %s\n", strerror(errno));
      dataplane_exit(dp, 1);
    }
    for (int k = 0; k < n; k++) {
      if (!p[k].revents) continue;
      if (map[k] == -2) {
        struct signalfd_siginfo si;
        if (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
          fprintf(stderr, "twill-dataplane: %s: stopping (the TUN device stays)\n", strsignal((int)si.ssi_signo));
          dataplane_exit(dp, 0);
        }
      } else if (map[k] == -1) {
        control_accept(dp);
      } else if (dp->conns[map[k]].fd == p[k].fd) {
        control_read(dp, map[k]);
      }
    }
    check_fatal(dp);
    int64_t now = now_ms();
    if (now - last_beat >= HEARTBEAT_MS) {
      heartbeat(dp);
      last_beat = now;
    }
    if (dp->attaches == 0 && now - started > FIRST_ATTACH_MS) {
      fprintf(stderr, "twill-dataplane: no twilld attached within %d ms; stopping\n", FIRST_ATTACH_MS);
      dataplane_exit(dp, 0);
    }
    if (dp->controller < 0 && dp->orphan_since >= 0 && now - dp->orphan_since > (int64_t)dp->grace_ms) {
      fprintf(stderr, "twill-dataplane: no twilld took over within %u ms of the last one detaching; stopping\n", dp->grace_ms);
      dataplane_exit(dp, 0);
    }
  }
}

int main(int argc, char **argv) {
  static struct dataplane dp; /* static: dataplane_exit may run from anywhere */
  char err[512] = "";
  if (args_parse(argc - 1, argv + 1, &dp.args, err, sizeof(err)) != 0) {
    fprintf(stderr, "twill-dataplane: %s\n", err);
    fprintf(stderr, "usage: twill-dataplane --mode udp|ipip --tun NAME --local-ip A.B.C.D --gateway A.B.C.D [--port N] [--mtu N]\n"
                    "                       [--offload 0|1] [--outer-ttl N] [--sockbuf BYTES] [--peers-stdin] [--fault-injection]\n"
                    "       twill-dataplane --delete-tun NAME\n"
                    "Normally started by twilld (EngineSupervisor), which then talks to it over its Unix socket.\n");
    return 2;
  }
  /* A twilld that went away leaves our pipes and socket without a reader: EPIPE, not death. */
  signal(SIGPIPE, SIG_IGN);
  if (dp.args.delete_tun[0]) return delete_tun(dp.args.delete_tun);

  /* Blocked before the engine's threads exist, so that they inherit it and only signalfd sees these. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  int sigfd = signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK);

  for (int i = 0; i < MAX_CONNS; i++) dp.conns[i].fd = -1;
  dp.controller = -1;
  dp.orphan_since = -1;

  int rc = instance_claim(&dp.inst, dp.args.cfg.tun_name, err, sizeof(err));
  if (rc != 0) return refuse(rc, err);
  if (dp.inst.stale_removed) fprintf(stderr, "twill-dataplane: removed a stale socket left by a dead dataplane: %s\n", dp.inst.sock_path);

  struct peer_table *first = NULL;
  if (dp.args.peers_stdin && !(first = read_stdin_table())) {
    instance_release(&dp.inst);
    return refuse(-EINVAL, "the peer table on stdin is not whole [subnet, prefixLen, publicIP, port] quadruples");
  }
  rc = engine_start(&dp.args.cfg, &dp.engine, err, sizeof(err));
  if (rc != 0) {
    if (first) peer_table_free(first);
    instance_release(&dp.inst);
    return refuse(rc, err);
  }
  if (first) engine_set_peers(dp.engine, first);

  char info[512], sock[160];
  report_info(info, sizeof(info), &dp.engine->info);
  report_string(sock, sizeof(sock), dp.inst.sock_path);
  printf("{\"ready\":{\"pid\":%ld,\"socket\":%s,\"info\":%s}}\n", (long)getpid(), sock, info);
  fflush(stdout);
  serve(&dp, sigfd);
  return 0;
}
