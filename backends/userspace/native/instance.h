/*
 * One dataplane per TUN device and network namespace, and where twilld
 * finds it.
 *
 * The socket is /run/twill/dataplane-<netns inode>-<tun>.sock. /run is
 * often shared by several network namespaces (test nodes, `ip netns exec`),
 * and each may have its own flannel0: the namespace's inode keeps their
 * sockets apart. A lock file beside it (flock, held for the program's whole
 * life, released by the kernel however the program ends) decides who owns
 * the name: a second dataplane for the same TUN is refused, naming the PID
 * that runs; a socket file found while we hold the lock was left by a dead
 * dataplane and is replaced.
 */
#ifndef TWILL_INSTANCE_H
#define TWILL_INSTANCE_H

#include <stddef.h>
#include <sys/un.h>

#define RUN_DIR "/run/twill"
#define MAX_BACKLOG 8

struct instance {
  char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char lock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  int lock_fd;   /* -1 until claimed */
  int listen_fd; /* -1 until claimed */
  int stale_removed; /* a dead dataplane's socket was found and removed */
};

/*
 * Takes the lock (waiting up to a second for a dataplane that is exiting),
 * removes a stale socket, binds and listens. Returns 0, -EBUSY when another
 * live dataplane holds `tun` (err names its PID), or another -errno.
 */
int instance_claim(struct instance *in, const char *tun, char *err, size_t errlen);

/* Removes the socket and the lock file (still holding the lock, so no newcomer can be cut out), closes both. */
void instance_release(struct instance *in);

#endif
