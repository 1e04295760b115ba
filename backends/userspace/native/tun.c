#define _GNU_SOURCE
#include "tun.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int open_dev(char *err, size_t errlen) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0) return fd;
  int e = errno;
  if (e == ENOENT || e == ENXIO || e == ENODEV)
    snprintf(err, errlen, "%s", TUN_MISSING_MESSAGE);
  else
    snprintf(err, errlen, "cannot open /dev/net/tun: %s", strerror(e));
  return -e;
}

static int set_iff(int fd, const char *name, short flags, char *err, size_t errlen) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_flags = flags;
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if (ioctl(fd, TUNSETIFF, &ifr) == 0) return 0;
  int e = errno;
  if (e == EPERM)
    snprintf(err, errlen, "creating TUN device %s needs CAP_NET_ADMIN (run as root)", name);
  else if (e == EBUSY)
    snprintf(err, errlen, "TUN device %s is in use by another process (another twilld or flanneld?)", name);
  else if (e == EINVAL)
    snprintf(err, errlen, "%s exists but is not a single-queue TUN device (%s); delete it or pick another name", name, strerror(e));
  else
    snprintf(err, errlen, "TUNSETIFF %s: %s", name, strerror(e));
  return -e;
}

static int if_ioctl(unsigned long req, struct ifreq *ifr) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -errno;
  int rc = ioctl(s, req, ifr) == 0 ? 0 : -errno;
  close(s);
  return rc;
}

/*
 * The ICMP errors we write into the TUN come from the device's own address
 * (flanneld's choice); without accept_local the kernel drops them as
 * martians. Returns 1 when the setting holds.
 */
static int set_accept_local(const char *name) {
  char path[96];
  snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/accept_local", name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  int ok = write(fd, "1", 1) == 1;
  close(fd);
  return ok;
}

int tun_open(const char *name, int mtu, int offload, struct tun_opened *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  out->fd = -1;
  if (strlen(name) == 0 || strlen(name) >= IFNAMSIZ) {
    snprintf(err, errlen, "TUN device name \"%s\" must be 1..%d characters", name, IFNAMSIZ - 1);
    return -EINVAL;
  }
  out->created = if_nametoindex(name) == 0;
  int fd = open_dev(err, errlen);
  if (fd < 0) return fd;
  int rc = -1;
  if (offload) rc = set_iff(fd, name, IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, err, errlen);
  if (rc == 0) {
    int sz = sizeof(struct virtio_net_hdr);
    unsigned long want = TUN_F_CSUM | TUN_F_TSO4;
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz) == 0 && ioctl(fd, TUNSETOFFLOAD, want) == 0) {
      out->vnet_hdr = 1;
    } else {
      /* A TUN without offloads: reopen without the header. */
      close(fd);
      if ((fd = open_dev(err, errlen)) < 0) return fd;
      rc = -1;
    }
  }
  if (rc != 0 && (rc = set_iff(fd, name, IFF_TUN | IFF_NO_PI, err, errlen)) != 0) {
    close(fd);
    return rc;
  }
  if (ioctl(fd, TUNSETPERSIST, 1) != 0) {
    rc = -errno;
    snprintf(err, errlen, "TUNSETPERSIST %s: %s", name, strerror(errno));
    close(fd);
    return rc;
  }

  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  ifr.ifr_mtu = mtu;
  if (mtu > 0 && (rc = if_ioctl(SIOCSIFMTU, &ifr)) != 0) {
    snprintf(err, errlen, "setting MTU %d on %s: %s", mtu, name, strerror(-rc));
    close(fd);
    return rc;
  }
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if ((rc = if_ioctl(SIOCGIFFLAGS, &ifr)) == 0 && !(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP;
    rc = if_ioctl(SIOCSIFFLAGS, &ifr);
  }
  if (rc != 0) {
    snprintf(err, errlen, "bringing %s up: %s", name, strerror(-rc));
    close(fd);
    return rc;
  }
  out->accept_local = set_accept_local(name);
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  out->mtu = if_ioctl(SIOCGIFMTU, &ifr) == 0 ? ifr.ifr_mtu : mtu;
  out->fd = fd;
  out->ifindex = (int)if_nametoindex(name);
  return 0;
}

void tun_offload_off(int fd) {
  if (ioctl(fd, TUNSETOFFLOAD, 0UL) != 0) { /* nothing to undo */ }
}

int tun_delete(const char *name, char *err, size_t errlen) {
  if (if_nametoindex(name) == 0) return 0; /* already gone */
  int fd = open_dev(err, errlen);
  if (fd < 0) return fd;
  int rc = set_iff(fd, name, IFF_TUN | IFF_NO_PI, err, errlen);
  if (rc == 0) {
    tun_offload_off(fd);
    rc = ioctl(fd, TUNSETPERSIST, 0) == 0 ? 0 : -errno;
    if (rc) snprintf(err, errlen, "TUNSETPERSIST 0 on %s: %s", name, strerror(-rc));
  }
  close(fd);
  return rc;
}
