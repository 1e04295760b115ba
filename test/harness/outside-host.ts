/**
 * An "outside" host on the underlay: namespace tw<id>-n9 with eth0 at
 * 198.18.0.200 (and fd00:198:18::200 with `ipv6`), attached to the cluster
 * bridge, running no twilld. It stands in for a host beyond the cluster
 * network (--ip-masq) or a rogue host that holds no lease (tunnel guard).
 * Named like a node so the cluster's teardown removes it too.
 */
import type { TwillCluster } from './twill-cluster';
import { addNetns, ip as ipCmd } from './netns';
import { startCapture } from './capture';
import { ping } from './ping';

export interface OutsideHost {
  readonly ns: string;
  readonly ip: string;
  /** With `ipv6`: its address on the IPv6 underlay. */
  readonly ipv6?: string;
}

export async function addOutsideHost(tc: TwillCluster, opts: { ipv6?: boolean } = {}): Promise<OutsideHost> {
  const ns = `tw${tc.net.id}-n9`;
  const rootVeth = `tw${tc.net.id}n9`;
  const ip = '198.18.0.200';
  await addNetns(ns);
  await ipCmd(['link', 'add', rootVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await ipCmd(['link', 'set', rootVeth, 'master', tc.net.bridge, 'up']);
  await ipCmd(['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
  const ipv6 = opts.ipv6 ? 'fd00:198:18::200' : undefined;
  if (ipv6) await ipCmd(['-n', ns, '-6', 'addr', 'add', `${ipv6}/64`, 'dev', 'eth0', 'nodad']);
  await ipCmd(['-n', ns, 'link', 'set', 'eth0', 'up']);
  return { ns, ip, ...(ipv6 ? { ipv6 } : {}) };
}

/**
 * Node `node`'s pod pings the outside host over IPv6 (3 echo requests); how
 * many replies came back, and how many requests reached it from the node's
 * address (masqueraded) and from the pod's own. The outside host has no route
 * to the pods, so a reply means NAT.
 */
export async function ipv6EchoSources(tc: TwillCluster, outside: OutsideHost, node: number): Promise<{ received: number; fromNode: number; fromPod: number }> {
  // Echo requests only (ICMPv6 type 128), by source; the capture counts the non-IPv4 frames it keeps out.
  const requestsFrom = (src: string) => `icmp6 and ip6[40] == 128 and ip6 src ${src}`;
  const natted = await startCapture(outside.ns, 'eth0', requestsFrom(tc.net.nodeIpv6(node)));
  const raw = await startCapture(outside.ns, 'eth0', requestsFrom(tc.podIpv6(node)));
  const r = await ping(tc.podNs(node), outside.ipv6!, { count: 3, intervalMs: 100, timeoutMs: 5000 });
  await natted.stop();
  await raw.stop();
  return { received: r.received, fromNode: natted.skipped, fromPod: raw.skipped };
}
