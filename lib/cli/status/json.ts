/**
 * `twill status --json`: one JSON document for scripts. Every lease has
 * every field (null when not known or not applicable), numbers where a
 * script would compare: `expirySeconds` (null for a reservation or when the
 * TTL could not be read), `reservation`, `valid`. Text from etcd is passed
 * through as it is (JSON escapes it); only the table sanitises it.
 *
 * `peers` lists, for a valid lease, every other valid lease with the
 * backend this node uses to reach it as its agent chooses it (null: they
 * share none, no traffic flows); see topology.ts for the rule and its one
 * assumption (host-gw only where both public IPs share a /24).
 *
 * Kubernetes mode: `kube: {server, resourceVersion, netConf}` stands where
 * `etcd` does, every lease is a Node (`node` is its name, `key` too), and the
 * etcd fields say nothing applies (`etcdLeaseId`, `expirySeconds` null,
 * `reservation` false).
 */
import { carriesIPv4 } from '../../subnet/lease';
import { rowName, type ClusterStatus, type ConfigStatus, type LeaseRow } from './model';
import { encrypts, peersOf } from './topology';

export interface StatusDocument {
  readonly readAt: string;
  /** Exactly one of `etcd` and `kube`: the store the picture was read from. */
  readonly etcd?: { readonly endpoints: readonly string[]; readonly prefix: string; readonly revision: number };
  readonly kube?: { readonly server: string; readonly resourceVersion: string; readonly netConf: string };
  readonly config: ConfigDocument;
  readonly leases: readonly LeaseDocument[];
}

export interface ConfigDocument {
  readonly key: string;
  readonly state: ConfigStatus['state'];
  readonly error: string | null;
  readonly network: string | null;
  readonly subnetLen: number | null;
  readonly subnetMin: string | null;
  readonly subnetMax: string | null;
  readonly ipv6Network: string | null;
  readonly ipv6SubnetLen: number | null;
  readonly ipv6SubnetMin: string | null;
  readonly ipv6SubnetMax: string | null;
  readonly backend: { readonly type: string; readonly settings: Readonly<Record<string, unknown>> } | null;
  readonly warnings: readonly string[];
}

export interface LeaseDocument {
  readonly key: string;
  /** Kubernetes mode: the Node's name; null in etcd mode. */
  readonly node: string | null;
  /** The IPv4 subnet; null for an IPv6-only lease (and a key that does not parse). */
  readonly subnet: string | null;
  readonly ipv6Subnet: string | null;
  readonly publicIP: string | null;
  readonly publicIPv6: string | null;
  /** What the lease asks for; `udp` when it names none (flanneld's udp and alloc leases). */
  readonly backendType: string | null;
  readonly twillBackends: readonly string[] | null;
  readonly vtepMAC: string | null;
  readonly etcdLeaseId: string | null;
  readonly reservation: boolean;
  readonly expirySeconds: number | null;
  readonly expiryError: string | null;
  readonly valid: boolean;
  readonly invalidReason: string | null;
  readonly health: { readonly state: string; readonly detail: string | null; readonly bgp?: readonly { readonly neighbor: string; readonly state: string }[] } | null;
  /** null for an invalid entry (no node talks to it). */
  readonly peers: readonly PeerDocument[] | null;
}

export interface PeerDocument {
  /** The peer's subnet (its key when that does not parse, which a valid lease never has). */
  readonly subnet: string;
  /** The backend carrying traffic to it; null when the two share none. */
  readonly backend: string | null;
  /** Traffic to it is encrypted on the wire (wireguard). */
  readonly encrypted: boolean;
}

export function toDocument(status: ClusterStatus): StatusDocument {
  return {
    readAt: status.readAt.toISOString(),
    ...storeDocument(status),
    config: configDocument(status.config),
    leases: status.rows.map((row) => leaseDocument(row, status)),
  };
}

function storeDocument(status: ClusterStatus): Pick<StatusDocument, 'etcd' | 'kube'> {
  const s = status.store;
  return s.kind === 'etcd'
    ? { etcd: { endpoints: s.endpoints, prefix: s.prefix, revision: Number(s.revision) } }
    : { kube: { server: s.server, resourceVersion: s.resourceVersion, netConf: s.netConf } };
}

function configDocument(config: ConfigStatus): ConfigDocument {
  const empty = {
    network: null, subnetLen: null, subnetMin: null, subnetMax: null,
    ipv6Network: null, ipv6SubnetLen: null, ipv6SubnetMin: null, ipv6SubnetMax: null,
    backend: null, warnings: [],
  };
  if (config.state === 'missing') return { key: config.key, state: config.state, error: null, ...empty };
  if (config.state === 'invalid') return { key: config.key, state: config.state, error: config.error, ...empty };
  const c = config.config;
  const v4 = c.enableIPv4 ? c.network : undefined;
  const v6 = c.enableIPv6 ? c.ipv6Network : undefined;
  return {
    key: config.key,
    state: config.state,
    error: null,
    network: v4?.toString() ?? null,
    subnetLen: v4 ? c.subnetLen : null,
    subnetMin: v4 ? c.subnetMin?.toString() ?? null : null,
    subnetMax: v4 ? c.subnetMax?.toString() ?? null : null,
    ipv6Network: v6?.toString() ?? null,
    ipv6SubnetLen: v6 ? c.ipv6SubnetLen : null,
    ipv6SubnetMin: v6 ? c.ipv6SubnetMin?.toString() ?? null : null,
    ipv6SubnetMax: v6 ? c.ipv6SubnetMax?.toString() ?? null : null,
    backend: { type: c.backend.type, settings: c.backend.settings },
    warnings: c.warnings,
  };
}

function leaseDocument(row: LeaseRow, status: ClusterStatus): LeaseDocument {
  const e = row.expiry;
  return {
    key: row.key,
    node: row.node ?? null,
    // null for an IPv6-only lease: its key's 0.0.0.0-0 is no subnet.
    subnet: row.subnet && carriesIPv4({ subnet: row.subnet }) ? row.subnet.toString() : null,
    ipv6Subnet: row.ipv6Subnet?.toString() ?? null,
    publicIP: row.attrs?.publicIP ?? null,
    publicIPv6: row.attrs?.publicIPv6 ?? null,
    backendType: row.backendType ?? null,
    twillBackends: row.twillBackends ?? null,
    vtepMAC: row.vtepMAC ?? null,
    etcdLeaseId: row.etcdLeaseId ?? null,
    reservation: e.kind === 'reservation',
    expirySeconds: e.kind === 'ttl' ? e.seconds : e.kind === 'expired' ? 0 : null,
    expiryError: e.kind === 'unknown' ? e.error : null,
    valid: row.invalid === undefined,
    invalidReason: row.invalid ?? null,
    health: row.health ? { state: row.health.state, detail: row.health.state === 'ready' ? null : row.health.detail, ...(row.health.bgp ? { bgp: row.health.bgp } : {}) } : null,
    peers: row.lease ? peersOf(row, status.rows, status.config).map((p) => ({ subnet: rowName(p.peer), backend: p.backend ?? null, encrypted: encrypts(p.backend) })) : null,
  };
}
