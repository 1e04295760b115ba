/**
 * One consistent look at the cluster: the leases (one etcd range, whose
 * revision a watch can start from), then the config, then the time left on
 * each etcd lease, then — when asked — each node's readiness.
 *
 * Failure: the etcd part is bounded by `deadlineMs` (default 3.5 s) as a
 * whole; past it, or when etcd refuses, `readSnapshot` rejects with an
 * `EtcdAccessError` whose message names the endpoints, and the caller must
 * close the client (calls still in flight end with it). etcd3 takes up to
 * 1 s more to drop a connection still being made, and node a moment to
 * start: hence 3.5 s, for a command that gives up within about 5 s. A TTL
 * that cannot be read is shown as unknown rather than failing the whole look.
 */
import { describeEtcdError, type EtcdRegistry } from '../../subnet/etcd';
import { DEFAULT_DEADLINE_MS, withDeadline } from '../etcd-deadline';
import { buildClusterStatus, type ClusterStatus, type Expiry, type StatusInput } from './model';
import { probeReadiness } from './health';
import { typeOfKey } from '../../../backends/instance';
import { NO_PUBLIC_IP, underlayAddress } from '../../subnet/lease';

export interface SnapshotOptions {
  readonly prefix: string;
  readonly endpoints: readonly string[];
  /** Probe `http://<PublicIP>:<port>/readyz` of every valid lease. */
  readonly healthPort?: number;
  readonly deadlineMs?: number;
}

export { DEFAULT_DEADLINE_MS } from '../etcd-deadline';

export async function readSnapshot(registry: EtcdRegistry, opts: SnapshotOptions): Promise<ClusterStatus> {
  const fromEtcd = await withDeadline(readEtcd(registry, opts), opts.deadlineMs ?? DEFAULT_DEADLINE_MS, opts.endpoints);
  if (opts.healthPort === undefined) return buildClusterStatus(fromEtcd);
  // Only leases a node would accept are asked: the others are not peers.
  const targets = buildClusterStatus(fromEtcd).rows.flatMap((r) => (r.lease ? [{ key: r.key, publicIP: underlayAddress(r.lease.attrs) ?? NO_PUBLIC_IP, bgp: r.terminates.some((k) => typeOfKey(k) === 'bgp') }] : []));
  return buildClusterStatus({ ...fromEtcd, health: await probeReadiness(targets, opts.healthPort) });
}

async function readEtcd(registry: EtcdRegistry, opts: SnapshotOptions): Promise<StatusInput> {
  // Leases first: the config read after them is at least as new, so a watch
  // from the listing's revision misses no config change either.
  const listing = await registry.listLeases();
  const config = await registry.getConfig();
  const ids = [...new Set(listing.kvs.flatMap((kv) => (kv.leaseId === undefined ? [] : [kv.leaseId])))];
  const expiries = new Map<string, Expiry>(await Promise.all(ids.map(async (id): Promise<[string, Expiry]> => {
    try {
      const seconds = await registry.timeToLive(id);
      return [id, seconds < 0 ? { kind: 'expired' } : { kind: 'ttl', seconds }];
    } catch (err) {
      return [id, { kind: 'unknown', error: describeEtcdError(err, { endpoints: opts.endpoints }) }];
    }
  })));
  return {
    prefix: opts.prefix,
    endpoints: opts.endpoints,
    revision: listing.revision,
    readAt: new Date(),
    configKey: registry.configKey,
    configText: config?.text,
    kvs: listing.kvs,
    expiries,
  };
}
