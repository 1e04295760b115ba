/**
 * Who reaches whom over what: an edge between every two leases a node would
 * accept, labelled with the backend that carries traffic between them, and
 * for each node the backend it uses to each of its peers.
 *
 * The backend is decided by the agents' own rule, `chooseBackend` of
 * backends/assignment.ts: the first backend of the configured preference order
 * (`Backend.Type`, then its `Fallback`) that both nodes terminate and that
 * can reach the peer; failing that, any other both terminate (the middle of
 * a migration), in the order the local node lists them; `none` when they
 * share none, so that traffic between them cannot flow. An edge is seen
 * from its first node (in subnet order); `peersOf` sees each node's peers
 * from that node, as its agent does.
 *
 * host-gw reaches a peer only on the same link: its public IP must lie in
 * the subnet of the local node's external interface. etcd does not hold the
 * nodes' prefix lengths, so a /24 is assumed (`ASSUMED_UNDERLAY_PREFIX_LEN`)
 * unless a row carries the one its node reports (`LeaseRow.publicPrefixLen`),
 * and the two nodes must each find the other on-link. An underlay wider than
 * a /24 may thus show vxlan (or the fallback) where the agents use host-gw,
 * and a narrower one the reverse: the node's routes say what it really
 * programmed.
 *
 * Without a valid network config (missing, or invalid: the agents keep the
 * last good one, which etcd no longer holds) there is no preference order,
 * and the backends both ends terminate are taken in the local node's order.
 * Invalid entries get no edges and no peers: every node ignores them.
 */
import { IP, IPNet } from '../../ip';
import { chooseBackend, preferenceOrder, typeOfKey } from '../../../backends';
import { rowName, type ConfigStatus, type LeaseRow } from './model';
import { underlayAddress } from '../../subnet/lease';

export const NO_COMMON_BACKEND = 'none';

/** Backend types whose traffic between nodes is encrypted (WireGuard); every other carries pod packets in clear. */
export const ENCRYPTING_BACKENDS: readonly string[] = ['wireguard'];

/** Traffic over `backend` (an instance key, or undefined: none) is encrypted on the wire. */
export function encrypts(backend: string | undefined): boolean {
  return backend !== undefined && ENCRYPTING_BACKENDS.includes(typeOfKey(backend));
}

/** The prefix length of a node's public IP on its underlay, when its lease row reports none. */
export const ASSUMED_UNDERLAY_PREFIX_LEN = 24;

export interface TopologyEdge {
  readonly a: LeaseRow;
  readonly b: LeaseRow;
  /** The backend between them, or `none`. */
  readonly backend: string;
  /** `<subnet a>|<subnet b>`, a before b in subnet order. */
  readonly id: string;
}

/** The backend one node uses toward one peer. */
export interface PeerBackend {
  readonly peer: LeaseRow;
  /** undefined: they share no usable backend, so no traffic flows. */
  readonly backend: string | undefined;
}

/** `rows` in display (subnet) order; edges come out in that order too. */
export function edgesOf(rows: readonly LeaseRow[], config: ConfigStatus): TopologyEdge[] {
  const order = configuredOrder(config);
  const nodes = rows.filter((r) => r.lease);
  const edges: TopologyEdge[] = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i];
      const b = nodes[j];
      edges.push({ a, b, backend: backendBetween(order, a, b) ?? NO_COMMON_BACKEND, id: `${rowName(a)}|${rowName(b)}` });
    }
  }
  return edges;
}

/** Every other valid lease of `rows`, in their order, with the backend `row`'s node uses to it; [] for an invalid row. */
export function peersOf(row: LeaseRow, rows: readonly LeaseRow[], config: ConfigStatus): PeerBackend[] {
  if (!row.lease) return [];
  const order = configuredOrder(config);
  return rows.filter((r) => r.lease && r !== row).map((peer) => ({ peer, backend: backendBetween(order, row, peer) }));
}

/** The preference order of a valid config; [] without one (see the module comment). */
export function configuredOrder(config: ConfigStatus): string[] {
  if (config.state !== 'valid') return [];
  try {
    return preferenceOrder(config.config.backend);
  } catch {
    // A Fallback the agents refuse too: they run Backend.Type alone.
    return [config.config.backend.type];
  }
}

/** The backend `local`'s node uses to reach `remote`'s, as its agent chooses it. */
export function backendBetween(order: readonly string[], local: LeaseRow, remote: LeaseRow): string | undefined {
  return chooseBackend(order, local.terminates, remote.terminates, (type) => type !== 'host-gw' || onOneLink(local, remote));
}

/**
 * Each public IP lies in the other's underlay subnet (its reported prefix,
 * else /24). IPv6-only nodes (PublicIP "0.0.0.0") by their PublicIPv6,
 * assumed on a /64.
 */
export function onOneLink(a: LeaseRow, b: LeaseRow): boolean {
  const ipA = publicAddress(a);
  const ipB = publicAddress(b);
  if (!ipA || !ipB || ipA.family !== ipB.family) return false;
  const within = (ip: IP, of: IP, row: LeaseRow) =>
    IPNet.of(of, ip.family === 6 ? ASSUMED_UNDERLAY_PREFIX_LEN_V6 : row.publicPrefixLen ?? ASSUMED_UNDERLAY_PREFIX_LEN).contains(ip);
  return within(ipB, ipA, a) && within(ipA, ipB, b);
}

/** The prefix length assumed for an IPv6 underlay (a node reports only its IPv4 one). */
export const ASSUMED_UNDERLAY_PREFIX_LEN_V6 = 64;

function publicAddress(row: LeaseRow): IP | undefined {
  const text = row.attrs ? underlayAddress(row.attrs) : undefined;
  if (!text) return undefined;
  try {
    return IP.parse(text);
  } catch {
    return undefined;
  }
}
