/**
 * The cluster as etcd holds it, as `twill status` shows it: the network
 * config and one row per key under `<prefix>/subnets/`, valid or not. (In
 * Kubernetes mode a row is a Node instead: kube-model.ts builds the same
 * ClusterStatus from Nodes.)
 *
 * `buildClusterStatus` is pure: it takes what was read from etcd (see
 * `snapshot.ts`) and decides, with the agents' own rule (`filterLeases`),
 * which entries a node would accept. Nothing is
 * hidden: an entry a node would skip becomes a row with `invalid` set to the
 * reason, and with whatever could still be read from it (its subnet, its
 * public IP), so the operator sees what is wrong and where.
 */
import { parseNetworkConfig, type NetworkConfig } from '../../config';
import type { IPNet } from '../../ip';
import {
  decodeLeaseAttrs, filterLeases, parseSubnetKey,
  type LeaseAttrs, type Lease, type RawKV,
} from '../../subnet';
import { KNOWN_BACKEND_TYPES, BackendUnavailableError, advertKey, backendFactory, terminatedBy } from '../../../backends';
import { carriesIPv4, leaseLabel } from '../../subnet/lease';

/** The network config at `<prefix>/config`, as found. */
export type ConfigStatus =
  | { readonly state: 'missing'; readonly key: string }
  | { readonly state: 'invalid'; readonly key: string; readonly error: string }
  | { readonly state: 'valid'; readonly key: string; readonly config: NetworkConfig };

/** How long a lease has left: an etcd lease's TTL, none at all (a reservation), or not known. */
export type Expiry =
  | { readonly kind: 'reservation' }
  | { readonly kind: 'ttl'; readonly seconds: number }
  /** The etcd lease was gone when its TTL was asked for: the key is about to disappear. */
  | { readonly kind: 'expired' }
  | { readonly kind: 'unknown'; readonly error: string }
  /** Kubernetes mode: a Node's lease has no expiry, it lives as long as the Node. */
  | { readonly kind: 'node' };

/** The answer of a node's `/readyz`, when `--health-port` is given. */
export type Health = (
  | { readonly state: 'ready' }
  | { readonly state: 'not ready'; readonly detail: string }
  | { readonly state: 'unknown'; readonly detail: string }
) & {
  /** A node that terminates bgp: its BIRD sessions, from its /metrics (undefined: not asked or not answered). */
  readonly bgp?: readonly BgpSessionState[];
};

/** One BGP session of a node, as its /metrics reports it. */
export interface BgpSessionState {
  readonly neighbor: string;
  /** Established, Active, Connect, Idle, … */
  readonly state: string;
  /** Why it is not established (BIRD's last error); absent when it is. */
  readonly reason?: string;
}

export interface LeaseRow {
  /**
   * The etcd key below `<prefix>/subnets/`, as stored; in Kubernetes mode the
   * Node's name (unique, where podCIDRs may not be). Untrusted text: print
   * through `cells.ts`.
   */
  readonly key: string;
  /** Kubernetes mode: the Node this row is. */
  readonly node?: string;
  /** Parsed from the key, when it parses (also for some invalid rows). */
  readonly subnet?: IPNet;
  readonly ipv6Subnet?: IPNet;
  /** Decoded from the value, when it decodes (also for some invalid rows). */
  readonly attrs?: LeaseAttrs;
  /** Present exactly when a node would accept the entry. */
  readonly lease?: Lease;
  /** Why a node would skip the entry; undefined when valid. */
  readonly invalid?: string;
  readonly etcdLeaseId?: string;
  readonly expiry: Expiry;
  /** The backend the lease asks for (`udp` when it names none, as flanneld writes it). */
  readonly backendType?: string;
  /** twill's `TwillBackends` list, when the lease carries one. */
  readonly twillBackends?: readonly string[];
  /** The backends this node terminates: `backendType`, then any other of `twillBackends`. */
  readonly terminates: readonly string[];
  readonly vtepMAC?: string;
  /**
   * The prefix length of the node's public IP on its underlay interface,
   * when the node reports it. No lease carries it (flanneld's format has no
   * such field), so it is undefined for now and `twill status` assumes a /24
   * when deciding whether two nodes share a link (host-gw; see topology.ts).
   */
  readonly publicPrefixLen?: number;
  readonly health?: Health;
}

/** Where the picture was read from. */
export type StatusStore =
  | {
    readonly kind: 'etcd';
    readonly prefix: string;
    readonly endpoints: readonly string[];
    /** The etcd revision the listing is consistent with. */
    readonly revision: bigint;
  }
  | {
    readonly kind: 'kube';
    /** The API server's URL. */
    readonly server: string;
    /** The Node list's resourceVersion. */
    readonly resourceVersion: string;
    /** Where the network config was read: `ConfigMap ns/name, key net-conf.json` or `file <path>`. */
    readonly netConf: string;
  };

export interface ClusterStatus {
  readonly store: StatusStore;
  readonly readAt: Date;
  readonly config: ConfigStatus;
  /** Sorted by subnet (entries whose key does not parse last, by key). */
  readonly rows: readonly LeaseRow[];
}

/** What `snapshot.ts` read from etcd (and from the nodes' health endpoints). */
export interface StatusInput {
  readonly prefix: string;
  readonly endpoints: readonly string[];
  readonly revision: bigint;
  readonly readAt: Date;
  readonly configKey: string;
  /** The config text, or undefined when the key does not exist. */
  readonly configText?: string;
  readonly kvs: readonly RawKV[];
  /** etcd lease id → its expiry. */
  readonly expiries: ReadonlyMap<string, Expiry>;
  /** key → health, when probed. */
  readonly health?: ReadonlyMap<string, Health>;
}

