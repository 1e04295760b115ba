#include "report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* snprintf that never reports more than it wrote. */
static size_t put(char *out, size_t len, size_t at, const char *fmt, ...) {
  if (at >= len) return at;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out + at, len - at, fmt, ap);
  va_end(ap);
  if (n < 0) return at;
  return at + ((size_t)n < len - at ? (size_t)n : len - at - 1);
}

size_t report_string(char *out, size_t len, const char *s) {
  size_t at = put(out, len, 0, "\"");
  for (; *s && at + 8 < len; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') at = put(out, len, at, "\\%c", c);
    else if (c < 0x20) at = put(out, len, at, "\\u%04x", c);
    else out[at++] = (char)c;
  }
  out[at] = 0;
  return put(out, len, at, "\"");
}

size_t report_info(char *out, size_t len, const struct engine_info *i) {
  return put(out, len, 0,
             "{\"ifindex\":%d,\"tunCreated\":%s,\"mtu\":%d,\"acceptLocal\":%s,\"tunOffload\":%s,\"udpGso\":%s,\"udpGro\":%s,\"rcvbuf\":%d,\"sndbuf\":%d}",
             i->ifindex, i->tun_created ? "true" : "false", i->mtu, i->accept_local ? "true" : "false",
             i->tun_offload ? "true" : "false", i->udp_gso ? "true" : "false", i->udp_gro ? "true" : "false", i->rcvbuf,
             i->sndbuf);
}

size_t report_counters(char *out, size_t len, const struct engine *e) {
  const struct send_counters *s = &e->sc;
  const struct receive_counters *r = &e->rc;
#define U(c) (unsigned long long)READ(c)
  return put(out, len, 0,
             "{\"txPackets\":%llu,\"txBytes\":%llu,\"noRoute\":%llu,\"icmpSent\":%llu,\"ttlExpired\":%llu,\"notIpv4\":%llu,"
             "\"malformedTx\":%llu,\"sendErrors\":%llu,\"tunReads\":%llu,\"superPackets\":%llu,\"rxPackets\":%llu,"
             "\"rxBytes\":%llu,\"unknownSource\":%llu,\"spoofedSource\":%llu,\"malformedRx\":%llu,\"writeErrors\":%llu,\"datagrams\":%llu,"
             "\"tunWrites\":%llu,\"merged\":%llu}",
             U(s->tx_packets), U(s->tx_bytes), U(s->no_route), U(s->icmp_sent), U(s->ttl_expired), U(s->not_ipv4),
             U(s->malformed), U(s->send_errors), U(s->tun_reads), U(s->super_packets), U(r->rx_packets), U(r->rx_bytes),
             U(r->unknown_source), U(r->spoofed_source), U(r->malformed), U(r->write_errors), U(r->datagrams), U(r->tun_writes), U(r->merged));
#undef U
}

size_t report_error(char *out, size_t len, const char *code, const char *message) {
  size_t at = put(out, len, 0, "{\"code\":\"%s\",\"message\":", code);
  if (at < len) at += report_string(out + at, len - at, message);
  return put(out, len, at, "}");
}

const char *errno_code(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EBUSY: return "EBUSY";
    case EINVAL: return "EINVAL";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENOMEM: return "ENOMEM";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    default: return "EIO";
  }
}
