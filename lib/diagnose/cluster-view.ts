/**
 * The cluster as etcd holds it: the network config and every lease, read
 * once (no watch). Everything that goes wrong becomes a finding — etcd out
 * of reach or refusing us (FAIL), no or a bad config (FAIL), a lease value
 * no agent can use (WARN, twilld skips it too) — and the view is undefined
 * when there is nothing to diagnose the leases against.
 */
import { describeNetworks } from './mtu';
import type { Etcd3 } from 'etcd3';
import { NetworkConfig, parseNetworkConfig } from '../config';
import { Lease, RawKV, filterLeases } from '../subnet';
import { EtcdRegistry, describeEtcdError } from '../subnet/etcd';
import { KNOWN_BACKEND_TYPES, backendFactory, BackendUnavailableError } from '../../backends';
import { Findings } from './findings';

export interface ClusterView {
  readonly config: NetworkConfig;
  readonly leases: readonly Lease[];
  /** Kubernetes mode: lease key → the Node it is (etcd leases have no Node). */
  readonly nodeOf?: ReadonlyMap<string, string>;
}

export async function readClusterView(client: Etcd3, prefix: string, endpoints: readonly string[], out: Findings): Promise<ClusterView | undefined> {
  const registry = new EtcdRegistry(client, prefix);
  let configText: string | undefined;
  let raws: RawKV[];
  try {
    configText = (await registry.getConfig())?.text;
    raws = (await registry.listLeases()).kvs;
  } catch (err) {
    out.fail('etcd', `cannot read ${prefix} from ${endpoints.join(', ')}: ${describeEtcdError(err, { endpoints })}`,
      'give the same --etcd-endpoints, --etcd-prefix and TLS/user flags as twilld (or its FLANNELD_* variables); check etcd with `etcdctl endpoint health`');
    return undefined;
  }
  if (configText === undefined) {
    out.fail('config', `there is no network config at ${registry.configKey}`,
      `write one: etcdctl put ${registry.configKey} '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}' (or pass the --etcd-prefix twilld uses)`);
    return undefined;
  }
  let config: NetworkConfig;
  try {
    config = parseNetworkConfig(configText, KNOWN_BACKEND_TYPES);
    backendFactory(config.backend.type).validate(config.backend);
  } catch (err) {
    const unavailable = err instanceof BackendUnavailableError;
    out.fail('config', `the network config at ${registry.configKey} cannot be used: ${(err as Error).message}`,
      unavailable ? 'choose a backend this build has' : `fix it with etcdctl put ${registry.configKey} '…'; twilld keeps running the last good config meanwhile`);
    return undefined;
  }
  const backend = config.backend;
  const settings = Object.keys(backend.settings).filter((k) => k.toLowerCase() !== 'type');
  out.ok('config', `${describeNetworks(config)}, backend ${backend.type}` +
    (settings.length ? ` (${settings.map((k) => `${k}=${JSON.stringify(backend.settings[k])}`).join(', ')})` : ''));
  for (const w of config.warnings) out.warn('config', w, `remove or correct it in ${registry.configKey}`);

  const { accepted, skipped } = filterLeases(raws, config);
  for (const { raw, reason } of skipped) {
    out.warn('lease', `lease ${raw.key} cannot be used: ${reason}; every agent skips it`,
      `fix or delete it: etcdctl del ${registry.subnetsPrefix}${raw.key} (its node's twilld then writes a new one)`);
  }
  return { config, leases: accepted };
}