/**
 * Leases are checked against no network when the config is missing or
 * invalid: both families off means "no bounds" to `leaseFromRaw`.
 */
export const UNBOUNDED: NetworkConfig = {
  enableIPv4: false, enableIPv6: false, subnetLen: 0, ipv6SubnetLen: 0,
  backend: { type: 'udp', settings: {} }, warnings: [],
};

export function readConfig(key: string, text: string | undefined): ConfigStatus {
  if (text === undefined) return { state: 'missing', key };
  try {
    const config = parseNetworkConfig(text, KNOWN_BACKEND_TYPES);
    // The backend's own keys (VNI, Port, …) are part of the config's validity, as for twilld.
    try {
      backendFactory(config.backend.type).validate(config.backend);
    } catch (err) {
      if (!(err instanceof BackendUnavailableError)) throw err;
    }
    return { state: 'valid', key, config };
  } catch (err) {
    // A ConfigError, or a backend's own refusal of its settings: both name the field.
    if (err instanceof Error) return { state: 'invalid', key, error: err.message };
    throw err;
  }
}

export function buildClusterStatus(input: StatusInput): ClusterStatus {
  const config = readConfig(input.configKey, input.configText);
  const bounds = config.state === 'valid' ? config.config : UNBOUNDED;
  const { accepted, skipped } = filterLeases(input.kvs, bounds);
  const leases = new Map(accepted.map((l) => [l.key, l]));
  const reasons = new Map(skipped.map((s) => [s.raw.key, s.reason]));
  const rows = input.kvs.map((raw) => buildRow(raw, leases.get(raw.key), reasons.get(raw.key) ?? '', input));
  return {
    store: { kind: 'etcd', prefix: input.prefix, endpoints: input.endpoints, revision: input.revision },
    readAt: input.readAt,
    config,
    rows: sortBySubnet(rows),
  };
}

/** A row for `raw`: `lease` when the agents accept it, else `invalid` is why they skip it. */
function buildRow(raw: RawKV, lease: Lease | undefined, invalid: string, input: StatusInput): LeaseRow {
  const expiry: Expiry = raw.leaseId === undefined
    ? { kind: 'reservation' }
    : input.expiries.get(raw.leaseId) ?? { kind: 'unknown', error: 'not asked' };
  const health = input.health?.get(raw.key);
  const base = { key: raw.key, etcdLeaseId: raw.leaseId, expiry, health };
  if (lease) return { ...base, subnet: lease.subnet, ipv6Subnet: lease.ipv6Subnet, attrs: lease.attrs, lease, ...backendsOf(lease.attrs) };
  // Keep what can still be read, so the row says which node it is.
  const key = attempt(() => parseSubnetKey(raw.key));
  const attrs = attempt(() => decodeLeaseAttrs(raw.value));
  return {
    ...base,
    subnet: key?.subnet,
    ipv6Subnet: key?.ipv6Subnet,
    attrs,
    invalid,
    ...(attrs ? backendsOf(attrs) : { terminates: [] }),
  };
}

export function attempt<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

export function backendsOf(attrs: LeaseAttrs): Pick<LeaseRow, 'backendType' | 'twillBackends' | 'terminates' | 'vtepMAC'> {
  // flanneld's udp (and alloc) leases carry no BackendType: the rule of
  // backends/peers.ts `leaseBackendType`, which takes a whole Lease (invalid rows have none).
  const backendType = attrs.backendType ?? 'udp';
  // Instance keys, as the agents compare them (backends/instance.ts): `vxlan{VNI=2}` while a VNI migration runs.
  const twillBackends = attrs.backends?.map(advertKey);
  const terminates = terminatedBy(attrs);
  const vxlan = attrs.backendType === 'vxlan' ? { data: attrs.backendData, v6Data: attrs.backendV6Data } : attrs.backends?.find((b) => b.type === 'vxlan');
  // An IPv6-only node has only the IPv6 device's VTEP.
  const vxlanData = vxlan?.data ?? vxlan?.v6Data;
  return { backendType, twillBackends, terminates, vtepMAC: vtepMacOf(vxlanData) };
}

/** `VtepMAC` of a vxlan lease's BackendData (matched case-insensitively, as flanneld decodes it). */
function vtepMacOf(data: unknown): string | undefined {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return undefined;
  let mac: unknown;
  for (const [k, v] of Object.entries(data)) if (k.toLowerCase() === 'vtepmac') mac = v;
  return typeof mac === 'string' ? mac : undefined;
}

function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * By subnet address, then prefix length (IPv6-only leases by their IPv6
 * subnet, after the others); entries whose key does not parse last. Stable.
 */
export function sortBySubnet(rows: readonly LeaseRow[]): LeaseRow[] {
  const named = (r: LeaseRow) => (r.subnet && !carriesIPv4({ subnet: r.subnet }) && r.ipv6Subnet ? r.ipv6Subnet : r.subnet);
  return [...rows].sort((a, b) => {
    const x = named(a);
    const y = named(b);
    if (x && y) {
      return (x.family - y.family) || compareBigint(x.ip.value, y.ip.value) || x.prefixLen - y.prefixLen;
    }
    if (a.subnet) return -1;
    if (b.subnet) return 1;
    return 0;
  });
}

/** The label of a row: its IPv4 subnet (IPv6 for an IPv6-only lease), or its raw key when that does not parse. */
export function rowName(row: LeaseRow): string {
  return row.subnet ? leaseLabel({ subnet: row.subnet, ipv6Subnet: row.ipv6Subnet }) : row.key;
}
