/**
 * The pod MTU: what each backend would give on this external interface
 * (DESIGN §4: vxlan ext − 50 or its Backend.MTU, ipip ext − 20, udp
 * ext − 28, host-gw and alloc ext) and whether subnet.env — what CNI hands
 * to pods — agrees with the running backend and the node's lease.
 */
import { carriesIPv4 } from '../subnet/lease';
import { promises as fs } from 'fs';
import type { NetworkConfig } from '../config';
import type { ExternalInterface } from '../iface';
import { Lease, parseEnv } from '../subnet';
import { vxlanMtus, vxlanSettings } from '../../backends/vxlan/settings';
import { Findings } from './findings';

const TOPIC = 'mtu';

/** Encapsulation overhead of each backend, bytes per packet. */
export const BACKEND_OVERHEAD: Readonly<Record<string, number>> = { vxlan: 50, ipip: 20, udp: 28, wireguard: 80, 'host-gw': 0, bgp: 0, alloc: 0 };

/**
 * The pod MTU `backend` gives on an external interface of MTU `extMtu` (the
 * vxlan Backend.MTU setting wins); `ipv6`: the node carries IPv6 too, which
 * vxlan sends over the IPv6 underlay with more overhead.
 */
export function podMtu(backend: string, extMtu: number, config?: NetworkConfig, ipv6 = false): number {
  return overlayMtus(backend, extMtu, config, ipv6).pod;
}

/** The MTU of the backend's device for each underlay family, and the pods'. */
export function overlayMtus(backend: string, extMtu: number, config?: NetworkConfig, ipv6 = false): { readonly v4: number; readonly v6: number; readonly pod: number } {
  if (backend === 'vxlan') {
    let settings = vxlanSettings({ type: 'vxlan', settings: {} });
    try {
      if (config?.backend.type === 'vxlan') settings = vxlanSettings(config.backend);
    } catch {
      // a bad setting is reported with the config; the default applies
    }
    return vxlanMtus(settings, extMtu, ipv6, config?.enableIPv4 ?? true);
  }
  const mtu = extMtu - (BACKEND_OVERHEAD[backend] ?? 0);
  return { v4: mtu, v6: mtu, pod: mtu };
}

/** This node carries IPv6: its lease holds an IPv6 subnet and publishes an IPv6 address. */
export function carriesIPv6(own: Lease | undefined): boolean {
  return own?.ipv6Subnet !== undefined && !!own.attrs.publicIPv6;
}

export interface MtuCheck {
  readonly ext: ExternalInterface;
  /** The backend this node runs (its lease's), else the config's; undefined when the cluster (etcd, the Kubernetes API) could not be read. */
  readonly backend?: string;
  readonly config?: NetworkConfig;
  readonly own?: Lease;
  readonly subnetFile: string;
}

const SHOWN_BACKENDS = ['vxlan', 'ipip', 'udp', 'host-gw'];

export async function checkMtu(c: MtuCheck, out: Findings): Promise<void> {
  if (c.backend === undefined) {
    const all = SHOWN_BACKENDS.map((b) => `${b} ${podMtu(b, c.ext.mtu)}`).join(', ');
    out.ok(TOPIC, `backend unknown (the cluster could not be read); on ${c.ext.name} (MTU ${c.ext.mtu}) the pod MTU would be ${all}`);
    return;
  }
  const ipv6 = carriesIPv6(c.own);
  const want = podMtu(c.backend, c.ext.mtu, c.config, ipv6);
  const others = SHOWN_BACKENDS.filter((b) => b !== c.backend).map((b) => `${b} ${podMtu(b, c.ext.mtu)}`);
  const overhead = c.ext.mtu - podMtu(c.backend, c.ext.mtu, undefined, ipv6);
  const how = want === c.ext.mtu - overhead
    ? `${c.ext.name} MTU ${c.ext.mtu}${overhead ? ` − ${overhead}` : ''}${ipv6 && c.backend === 'vxlan' ? ', VXLAN over IPv6' : ''}`
    : 'Backend.MTU in the network config';
  out.ok(TOPIC, `backend ${c.backend}: pod MTU ${want} (${how}); on ${c.ext.name} the other backends would give ${others.join(', ')}`);
  if (want < 576) {
    out.fail(TOPIC, `pod MTU ${want} is below IPv4's minimum of 576`, `raise the MTU of ${c.ext.name} or choose a backend with less overhead`);
  }
  await checkSubnetFile(c, c.backend, want, out);
}

async function checkSubnetFile(c: MtuCheck, backend: string, want: number, out: Findings): Promise<void> {
  let text: string;
  try {
    text = await fs.readFile(c.subnetFile, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    out.fail(TOPIC, `cannot read subnet.env ${c.subnetFile} (${code}); CNI cannot configure pods without it`,
      `${code === 'ENOENT' ? 'twilld writes it once it holds a lease: ' : ''}is twilld running with --subnet-file ${c.subnetFile}? check \`journalctl -u twilld\`; pass --subnet-file here if it writes elsewhere`);
    return;
  }
  const vars = parseEnv(text);
  const mtuText = vars.get('FLANNEL_MTU');
  const mtu = mtuText !== undefined && /^\d+$/.test(mtuText) ? Number(mtuText) : undefined;
  if (mtu === undefined) {
    out.fail(TOPIC, `${c.subnetFile} has no valid FLANNEL_MTU (${JSON.stringify(mtuText ?? null)})`, 'restart twilld so that it rewrites the file');
  } else if (mtu !== want) {
    const dir = mtu > want ? 'larger' : 'smaller';
    out.fail(TOPIC, `${c.subnetFile} gives pods FLANNEL_MTU=${mtu}, ${dir} than the ${want} that ${backend} allows on ${c.ext.name}`,
      `restart twilld so that it rewrites ${c.subnetFile}, then recreate pods started meanwhile (${mtu > want ? 'their large packets are dropped' : 'they waste capacity'})`);
  } else {
    out.ok(TOPIC, `${c.subnetFile} agrees: FLANNEL_MTU=${mtu}`);
  }

  const subnet = vars.get('FLANNEL_SUBNET');
  if (c.own && carriesIPv4(c.own) && subnet !== undefined) {
    const expected = `${c.own.subnet.ip.add(1).toString()}/${c.own.subnet.prefixLen}`;
    if (subnet !== expected) {
      out.fail(TOPIC, `${c.subnetFile} says FLANNEL_SUBNET=${subnet}, but this node's lease is ${c.own.subnet.toString()} (want ${expected})`,
        'restart twilld so that it rewrites the file; pods addressed from the old subnet must be recreated');
    }
  }
  const network = vars.get('FLANNEL_NETWORK');
  if (c.config?.network && network !== undefined && network !== c.config.network.toString()) {
    out.fail(TOPIC, `${c.subnetFile} says FLANNEL_NETWORK=${network}, but the network config says ${c.config.network.toString()}`,
      'restart twilld so that it rewrites the file');
  }
}
