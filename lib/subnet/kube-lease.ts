/**
 * A Kubernetes Node as a lease, and a lease's attributes as Node
 * annotations, with flanneld's annotation names and value shapes
 * (docs/flanneld-kube-mode.md): the subnet is the Node's podCIDR, the
 * attributes are annotations, and `backend-data` is the backend's data as
 * JSON text. twill's TwillBackends list goes into an annotation of its own,
 * which flanneld ignores.
 *
 * Reading another Node goes through lib/subnet's lease decoding
 * (decodeLeaseAttrs), so a Node's annotations are held to the rules an
 * etcd lease value is held to. Anything that cannot be a peer is a
 * NodeSkip with the reason, never an exception of another kind: a Node is
 * data written by others (flanneld v0.20.2 panics on a Node with no
 * annotations at all).
 */
import type { NetworkConfig } from '../config';
import type { FlannelAnnotations, KubeNode } from '../kube';
import { IPNet, InvalidAddressError } from '../ip';
import type { Lease, LeaseAttrs } from './lease';
import { decodeLeaseAttrs, encodeLeaseAttrs, formatSubnetKey, LeaseFormatError } from './lease-codec';

/** Why a Node is not a peer; the watcher warns with it once per Node and reason. */
export class NodeSkip extends Error {
  constructor(readonly node: string, readonly reason: string) {
    super(`skipping Node ${JSON.stringify(node.slice(0, 80))}: ${reason}`);
    this.name = 'NodeSkip';
  }
}

/** The Node's IPv4 and IPv6 pod subnets, as flanneld's AcquireLease and nodeToLease read them. */
export function nodeSubnets(node: KubeNode): { subnet?: IPNet; ipv6Subnet?: IPNet } {
  const name = node.metadata.name;
  const cidrs = node.spec.podCIDRs && node.spec.podCIDRs.length > 0 ? node.spec.podCIDRs : node.spec.podCIDR ? [node.spec.podCIDR] : [];
  if (cidrs.length > 2) throw new NodeSkip(name, `it has ${cidrs.length} podCIDRs; pod cidrs should be IPv4/IPv6 only or dualstack`);
  const out: { subnet?: IPNet; ipv6Subnet?: IPNet } = {};
  for (const text of cidrs) {
    let net: IPNet;
    try {
      net = IPNet.parse(text);
    } catch (err) {
      const why = err instanceof InvalidAddressError || err instanceof RangeError ? err.message : String(err);
      throw new NodeSkip(name, `its podCIDR ${JSON.stringify(text.slice(0, 64))} is not a CIDR (${why})`);
    }
    if (net.ip.family === 4) out.subnet = net;
    else out.ipv6Subnet = net;
  }
  return out;
}

/**
 * This node's own podCIDR lies outside the configured Network. Not a setup
 * error: twilld says so once and retries (flanneld exits), taking the Node
 * again each time, so a Node registered anew with another podCIDR is taken
 * without a restart; a corrected Network, as any Network change, needs one.
 */
export class PodCidrOutsideNetworkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PodCidrOutsideNetworkError';
  }
}

/** A podCIDR outside the configured Network, in flanneld's words. */
export function outsideNetworkMessage(node: string, config: NetworkConfig, subnet: IPNet): string {
  return `subnet "${config.network?.toString()}" specified in the flannel net config doesn't contain "${subnet.toString()}" PodCIDR of the "${node}" node`;
}

/** The lease a Node stands for, or a NodeSkip saying why it is not a peer. */
export function nodeToLease(node: KubeNode, names: FlannelAnnotations, config: NetworkConfig): Lease {
  const name = node.metadata.name;
  const a = node.metadata.annotations;
  if (Object.keys(a).length === 0) throw new NodeSkip(name, 'it has no annotations (no flannel-compatible agent has run on it yet)');
  if (a[names.subnetKubeManaged] !== 'true') {
    throw new NodeSkip(name, `its annotation ${names.subnetKubeManaged} is not "true" (no flannel-compatible agent has run on it yet)`);
  }
  const { subnet, ipv6Subnet } = nodeSubnets(node);
  if (!subnet) throw new NodeSkip(name, 'it has no IPv4 podCIDR');
  if (config.network && !config.network.covers(subnet)) throw new NodeSkip(name, outsideNetworkMessage(name, config, subnet));
  if (!a[names.publicIP]) throw new NodeSkip(name, `it has no annotation ${names.publicIP}`);
  const v6 = ipv6Subnet && config.enableIPv6 && config.ipv6Network?.covers(ipv6Subnet) ? ipv6Subnet : undefined;
  const value: Record<string, unknown> = {
    PublicIP: a[names.publicIP],
    PublicIPv6: a[names.publicIPv6] || null,
    BackendType: a[names.backendType],
    BackendData: annotationJson(name, names.backendData, a[names.backendData]),
    BackendV6Data: annotationJson(name, names.backendV6Data, a[names.backendV6Data]),
    TwillBackends: annotationJson(name, names.twillBackends, a[names.twillBackends]),
  };
  let attrs: LeaseAttrs;
  try {
    attrs = decodeLeaseAttrs(JSON.stringify(value));
  } catch (err) {
    if (!(err instanceof LeaseFormatError)) throw err;
    throw new NodeSkip(name, err.message.replace(/^lease /, 'its annotations: '));
  }
  return {
    key: formatSubnetKey({ subnet, ipv6Subnet: v6 }),
    subnet,
    ...(v6 ? { ipv6Subnet: v6 } : {}),
    attrs,
    modRevision: /^\d{1,19}$/.test(node.metadata.resourceVersion) ? BigInt(node.metadata.resourceVersion) : 0n,
  };
}

