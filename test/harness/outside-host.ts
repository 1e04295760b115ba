/**
 * An "outside" host on the underlay: namespace tw<id>-n9 with eth0 at
 * 198.18.0.200 (and fd00:198:18::200 with `ipv6`), attached to the cluster
 * bridge, running no twilld. It stands in for a host beyond the cluster
 * network (--ip-masq) or a rogue host that holds no lease (tunnel guard).
 * Named like a node so the cluster's teardown removes it too.
 */
import type { TwillCluster } from './twill-cluster';
import { addNetns, ip as ipCmd } from './netns';

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
