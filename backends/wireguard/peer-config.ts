/**
 * What wireguard-go must be told so that it holds exactly the wanted
 * device and peers (pure): the UAPI `set` lines for the difference between
 * `get` and the plan. Peers that are already right are not touched — a
 * peer rewritten needlessly would keep its session, but replacing the whole
 * set (replace_peers) would drop every session and cost a handshake per
 * peer on each reconcile.
 */
import { keyToHex } from './keys';
import type { DeviceState } from './uapi';

/** One WireGuard peer as twill plans it. */
export interface WantedPeer {
  /** base64, from the peer's lease */
  readonly publicKey: string;
  /** `PublicIP:ListenPort` */
  readonly endpoint: string;
  readonly allowedIPs: readonly string[];
}

export interface WantedDevice {
  /** base64 */
  readonly privateKey: string;
  readonly listenPort: number;
  /** base64; undefined: none */
  readonly psk?: string;
  readonly keepalive: number;
  readonly peers: readonly WantedPeer[];
}

const NO_KEY = '0'.repeat(64);

/** The seconds of the one-off keepalive that greets a new peer (any non-zero value does). */
const GREETING_KEEPALIVE = 25;

/**
 * The public keys (hex) of the wanted peers wireguard-go does not hold yet.
 */
export function newPeers(want: WantedDevice, have: DeviceState): string[] {
  const held = new Set(have.peers.map((p) => p.publicKey));
  return want.peers.map((p) => keyToHex(p.publicKey)).filter((k) => !held.has(k));
}

/**
 * Two requests that make wireguard-go handshake with new peers at once:
 * turning a persistent keepalive on sends a keepalive right away (and so a
 * handshake), turning it back off leaves the configured value. Why: of two
 * nodes that learn each other's keys a few milliseconds apart, the first may
 * send its handshake before the other knows it, and WireGuard retries only
 * after 5 s; the greeting of the one that learns last always succeeds. It
 * also gives a restarted wireguard-go sessions before pod traffic needs one.
 * Empty when a keepalive is configured (wireguard-go sends one on its own).
 */
export function greetingRequests(keys: readonly string[], keepalive: number): [string[], string[]] {
  if (keepalive !== 0 || keys.length === 0) return [[], []];
  return [
    keys.flatMap((k) => [`public_key=${k}`, `persistent_keepalive_interval=${GREETING_KEEPALIVE}`]),
    keys.flatMap((k) => [`public_key=${k}`, 'persistent_keepalive_interval=0']),
  ];
}

export function configLines(want: WantedDevice, have: DeviceState): string[] {
  const lines: string[] = [];
  const privateKey = keyToHex(want.privateKey);
  if (have.privateKey !== privateKey) lines.push(`private_key=${privateKey}`);
  if (have.listenPort !== want.listenPort) lines.push(`listen_port=${want.listenPort}`);
  const psk = want.psk ? keyToHex(want.psk) : NO_KEY;
  const wanted = new Map(want.peers.map((p) => [keyToHex(p.publicKey), p]));
  for (const peer of have.peers) {
    if (!wanted.has(peer.publicKey)) lines.push(`public_key=${peer.publicKey}`, 'remove=true');
  }
  const current = new Map(have.peers.map((p) => [p.publicKey, p]));
  for (const [key, p] of wanted) {
    const now = current.get(key);
    const allowed = [...p.allowedIPs].sort();
    if (now && now.endpoint === p.endpoint && (now.presharedKey || NO_KEY) === psk && now.keepalive === want.keepalive &&
        now.allowedIPs.length === allowed.length && [...now.allowedIPs].sort().every((a, i) => a === allowed[i])) continue;
    lines.push(`public_key=${key}`, `preshared_key=${psk}`, `endpoint=${p.endpoint}`,
      `persistent_keepalive_interval=${want.keepalive}`, 'replace_allowed_ips=true', ...allowed.map((a) => `allowed_ip=${a}`));
  }
  return lines;
}