/** A Node of one listing, with the lease it stands for or why it is not a peer. */
export type NodeVerdict =
  | { readonly node: KubeNode; readonly lease: Lease; readonly skip?: undefined }
  | { readonly node: KubeNode; readonly lease?: undefined; readonly skip: NodeSkip };

/**
 * Which Nodes of one listing the agents take as peers, in the listing's
 * order: `nodeToLease`, and of two Nodes with the same podCIDR the first
 * listed keeps it, as KubeLeaseWatcher decides when it applies a fresh list
 * (the API server lists by name). Pure; for `twill status` and `twill diagnose`.
 */
export function filterNodes(nodes: readonly KubeNode[], names: FlannelAnnotations, config: NetworkConfig): NodeVerdict[] {
  const owners = new Map<string, string>();
  return nodes.map((node): NodeVerdict => {
    const name = node.metadata.name;
    try {
      const lease = nodeToLease(node, names, config);
      const owner = owners.get(lease.key);
      if (owner !== undefined) throw new NodeSkip(name, `its podCIDR ${lease.subnet.toString()} is Node ${JSON.stringify(owner)}'s too`);
      owners.set(lease.key, name);
      return { node, lease };
    } catch (err) {
      return { node, skip: err instanceof NodeSkip ? err : new NodeSkip(name, (err as Error).message) };
    }
  });
}

function annotationJson(node: string, key: string, text: string | undefined): unknown {
  if (text === undefined || text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    const why = (err as Error).message.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?').slice(0, 120);
    throw new NodeSkip(node, `its annotation ${key} is not JSON (${why}): ${JSON.stringify(text.slice(0, 80))}`);
  }
}

/**
 * The annotations this node writes for `attrs`, as flanneld writes them:
 * backend-type and kube-subnet-manager always; backend-data and public-ip
 * unless the type is vxlan (or wireguard) with no data; public-ip from the
 * operator's public-ip-overwrite when that is set. twill-backends is set,
 * or removed (null) when the node advertises no list.
 */
export function leaseAnnotations(attrs: LeaseAttrs, names: FlannelAnnotations, current: Readonly<Record<string, string>>): Record<string, string | null> {
  const out: Record<string, string | null> = { [names.backendType]: attrs.backendType ?? '' };
  const noData = attrs.backendData === undefined || attrs.backendData === null;
  if (!((attrs.backendType === 'vxlan' || attrs.backendType === 'wireguard') && noData)) {
    out[names.backendData] = JSON.stringify(noData ? null : attrs.backendData);
    out[names.publicIP] = current[names.publicIPOverwrite] || attrs.publicIP;
  }
  if (attrs.publicIPv6) {
    out[names.publicIPv6] = current[names.publicIPv6Overwrite] || attrs.publicIPv6;
    if (attrs.backendV6Data !== undefined && attrs.backendV6Data !== null) out[names.backendV6Data] = JSON.stringify(attrs.backendV6Data);
  }
  out[names.subnetKubeManaged] = 'true';
  // The etcd lease's own encoding of the list, so both stores carry the same text.
  const { TwillBackends: list } = JSON.parse(encodeLeaseAttrs(attrs)) as { TwillBackends?: unknown };
  out[names.twillBackends] = list === undefined ? null : JSON.stringify(list);
  return out;
}

/** The entries of `desired` that differ from `current` (a null only where the key is present): what a two-way merge patch holds. */
export function annotationDiff(desired: Readonly<Record<string, string | null>>, current: Readonly<Record<string, string>>): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(desired)) {
    if (v === null ? k in current : current[k] !== v) out[k] = v;
  }
  return out;
}
