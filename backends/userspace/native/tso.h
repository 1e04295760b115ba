/*
 * Cutting a TCP/IPv4 TSO super-packet (what the TUN hands over once TSO is
 * offered to the kernel) back into the packets the peer expects: each with
 * its own IPv4 header (length, ID + i, checksum) and TCP header (sequence
 * number, flags, full checksum) and `mss` bytes of payload (less for the
 * last). Headers are written to caller memory; payloads stay where they are.
 */
#ifndef TWILL_TSO_H
#define TWILL_TSO_H

#include <stddef.h>
#include <stdint.h>

#define TSO_MAX_HDR 120 /* 60 bytes of IPv4 header + 60 of TCP header */

struct tso {
  const uint8_t *pkt;
  size_t iphl, tcphl, hdr_len, payload_len, mss;
  int count;
  uint16_t ip_id;
  uint32_t seq;
  uint8_t flags;
};

/* Returns 0 when `pkt` is not a TCP/IPv4 packet that can be cut with this mss. */
int tso_init(struct tso *t, const uint8_t *pkt, size_t len, size_t mss);

/* Writes segment i's header (t->hdr_len bytes) to `hdr`; returns its payload slice. */
const uint8_t *tso_segment(const struct tso *t, int i, uint8_t *hdr, size_t *payload_len);

#endif
