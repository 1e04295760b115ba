#define _GNU_SOURCE
#include "instance.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_WAIT_MS 1000

static void pause_ms(int ms) {
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

/* The PID a live holder wrote into the lock file, or 0. */
static long holder_pid(int fd) {
  char buf[32] = {0};
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  return n > 0 ? strtol(buf, NULL, 10) : 0;
}

static int take_lock(struct instance *in, const char *tun, char *err, size_t errlen) {
  long holder = 0;
  for (int waited = 0;; waited += 10) {
    int fd = open(in->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      int rc = -errno;
      snprintf(err, errlen, "cannot open %s: %s", in->lock_path, strerror(errno));
      return rc;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      /* The holder before us may have removed the file after we opened it: then lock the new one. */
      struct stat a, b;
      if (fstat(fd, &a) == 0 && stat(in->lock_path, &b) == 0 && a.st_ino == b.st_ino) {
        char pid[24];
        int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) { /* the PID is informative only */ }
        in->lock_fd = fd;
        return 0;
      }
      close(fd);
      continue;
    }
    holder = holder_pid(fd);
    close(fd);
    /* A dataplane that was just told to stop may still be on its way out: give it a moment. */
    if (waited >= LOCK_WAIT_MS) break;
    pause_ms(10);
  }
  snprintf(err, errlen,
           "refusing to start a second dataplane on %s: twill-dataplane (pid %ld) already runs it in this network namespace (socket %s); stop that one first",
           tun, holder, in->sock_path);
  return -EBUSY;
}

static int listen_on(struct instance *in, char *err, size_t errlen) {
  struct stat st;
  if (lstat(in->sock_path, &st) == 0) {
    /* We hold the lock, so whoever made this socket is dead. */
    if (unlink(in->sock_path) != 0 && errno != ENOENT) {
      int rc = -errno;
      snprintf(err, errlen, "cannot remove the stale socket %s: %s", in->sock_path, strerror(errno));
      return rc;
    }
    in->stale_removed = 1;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    int rc = -errno;
    snprintf(err, errlen, "socket(AF_UNIX): %s", strerror(errno));
    return rc;
  }
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, in->sock_path, strlen(in->sock_path) + 1);
  /* Only root (twilld) may control the datapath: the socket is created 0600. */
  mode_t old = umask(077);
  int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
  umask(old);
  if (rc != 0 || listen(fd, MAX_BACKLOG) != 0) {
    rc = -errno;
    snprintf(err, errlen, "cannot listen on %s: %s", in->sock_path, strerror(errno));
    close(fd);
    return rc;
  }
  in->listen_fd = fd;
  return 0;
}

int instance_claim(struct instance *in, const char *tun, char *err, size_t errlen) {
  memset(in, 0, sizeof(*in));
  in->lock_fd = in->listen_fd = -1;
  struct stat ns;
  if (stat("/proc/self/ns/net", &ns) != 0) {
    int rc = -errno;
    snprintf(err, errlen, "cannot read this process's network namespace (/proc/self/ns/net): %s", strerror(errno));
    return rc;
  }
  int n = snprintf(in->sock_path, sizeof(in->sock_path), "%s/dataplane-%lu-%s.sock", RUN_DIR, (unsigned long)ns.st_ino, tun);
  snprintf(in->lock_path, sizeof(in->lock_path), "%s/dataplane-%lu-%s.lock", RUN_DIR, (unsigned long)ns.st_ino, tun);
  if (n >= (int)sizeof(in->sock_path)) {
    snprintf(err, errlen, "socket path for %s too long", tun);
    return -ENAMETOOLONG;
  }
  if (mkdir(RUN_DIR, 0755) != 0 && errno != EEXIST) {
    int rc = -errno;
    snprintf(err, errlen, "cannot create %s: %s", RUN_DIR, strerror(errno));
    return rc;
  }
  int rc = take_lock(in, tun, err, errlen);
  if (rc == 0 && (rc = listen_on(in, err, errlen)) != 0) {
    close(in->lock_fd);
    in->lock_fd = -1;
  }
  return rc;
}

void instance_release(struct instance *in) {
  if (in->listen_fd >= 0) {
    unlink(in->sock_path);
    close(in->listen_fd);
    in->listen_fd = -1;
  }
  if (in->lock_fd >= 0) {
    unlink(in->lock_path);
    close(in->lock_fd);
    in->lock_fd = -1;
  }
}
