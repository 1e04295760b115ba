/**
 * The wireguard backend's keys in the network config, as flanneld reads
 * them: `ListenPort` (51820), `PSK` (a base64 WireGuard key, 32 bytes;
 * none by default), `PersistentKeepaliveInterval` (seconds, 0 = off) and
 * `Mode` (separate, auto, ipv4 or ipv6; default separate). twill carries
 * IPv4 only, where separate, auto and ipv4 all mean one device,
 * `flannel-wg`, with IPv4 endpoints; ipv6 is refused. flanneld's
 * `ListenPortV6` is accepted and unused (it serves `flannel-wg-v6`).
 */
import { BackendConfig, ConfigError, setting } from '../../lib/config';
import { enumSetting, intSetting } from '../settings';
import { decodeKey } from './keys';

export const DEFAULT_LISTEN_PORT = 51820;
export const WIREGUARD_MODES = ['separate', 'auto', 'ipv4', 'ipv6'] as const;

export interface WireguardSettings {
  readonly listenPort: number;
  /** The preshared key, base64; undefined when none is configured. */
  readonly psk?: string;
  /** Seconds; 0 is off. */
  readonly keepalive: number;
  readonly mode: (typeof WIREGUARD_MODES)[number];
}

export function wireguardSettings(config: BackendConfig): WireguardSettings {
  const listenPort = intSetting(config, 'ListenPort', { min: 1, max: 65535, fallback: DEFAULT_LISTEN_PORT });
  intSetting(config, 'ListenPortV6', { min: 1, max: 65535, fallback: 51821 });
  const keepalive = intSetting(config, 'PersistentKeepaliveInterval', { min: 0, max: 65535, fallback: 0 });
  const mode = enumSetting(config, 'Mode', WIREGUARD_MODES, 'separate');
  if (mode === 'ipv6') {
    throw new ConfigError('Backend.Mode', 'Backend.Mode: "ipv6" is not supported: twill carries IPv4 over WireGuard; use "separate" (the default), "auto" or "ipv4"');
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
  return { listenPort, keepalive, mode, ...(psk !== undefined ? { psk } : {}) };
}
