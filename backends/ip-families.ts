/**
 * Which backends carry an IPv6 overlay. flanneld runs IPv6 (EnableIPv6)
 * with vxlan, host-gw and wireguard only; udp and ipip encapsulate IPv4
 * packets alone and cannot carry it. A config asking for IPv6 over one of
 * those is refused, Fallback included, rather than leaving pods with IPv6
 * addresses nobody routes.
 */
import { ConfigError, setting, type NetworkConfig } from '../lib/config';
import { fallbackConfig } from './assignment';

/** The backends flanneld runs with EnableIPv6 (the wire contract twill follows). */
export const IPV6_BACKENDS: readonly string[] = ['vxlan', 'host-gw', 'wireguard'];

/** Backends that can carry IPv6 but do not yet in this build: a node running one leases and publishes IPv6, and says so. */
const IPV6_NOT_YET: readonly string[] = ['bgp'];

/** A warning for a config whose backend leases IPv6 without routing it here; undefined when there is nothing to say. */
export function ipv6NotCarriedWarning(config: NetworkConfig): string | undefined {
  if (!config.enableIPv6 || !IPV6_NOT_YET.includes(config.backend.type)) return undefined;
  return `EnableIPv6 is true but the ${config.backend.type} backend of this build does not route IPv6 yet: ` +
    'this node leases and publishes an IPv6 subnet, but its pods are reached over IPv4 only (vxlan, host-gw and wireguard carry both)';
}

/** Backends whose encapsulation holds only IPv4 packets. */
const IPV4_ONLY_BACKENDS: readonly string[] = ['udp', 'ipip'];

/**
 * Throws ConfigError naming the key when EnableIPv6 is on with a backend (or
 * Fallback) that cannot carry IPv6, or the network is IPv6-only with one
 * that does not route IPv6 yet (wireguard, bgp).
 */
export function checkIPv6Backends(config: NetworkConfig): void {
  if (!config.enableIPv6) {
    // wireguard's Mode "ipv6" sends to each peer's PublicIPv6, which only EnableIPv6 publishes.
    for (const [field, backend] of [['Backend.Mode', config.backend], ['Backend.Fallback', fallbackConfig(config.backend)]] as const) {
      const mode = backend?.type === 'wireguard' ? setting(backend.settings, 'Mode') : undefined;
      if (typeof mode === 'string' && mode.toLowerCase() === 'ipv6') {
        throw new ConfigError(field, `${field}: wireguard Mode "ipv6" reaches peers over IPv6, but EnableIPv6 is false; ` +
          'set EnableIPv6 (with IPv6Network), or use Mode "separate" (the default), "auto" or "ipv4"');
      }
    }
    return;
  }
  const refuse = (field: string, type: string) => new ConfigError(field,
    `${field} ${JSON.stringify(type)} cannot carry IPv6, but EnableIPv6 is true; ` +
    `use one of ${IPV6_BACKENDS.join(', ')}, or set EnableIPv6 to false`);
  if (IPV4_ONLY_BACKENDS.includes(config.backend.type)) throw refuse('Backend.Type', config.backend.type);
  const fallback = fallbackConfig(config.backend);
  if (fallback && IPV4_ONLY_BACKENDS.includes(fallback.type)) throw refuse('Backend.Fallback', fallback.type);
  if (config.enableIPv4) return;
  // IPv6 only: a backend that routes IPv4 alone would carry nothing at all.
  const refuseV6Only = (field: string, type: string) => new ConfigError(field,
    `${field} ${JSON.stringify(type)} does not route IPv6 yet, and EnableIPv4 is false (an IPv6-only network) leaves it nothing to carry; ` +
    `use one of ${IPV6_ONLY_BACKENDS.filter((t) => t !== 'alloc').join(', ')}, or set EnableIPv4 to true`);
  if (!IPV6_ONLY_BACKENDS.includes(config.backend.type)) throw refuseV6Only('Backend.Type', config.backend.type);
  if (fallback && !IPV6_ONLY_BACKENDS.includes(fallback.type)) throw refuseV6Only('Backend.Fallback', fallback.type);
}

/** The backends an IPv6-only network (EnableIPv4 false) runs on in this build: those routing IPv6, and alloc, which routes nothing. */
const IPV6_ONLY_BACKENDS: readonly string[] = ['vxlan', 'host-gw', 'alloc'];
