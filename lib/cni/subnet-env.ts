/**
 * Reading twilld's subnet.env (DESIGN §4) from the plugin's side. twilld
 * writes it atomically once it holds a lease, so a missing file means "the
 * agent is not ready on this node yet": error 11, which tells the runtime
 * to retry the ADD later. A file that exists but lacks a variable or holds
 * a bad value is not transient; it is reported as such, naming the file,
 * the variable and the value.
 */
import { promises as fs } from 'fs';
import { parseCidr, type Cidr } from './cidr';
import { CniError, ERR } from './errors';

export interface SubnetEnv {
  /** FLANNEL_NETWORK: the cluster's pod networks (flannel allows a comma list). */
  readonly networks: readonly string[];
  /** FLANNEL_SUBNET as a network ("10.244.1.0/24"); the file holds its first address. */
  readonly subnet?: string;
  /** The subnet's first address ("10.244.1.1"): host-local's gateway, cni0's address. */
  readonly gateway?: string;
  readonly ipv6Networks: readonly string[];
  readonly ipv6Subnet?: string;
  readonly ipv6Gateway?: string;
  readonly mtu: number;
  /** FLANNEL_IPMASQ: twilld masquerades pod traffic leaving the pod network itself. */
  readonly ipMasq: boolean;
}

export async function readSubnetEnv(file: string): Promise<SubnetEnv> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new CniError(
        ERR.TRY_AGAIN_LATER,
        `twilld is not ready on this node: ${file} does not exist yet`,
        'twilld writes the subnet file once it holds a subnet lease; check that twilld runs on this node and can reach etcd (its log says why not)',
      );
    }
    throw new CniError(ERR.INTERNAL, `cannot read the subnet file ${file}: ${code ?? String(err)}`);
  }
  // The same line syntax as lib/subnet/subnet-file.ts parseEnv, not imported: the
  // plugin is installed as dist/lib/cni alone (manifests/kubernetes/twill.yaml,
  // install-cni), without lib/subnet and its ip-address dependency.
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*?)\s*$/.exec(line);
    if (m) vars.set(m[1], m[2]);
  }
  const bad = (name: string, what: string): CniError =>
    new CniError(ERR.INTERNAL, `${file}: ${name}=${JSON.stringify(vars.get(name))} is not ${what}`, 'twilld rewrites this file on start; restart twilld on this node');

  const cidrs = (name: string, family: 4 | 6): Cidr[] => {
    const v = vars.get(name);
    if (v === undefined || v === '') return [];
    return v.split(',').map((part) => {
      const c = parseCidr(part);
      if (!c || c.family !== family) throw bad(name, `an IPv${family} CIDR list`);
      return c;
    });
  };
  const networks = cidrs('FLANNEL_NETWORK', 4).map((c) => c.network);
  const ipv6Networks = cidrs('FLANNEL_IPV6_NETWORK', 6).map((c) => c.network);
  const subnets = cidrs('FLANNEL_SUBNET', 4);
  const ipv6Subnets = cidrs('FLANNEL_IPV6_SUBNET', 6);
  if (subnets.length > 1) throw bad('FLANNEL_SUBNET', 'one IPv4 CIDR');
  if (ipv6Subnets.length > 1) throw bad('FLANNEL_IPV6_SUBNET', 'one IPv6 CIDR');

  const missing: string[] = [];
  if (!networks.length && !ipv6Networks.length) missing.push('FLANNEL_NETWORK or FLANNEL_IPV6_NETWORK');
  if (!subnets.length && !ipv6Subnets.length) missing.push('FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET');
  if (!vars.has('FLANNEL_MTU')) missing.push('FLANNEL_MTU');
  if (!vars.has('FLANNEL_IPMASQ')) missing.push('FLANNEL_IPMASQ');
  if (missing.length) {
    throw new CniError(ERR.INTERNAL, `${file} lacks ${missing.join(', ')}`, 'twilld rewrites this file on start; restart twilld on this node');
  }
  const mtuText = vars.get('FLANNEL_MTU')!;
  const mtu = Number(mtuText);
  if (!/^\d+$/.test(mtuText) || mtu < 68 || mtu > 65535) throw bad('FLANNEL_MTU', 'an MTU (68..65535)');
  const masq = vars.get('FLANNEL_IPMASQ')!;
  if (masq !== 'true' && masq !== 'false') throw bad('FLANNEL_IPMASQ', 'true or false');

  return {
    networks,
    subnet: subnets[0]?.network,
    gateway: subnets[0]?.firstHost,
    ipv6Networks,
    ipv6Subnet: ipv6Subnets[0]?.network,
    ipv6Gateway: ipv6Subnets[0]?.firstHost,
    mtu,
    ipMasq: masq === 'true',
  };
}
