/** Where wireguard-go reaches a peer: the endpoint text it takes, and flanneld's choice of family in Mode auto. */
import { IP } from '../../lib/ip';

/** `ip:port` for wireguard-go, an IPv6 address in brackets and RFC 5952 form (as wireguard-go prints it back). */
export function formatEndpoint(ip: string, port: number): string {
  return ip.includes(':') ? `[${IP.parse(ip, 6).toString()}]:${port}` : `${ip}:${port}`;
}

/** Go's net.IP.IsPrivate: RFC 1918 and RFC 4193 (fc00::/7). */
export function isPrivateAddress(ip: string): boolean {
  const a = IP.parse(ip);
  if (a.family === 6) return (a.value >> 121n) === 0x7en;
  const v = a.value;
  return (v >> 24n) === 10n || (v >> 20n) === 0xac1n || (v >> 16n) === 0xc0a8n;
}

/**
 * flanneld's choice of endpoint address in Mode auto, for a peer that
 * publishes both families: IPv4 when its PublicIP is public and this node
 * has an IPv4 address; else IPv6 when its PublicIPv6 and this node's are
 * public; else IPv4. With one family published, that one.
 */
export function autoEndpoint(peerIPv4: string | undefined, peerIPv6: string | undefined, localIPv4: string | undefined, localIPv6: string | undefined): string | undefined {
  if (!peerIPv4 || !peerIPv6) return peerIPv4 ?? peerIPv6;
  if (!isPrivateAddress(peerIPv4) && localIPv4) return peerIPv4;
  if (!isPrivateAddress(peerIPv6) && localIPv6 && !isPrivateAddress(localIPv6)) return peerIPv6;
  return peerIPv4;
}
