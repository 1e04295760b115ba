/*
 * The TUN device: created (or adopted, when it already exists) through
 * /dev/net/tun with IFF_TUN | IFF_NO_PI and made persistent, so that it and
 * the addresses and routes on it outlive the process (a restarted engine
 * adopts it, same ifindex).
 */
#ifndef TWILL_TUN_H
#define TWILL_TUN_H

#include <stddef.h>

#define TUN_MISSING_MESSAGE "/dev/net/tun is missing: load the tun module (modprobe tun) / give the container the device (--device /dev/net/tun)"

struct tun_opened {
  int fd;
  int ifindex;
  int created;
  int mtu;          /* the device's MTU once set */
  int accept_local; /* net.ipv4.conf.<name>.accept_local is 1 */
  int vnet_hdr; /* reads and writes carry a virtio-net header (offload on) */
};

/*
 * Opens `name`, creating it if needed; with `offload`, also asks for the
 * virtio-net header, TSO4 and checksum offload (kept off if refused).
 * Sets the MTU, brings the device up, sets accept_local (our ICMP errors
 * come from the device's own address). Returns 0, or -errno with `err` set.
 */
int tun_open(const char *name, int mtu, int offload, struct tun_opened *out, char *err, size_t errlen);

/* Clears the persistent flag of `name`: the device goes away with our last descriptor. Returns 0 or -errno. */
int tun_delete(const char *name, char *err, size_t errlen);

/* Turns offloads off again (a later reader may not want super-packets). */
void tun_offload_off(int fd);

#endif
