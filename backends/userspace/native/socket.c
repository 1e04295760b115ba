#define _GNU_SOURCE
#include "socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine.h"

static int set_buffer(int fd, int force_opt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof(bytes)) != 0) setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes));
  int got = 0;
  socklen_t len = sizeof(got);
  getsockopt(fd, SOL_SOCKET, opt, &got, &len);
  return got;
}

int wire_socket_open(struct engine *e, char *err, size_t errlen) {
  const struct engine_config *cfg = &e->cfg;
  int udp = cfg->mode == MODE_UDP;
  char local[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &cfg->local_ip, local, sizeof(local));

  int fd = udp ? socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) : socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_IPIP);
  if (fd < 0) {
    int rc = -errno;
    if (errno == EPERM && !udp)
      snprintf(err, errlen, "a raw IP-in-IP socket needs CAP_NET_RAW (run as root)");
    else
      snprintf(err, errlen, "socket: %s", strerror(errno));
    return rc;
  }
  e->info.rcvbuf = set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, cfg->sockbuf);
  e->info.sndbuf = set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, cfg->sockbuf);

  /* Inner packets fit the path (MTU = ext - overhead); never let DF turn a rare big one into an error. */
  int pmtu = IP_PMTUDISC_DONT;
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof(pmtu));
  if (!udp) {
    /* We write the outer header (send.c): the kernel's raw path then only fills in length, ID and checksum. */
    int on = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &on, sizeof(on)) != 0) {
      int rc = -errno;
      snprintf(err, errlen, "IP_HDRINCL: %s", strerror(errno));
      close(fd);
      return rc;
    }
  }

  struct sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = cfg->local_ip;
  addr.sin_port = udp ? htons(cfg->port) : 0;
  if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    int rc = -errno;
    if (errno == EADDRINUSE)
      snprintf(err, errlen, "UDP port %s:%u is in use (another flanneld or twilld?)", local, cfg->port);
    else if (errno == EADDRNOTAVAIL)
      snprintf(err, errlen, "cannot bind to %s: no interface in this network namespace holds that address", local);
    else
      snprintf(err, errlen, "bind %s:%u: %s", local, udp ? cfg->port : 0, strerror(errno));
    close(fd);
    return rc;
  }

  if (udp && cfg->offload) {
    int on = 1, seg = 1400;
    e->info.udp_gro = setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) == 0;
    /* Probe: setting a socket-wide segment size works where UDP_SEGMENT does; reset it, sends set it per message. */
    if (setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg)) == 0) {
      seg = 0;
      setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg));
      e->info.udp_gso = 1;
    }
  }
  e->sock_fd = fd;
  return 0;
}
