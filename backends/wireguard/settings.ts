/**
 * The wireguard backend's keys in the network config, as flanneld reads
 * them: `ListenPort` (51820), `ListenPortV6` (51821), `PSK` (a base64
 * WireGuard key, 32 bytes; none by default), `PersistentKeepaliveInterval`
 * (seconds, 0 = off) and `Mode` (separate, auto, ipv4 or ipv6; default
 * separate).
 *
 * Mode only matters where the network carries IPv6 (EnableIPv6), as in
 * flanneld:
 * - separate: two devices, `flannel-wg` (IPv4 subnets, over the IPv4
 *   underlay, ListenPort) and `flannel-wg-v6` (IPv6 subnets, over the IPv6
 *   underlay, ListenPortV6), both with the node's one key pair;
 * - auto, ipv4, ipv6: one device, `flannel-wg` on ListenPort, whose peers
 *   have the allowed IPs of both families and an endpoint of one family:
 *   ipv4 PublicIP, ipv6 PublicIPv6, auto as flanneld chooses it
 *   (wireguard-backend.ts `autoEndpoint`).
 * Without IPv6, every mode but ipv6 is the one IPv4 device.
 */
import { BackendConfig, ConfigError, setting } from '../../lib/config';
import { enumSetting, intSetting } from '../settings';
import { decodeKey } from './keys';

export const DEFAULT_LISTEN_PORT = 51820;
export const DEFAULT_LISTEN_PORT_V6 = 51821;
export const WIREGUARD_MODES = ['separate', 'auto', 'ipv4', 'ipv6'] as const;
export type WireguardMode = (typeof WIREGUARD_MODES)[number];

export interface WireguardSettings {
  readonly listenPort: number;
  /** The port of `flannel-wg-v6` (Mode separate in dual stack). */
  readonly listenPortV6: number;
  /** The preshared key, base64; undefined when none is configured. */
  readonly psk?: string;
  /** Seconds; 0 is off. */
  readonly keepalive: number;
  readonly mode: WireguardMode;
}

export function wireguardSettings(config: BackendConfig): WireguardSettings {
  const listenPort = intSetting(config, 'ListenPort', { min: 1, max: 65535, fallback: DEFAULT_LISTEN_PORT });
  const listenPortV6 = intSetting(config, 'ListenPortV6', { min: 1, max: 65535, fallback: DEFAULT_LISTEN_PORT_V6 });
  const keepalive = intSetting(config, 'PersistentKeepaliveInterval', { min: 0, max: 65535, fallback: 0 });
  const mode = enumSetting(config, 'Mode', WIREGUARD_MODES, 'separate');
  // Both devices of Mode separate listen on both address families (wireguard-go binds its port for IPv4 and IPv6).
  if (mode === 'separate' && listenPortV6 === listenPort) {
    throw new ConfigError('Backend.ListenPortV6', `Backend.ListenPortV6: ${listenPortV6} is also the ListenPort; with Mode "separate" ` +
      `flannel-wg-v6 needs a port of its own (default ${DEFAULT_LISTEN_PORT_V6}), or use Mode "auto" for one device`);
  }
  const raw = setting(config.settings, 'PSK');
  let psk: string | undefined;
  if (raw !== undefined && raw !== null && raw !== '') {
    if (typeof raw !== 'string') throw new ConfigError('Backend.PSK', `Backend.PSK: ${JSON.stringify(raw)} is not a string; it must be a base64 WireGuard key (\`wg genpsk\`)`);
    try {
      decodeKey(raw);
    } catch (err) {
      throw new ConfigError('Backend.PSK', `Backend.PSK: ${(err as Error).message}; generate one with \`wg genpsk\``);
    }
    psk = raw.trim();
  }
  return { listenPort, listenPortV6, keepalive, mode, ...(psk !== undefined ? { psk } : {}) };
}
