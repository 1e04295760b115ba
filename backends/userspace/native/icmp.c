#include "ipv4.h"

#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_REDIRECT 5
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

static int is_icmp_error(const uint8_t *ip, size_t len) {
  if (ip[9] != PROTO_ICMP) return 0;
  size_t ihl = ip_ihl(ip);
  if (len < ihl + 1) return 1; /* cannot tell: do not answer */
  uint8_t t = ip[ihl];
  return t == ICMP_DEST_UNREACH || t == ICMP_SOURCE_QUENCH || t == ICMP_REDIRECT || t == ICMP_TIME_EXCEEDED ||
         t == ICMP_PARAMETERPROB;
}

size_t icmp_error(uint8_t *out, const uint8_t *orig, size_t orig_len, uint8_t type, uint8_t code, uint32_t from) {
  uint32_t src = ntohl(addr_at(orig + 12));
  if (src == 0 || (src >> 28) == 0xe || src == 0xffffffffu) return 0;
  if (ip_is_later_fragment(orig) || is_icmp_error(orig, orig_len)) return 0;

  size_t ihl = ip_ihl(orig);
  size_t quote = ihl + 8 < orig_len ? ihl + 8 : orig_len;
  size_t total = IP_MIN_HDR + 8 + quote;

  uint8_t *ip = out, *icmp = out + IP_MIN_HDR;
  memset(out, 0, IP_MIN_HDR + 8);
  ip[0] = 0x45;
  wr16(ip + 2, (uint16_t)total);
  ip[8] = 64;
  ip[9] = PROTO_ICMP;
  memcpy(ip + 12, &from, 4);
  memcpy(ip + 16, orig + 12, 4); /* back to the sender */
  ip_header_checksum(ip, IP_MIN_HDR);

  icmp[0] = type;
  icmp[1] = code;
  memcpy(icmp + 8, orig, quote);
  uint16_t c = csum_finish(csum_partial(icmp, 8 + quote, 0));
  memcpy(icmp + 2, &c, 2);
  return total;
}
