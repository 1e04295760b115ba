/*
 * Internet checksum (RFC 1071) helpers. Sums are kept as 64-bit
 * ones'-complement accumulators of the data as it lies in memory (the sum is
 * byte-order independent), folded to 16 bits at the end. Numeric fields of
 * a pseudo-header (protocol, length) are added in network order.
 *
 * Every partial sum must start at an even offset of the summed stream: the
 * callers sum IP and TCP headers (multiples of 4 bytes) and then payload.
 */
#ifndef TWILL_CHECKSUM_H
#define TWILL_CHECKSUM_H

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t csum_add64(uint64_t sum, uint64_t v) {
  sum += v;
  return sum + (sum < v); /* end-around carry: 2^64 = 1 (mod 0xffff) */
}

static inline uint64_t csum_partial(const void *data, size_t len, uint64_t sum) {
  const uint8_t *p = data;
  uint64_t s0 = 0, s1 = 0;
  while (len >= 32) {
    uint64_t a, b, c, d;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    memcpy(&c, p + 16, 8);
    memcpy(&d, p + 24, 8);
    s0 = csum_add64(s0, a);
    s1 = csum_add64(s1, b);
    s0 = csum_add64(s0, c);
    s1 = csum_add64(s1, d);
    p += 32;
    len -= 32;
  }
  while (len >= 8) {
    uint64_t a;
    memcpy(&a, p, 8);
    s0 = csum_add64(s0, a);
    p += 8;
    len -= 8;
  }
  if (len) {
    uint8_t tail[8] = {0};
    memcpy(tail, p, len);
    uint64_t a;
    memcpy(&a, tail, 8);
    s1 = csum_add64(s1, a);
  }
  return csum_add64(csum_add64(sum, s0), s1);
}

/* Folds to 16 bits, not complemented (the value a CHECKSUM_PARTIAL field holds). */
static inline uint16_t csum_fold(uint64_t sum) {
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return (uint16_t)sum;
}

/* The checksum field value: complement of the folded sum. */
static inline uint16_t csum_finish(uint64_t sum) { return (uint16_t)~csum_fold(sum); }

/* Pseudo-header of TCP/UDP over IPv4; addresses as in the packet, len = L4 length. */
static inline uint64_t csum_pseudo(const uint8_t *saddr, const uint8_t *daddr, uint8_t proto, uint32_t len) {
  uint32_t s, d;
  memcpy(&s, saddr, 4);
  memcpy(&d, daddr, 4);
  uint64_t sum = (uint64_t)s + d;
  return sum + htons(proto) + htons((uint16_t)len);
}

/* Recomputes an IPv4 header checksum in place. */
static inline void ip_header_checksum(uint8_t *ip, size_t ihl_bytes) {
  ip[10] = ip[11] = 0;
  uint16_t c = csum_finish(csum_partial(ip, ihl_bytes, 0));
  memcpy(ip + 10, &c, 2);
}

#endif
