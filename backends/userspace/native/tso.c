#include "tso.h"

#include "ipv4.h"

int tso_init(struct tso *t, const uint8_t *pkt, size_t len, size_t mss) {
  if (len < IP_MIN_HDR + TCP_MIN_HDR || pkt[9] != PROTO_TCP || mss == 0) return 0;
  size_t iphl = ip_ihl(pkt);
  if (len < iphl + TCP_MIN_HDR) return 0;
  size_t tcphl = (size_t)(pkt[iphl + 12] >> 4) * 4;
  if (tcphl < TCP_MIN_HDR || len < iphl + tcphl) return 0;
  t->pkt = pkt;
  t->iphl = iphl;
  t->tcphl = tcphl;
  t->hdr_len = iphl + tcphl;
  t->payload_len = len - t->hdr_len;
  t->mss = mss;
  t->count = t->payload_len == 0 ? 1 : (int)((t->payload_len + mss - 1) / mss);
  t->ip_id = rd16(pkt + 4);
  t->seq = rd32(pkt + iphl + 4);
  t->flags = pkt[iphl + 13];
  return 1;
}

const uint8_t *tso_segment(const struct tso *t, int i, uint8_t *hdr, size_t *payload_len) {
  size_t off = (size_t)i * t->mss;
  size_t plen = t->payload_len - off < t->mss ? t->payload_len - off : t->mss;
  const uint8_t *payload = t->pkt + t->hdr_len + off;
  int last = i == t->count - 1;

  memcpy(hdr, t->pkt, t->hdr_len);
  uint8_t *ip = hdr, *tcp = hdr + t->iphl;
  wr16(ip + 2, (uint16_t)(t->hdr_len + plen));
  wr16(ip + 4, (uint16_t)(t->ip_id + i));
  ip_header_checksum(ip, t->iphl);

  wr32(tcp + 4, t->seq + (uint32_t)off);
  uint8_t flags = t->flags;
  if (!last) flags &= (uint8_t)~(TCP_FIN | TCP_PSH);
  if (i > 0) flags &= (uint8_t)~TCP_CWR;
  tcp[13] = flags;
  tcp[16] = tcp[17] = 0;
  uint64_t sum = csum_pseudo(ip + 12, ip + 16, PROTO_TCP, (uint32_t)(t->tcphl + plen));
  sum = csum_partial(tcp, t->tcphl, sum);
  sum = csum_partial(payload, plen, sum);
  uint16_t c = csum_finish(sum);
  memcpy(tcp + 16, &c, 2);

  *payload_len = plen;
  return payload;
}
