/**
 * The cluster as the Kubernetes API holds it, as `twill status` shows it in
 * Kubernetes mode: the network config (a net-conf.json file or ConfigMap
 * key) and one row per Node, in the shape model.ts gives etcd leases, so
 * that the table, JSON, HTML and VIA code is the same for both stores.
 *
 * `buildKubeClusterStatus` is pure. Which Nodes are peers is decided by the
 * agents' own rule (`filterNodes`: `nodeToLease`, first listed keeps a
 * shared podCIDR); a Node they skip becomes a row with `invalid` set to the
 * NodeSkip's reason, and with its podCIDR when that parses, so the operator
 * sees which Node is wrong and why. A Node's lease has no expiry (it lives
 * as long as the Node): rows carry `expiry: { kind: 'node' }` and the Node's
 * name instead.
 */
import type { FlannelAnnotations, KubeNode } from '../../kube';
import { filterNodes, nodeSubnets } from '../../subnet/kube-lease';
import {
  UNBOUNDED, attempt, backendsOf, readConfig, sortBySubnet,
  type ClusterStatus, type Health, type LeaseRow,
} from './model';

/** What kube-snapshot.ts read from the API server (and from the nodes' health endpoints). */
export interface KubeStatusInput {
  readonly server: string;
  readonly resourceVersion: string;
  readonly readAt: Date;
  /** Where the net-conf was read, for messages: `ConfigMap kube-system/twill-cfg, key net-conf.json` or `file <path>`. */
  readonly netConf: string;
  /** The net-conf text, or undefined when there is none (no file, no ConfigMap, or no such key). */
  readonly configText?: string;
  /** In the API server's order (by name), the order the agents decide podCIDR claims in. */
  readonly nodes: readonly KubeNode[];
  readonly names: FlannelAnnotations;
  /** Node name → health, when probed. */
  readonly health?: ReadonlyMap<string, Health>;
}

export function buildKubeClusterStatus(input: KubeStatusInput): ClusterStatus {
  const config = readConfig(input.netConf, input.configText);
  const bounds = config.state === 'valid' ? config.config : UNBOUNDED;
  const rows = filterNodes(input.nodes, input.names, bounds).map((v): LeaseRow => {
    const name = v.node.metadata.name;
    const base = { key: name, node: name, expiry: { kind: 'node' } as const, health: input.health?.get(name) };
    if (v.lease) {
      const lease = v.lease;
      return { ...base, subnet: lease.subnet, ipv6Subnet: lease.ipv6Subnet, attrs: lease.attrs, lease, ...backendsOf(lease.attrs) };
    }
    // Keep the podCIDR when it parses, so the row sits among its neighbours.
    const subnets = attempt(() => nodeSubnets(v.node));
    return { ...base, subnet: subnets?.subnet, ipv6Subnet: subnets?.ipv6Subnet, invalid: v.skip.reason, terminates: [] };
  });
  return {
    store: { kind: 'kube', server: input.server, resourceVersion: input.resourceVersion, netConf: input.netConf },
    readAt: input.readAt,
    config,
    rows: sortBySubnet(rows),
  };
}
