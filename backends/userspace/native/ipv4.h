/*
 * IPv4 packet helpers shared by both directions: field access on raw
 * bytes, the TTL decrement flanneld does, checksum completion for packets
 * the kernel handed over with a partial checksum.
 */
#ifndef TWILL_IPV4_H
#define TWILL_IPV4_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "checksum.h"

#define IP_MIN_HDR 20
#define PROTO_ICMP 1
#define PROTO_IPIP 4
#define PROTO_TCP 6
#define PROTO_UDP 17
#define TCP_MIN_HDR 20

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_URG 0x20
#define TCP_ECE 0x40
#define TCP_CWR 0x80

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void wr32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }
/* An address field as stored (network order), for comparisons and sockaddr. */
static inline uint32_t addr_at(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static inline size_t ip_ihl(const uint8_t *ip) { return (size_t)(ip[0] & 0x0f) * 4; }
static inline int ip_is_fragment(const uint8_t *ip) { return (rd16(ip + 6) & 0x3fff) != 0; } /* MF or offset */
static inline int ip_is_later_fragment(const uint8_t *ip) { return (rd16(ip + 6) & 0x1fff) != 0; }

/*
 * Checks that `len` bytes at `ip` start with a well-formed IPv4 header and
 * returns the packet length its header claims (trailing bytes beyond it are
 * padding), or 0 when the packet must be dropped.
 */
static inline size_t ip_valid_length(const uint8_t *ip, size_t len) {
  if (len < IP_MIN_HDR || (ip[0] >> 4) != 4) return 0;
  size_t ihl = ip_ihl(ip), tot = rd16(ip + 2);
  if (ihl < IP_MIN_HDR || tot < ihl || tot > len) return 0;
  return tot;
}

/* RFC 1624 incremental update of the header checksum for TTL - 1. */
static inline void ip_decrement_ttl(uint8_t *ip) {
  uint16_t old_word = rd16(ip + 8);
  ip[8]--;
  uint16_t new_word = rd16(ip + 8);
  uint32_t sum = (uint16_t)~rd16(ip + 10);
  sum += (uint16_t)~old_word;
  sum += new_word;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  wr16(ip + 10, (uint16_t)~sum);
}

/*
 * Completes a partial (offloaded) L4 checksum: the field at
 * csum_start + csum_offset holds the pseudo-header sum; the sum over
 * [csum_start, len) complemented is the real checksum. Returns 0 when the
 * offsets do not fit the packet.
 */
static inline int complete_checksum(uint8_t *pkt, size_t len, size_t csum_start, size_t csum_offset) {
  if (csum_start >= len || csum_start + csum_offset + 2 > len) return 0;
  uint16_t c = csum_finish(csum_partial(pkt + csum_start, len - csum_start, 0));
  if (c == 0 && pkt[9] == PROTO_UDP) c = 0xffff; /* UDP: 0 means "no checksum" */
  memcpy(pkt + csum_start + csum_offset, &c, 2);
  return 1;
}

/*
 * Builds an ICMP error (type/code) answering `orig` into `out` (at least
 * 20 + 8 + 60 + 8 bytes): source `from` (network order), quoting the
 * original header and the first 8 bytes of its payload. Returns the length,
 * or 0 when RFC 1122 says not to answer (the original is an ICMP error, a
 * non-first fragment, or comes from no one / a multicast or broadcast
 * address).
 */
size_t icmp_error(uint8_t *out, const uint8_t *orig, size_t orig_len, uint8_t type, uint8_t code, uint32_t from);

#endif
