/**
 * What each cell of `twill status` says, as plain text, shared by the
 * terminal table and the HTML page so that both say the same thing.
 *
 * Lease keys and values are written by other nodes and may hold anything:
 * every piece of them goes through `printable`, which escapes control,
 * line-separator and bidirectional-override characters (no terminal escape
 * sequence or fake line reaches the operator's screen) and cuts it short.
 */
import type { BgpSessionState, ClusterStatus, ConfigStatus, Expiry, Health, LeaseRow, StatusStore } from './model';
import { NO_COMMON_BACKEND, encrypts, peersOf, type PeerBackend } from './topology';
import { carriesIPv4 } from '../../subnet/lease';

export const NONE = '-';

export interface LeaseCells {
  readonly subnet: string;
  readonly ipv6Subnet: string;
  readonly publicIP: string;
  readonly publicIPv6: string;
  readonly backends: string;
  /** The backends this node uses to its peers, with how many each (`viaText`). */
  readonly via: string;
  readonly vtepMAC: string;
  readonly expires: string;
  /** Kubernetes mode: the Node's name. */
  readonly node: string;
  readonly health: string;
  /** `INVALID: <reason>`, or empty. */
  readonly problem: string;
}

/** `status` is the whole cluster: a row's `via` depends on its peers and on the config. */
export function leaseCells(row: LeaseRow, status: ClusterStatus): LeaseCells {
  const attrs = row.attrs;
  return {
    // An IPv6-only lease holds no IPv4 subnet (its key's 0.0.0.0-0): '-', its IPv6 subnet beside.
    subnet: row.subnet ? (carriesIPv4({ subnet: row.subnet }) ? row.subnet.toString() : NONE) : printable(row.key, 40),
    ipv6Subnet: row.ipv6Subnet ? row.ipv6Subnet.toString() : NONE,
    publicIP: attrs ? attrs.publicIP : NONE,
    publicIPv6: attrs?.publicIPv6 ?? NONE,
    backends: backendsText(row),
    via: viaText(peersOf(row, status.rows, status.config)),
    vtepMAC: row.vtepMAC === undefined ? NONE : printable(row.vtepMAC, 24),
    expires: expiryText(row.expiry),
    node: row.node === undefined ? NONE : printable(row.node, 63),
    health: row.health ? healthText(row.health) : NONE,
    problem: row.invalid === undefined ? '' : `INVALID: ${printable(row.invalid, 160)}`,
  };
}

/** `vxlan`, or with twill's list: `vxlan (twill: vxlan, host-gw)`. */
export function backendsText(row: LeaseRow): string {
  if (row.backendType === undefined) return NONE;
  return row.twillBackends ? `${row.backendType} (twill: ${row.twillBackends.join(', ')})` : row.backendType;
}

/**
 * How many peers each backend carries from this node, the most used first
 * (then by name), `none` (peers it shares no backend with) last:
 * `vxlan×2 host-gw×1`; then, when some pairs are encrypted, how many:
 * `wireguard×2 vxlan×1; encrypted 2/3`. `-` without peers (and for an
 * invalid entry).
 */
export function viaText(peers: readonly PeerBackend[]): string {
  if (peers.length === 0) return NONE;
  const counts = new Map<string, number>();
  for (const p of peers) {
    const label = p.backend ?? NO_COMMON_BACKEND;
    counts.set(label, (counts.get(label) ?? 0) + 1);
  }
  const rank = (label: string) => (label === NO_COMMON_BACKEND ? 1 : 0);
  const text = [...counts]
    .sort(([a, n], [b, m]) => rank(a) - rank(b) || m - n || a.localeCompare(b))
    .map(([label, n]) => `${printable(label, 32)}×${n}`)
    .join(' ');
  // Which pairs are encrypted on the wire, said only where some are (WireGuard).
  const encrypted = peers.filter((p) => encrypts(p.backend)).length;
  return encrypted ? `${text}; encrypted ${encrypted}/${peers.length}` : text;
}

export function expiryText(expiry: Expiry): string {
  switch (expiry.kind) {
    case 'reservation': return 'reservation';
    case 'ttl': return formatDuration(expiry.seconds);
    case 'expired': return 'expired';
    case 'unknown': return '?';
    case 'node': return 'with its Node';
  }
}

