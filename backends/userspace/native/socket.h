/*
 * The wire side: a UDP socket bound to <local IP>:<port> (udp mode) or a
 * raw IPPROTO_IPIP socket bound to <local IP> (ipip mode; send.c writes the
 * outer header with IP_HDRINCL: protocol 4, our TTL, DF off, the kernel
 * fills in length, ID and checksum; reads return outer + inner packet).
 * Large buffers (the FORCE variants when we have CAP_NET_ADMIN), UDP GSO
 * and GRO when the kernel has them.
 */
#ifndef TWILL_SOCKET_H
#define TWILL_SOCKET_H

#include <stddef.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define UDP_GSO_MAX_SEGMENTS 64
#define UDP_GSO_MAX_BYTES 65000

struct engine;

/* Opens e->sock_fd as e->cfg says and records buffers and offloads in e->info. Returns 0 or -errno with err set. */
int wire_socket_open(struct engine *e, char *err, size_t errlen);

#endif