/** 86340 → `23h59m`, 330 → `5m30s`, 42 → `42s`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

export function healthText(health: Health): string {
  const base = health.state === 'ready' ? 'ready' : `${health.state} (${printable(health.detail, 80)})`;
  return health.bgp ? `${base}; ${bgpText(health.bgp)}` : base;
}

/** `BGP 198.18.0.2 Established, 198.18.0.3 Active`, or `BGP no session`. */
export function bgpText(sessions: readonly BgpSessionState[]): string {
  if (sessions.length === 0) return 'BGP no session';
  return `BGP ${sessions.map((s) => `${printable(s.neighbor, 40)} ${printable(s.state, 20)}${s.reason ? ` (${printable(s.reason, 60)})` : ''}`).join(', ')}`;
}

/** The network config as label/value lines; `problem` marks a line the renderer may highlight. */
export interface ConfigLine {
  readonly label: string;
  readonly value: string;
  readonly problem?: boolean;
}

export function configLines(config: ConfigStatus, store: StatusStore['kind'] = 'etcd'): ConfigLine[] {
  switch (config.state) {
    case 'missing':
      return [{
        label: 'Config',
        value: store === 'etcd'
          ? `MISSING: no key ${printable(config.key)} in etcd; nodes wait until it is written. Leases are listed unchecked.`
          : `MISSING: there is no ${printable(config.key)}; twilld waits until there is one. Nodes are listed unchecked.`,
        problem: true,
      }];
    case 'invalid':
      return [{
        label: 'Config',
        value: `INVALID at ${printable(config.key)}: ${printable(config.error, 300)}; nodes keep the last good config. Leases are listed unchecked.`,
        problem: true,
      }];
    case 'valid': {
      const c = config.config;
      const lines: ConfigLine[] = [];
      if (c.enableIPv4 && c.network) {
        lines.push({ label: 'Network', value: c.network.toString() });
        lines.push({ label: 'SubnetLen', value: String(c.subnetLen) });
        lines.push({ label: 'SubnetMin–Max', value: `${c.subnetMin?.toString() ?? NONE} – ${c.subnetMax?.toString() ?? NONE}` });
      } else {
        lines.push({ label: 'Network', value: 'IPv4 disabled (EnableIPv4 false)' });
      }
      if (c.enableIPv6 && c.ipv6Network) {
        lines.push({ label: 'IPv6Network', value: c.ipv6Network.toString() });
        lines.push({ label: 'IPv6SubnetLen', value: String(c.ipv6SubnetLen) });
        lines.push({ label: 'IPv6SubnetMin–Max', value: `${c.ipv6SubnetMin?.toString() ?? NONE} – ${c.ipv6SubnetMax?.toString() ?? NONE}` });
      }
      const settings = Object.entries(c.backend.settings).map(([k, v]) => `${printable(k, 40)}=${printable(JSON.stringify(v) ?? String(v), 80)}`);
      lines.push({ label: 'Backend', value: [c.backend.type, ...settings].join('  ') });
      for (const w of c.warnings) lines.push({ label: 'Warning', value: printable(w, 200), problem: true });
      return lines;
    }
  }
}

/**
 * One line summing the leases up: `4 leases (1 reservation, 1 invalid)
 * under /coreos.com/network/subnets/`; in Kubernetes mode `5 Nodes (2
 * invalid) at https://…`.
 */
export function leaseSummary(status: ClusterStatus): string {
  const n = status.rows.length;
  const reservations = status.rows.filter((r) => r.expiry.kind === 'reservation').length;
  const invalid = status.rows.filter((r) => r.invalid !== undefined).length;
  const parts = [
    ...(reservations ? [`${reservations} reservation${reservations === 1 ? '' : 's'}`] : []),
    ...(invalid ? [`${invalid} invalid`] : []),
  ];
  const counted = `${parts.length ? ` (${parts.join(', ')})` : ''}`;
  if (status.store.kind === 'kube') return `${n} Node${n === 1 ? '' : 's'}${counted} at ${printable(status.store.server)}`;
  return `${n} lease${n === 1 ? '' : 's'}${counted} under ${printable(status.store.prefix)}/subnets/`;
}

// C0/C1 controls, DEL, line/paragraph separators, bidi embeddings/overrides/isolates.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** Text from etcd made safe to print on one line, and at most `max` characters (then `…`). */
export function printable(text: string, max = 120): string {
  const escaped = text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return escaped.length > max ? `${escaped.slice(0, max - 1)}…` : escaped;
}
