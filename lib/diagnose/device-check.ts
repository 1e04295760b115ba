/**
 * A backend's own device as `twill diagnose` sees it: up, the pods' MTU,
 * and for vxlan the VNI, port and learning the config asks for, and the MAC
 * this node's lease publishes. (Its addresses are checked with the plan.)
 */
import type { NetworkConfig } from '../config';
import type { Lease } from '../subnet';
import type { LinkInfo } from '../netlink';
import type { BackendConfig } from '../config';
import { vxlanSettings } from '../../backends/vxlan/settings';
import { Findings, TWILLD_REPAIRS } from './findings';
import { podMtu } from './mtu';

export function checkDevice(link: LinkInfo, backend: BackendConfig, config: NetworkConfig, extMtu: number, own: Lease, out: Findings): void {
  const problems: string[] = [];
  const mtu = podMtu(backend.type, extMtu, config);
  if (!link.up) problems.push('it is down');
  if (link.mtu !== mtu) problems.push(`MTU ${link.mtu}, want ${mtu}`);
  if (backend.type !== 'vxlan') {
    for (const p of problems) out.fail('device', `${link.name}: ${p}`, TWILLD_REPAIRS);
    if (problems.length === 0) out.ok('device', `${link.name}: up, MTU ${link.mtu}${link.kind === 'tun' ? " (a TUN device of the userspace datapath)" : ''}`);
    return;
  }
  let s: ReturnType<typeof vxlanSettings>;
  try {
    s = vxlanSettings(backend);
  } catch {
    s = vxlanSettings({ type: 'vxlan', settings: {} }); // a bad setting is reported with the config
  }
  const v = link.vxlan;
  if (link.kind !== 'vxlan' || !v) {
    problems.push(`it is a ${link.kind ?? 'plain'} device, not vxlan`);
  } else {
    if (v.vni !== s.vni) problems.push(`VNI ${v.vni}, want ${s.vni}`);
    if (v.port !== s.port) problems.push(`UDP port ${v.port}, want ${s.port}`);
    if (v.learning !== s.learning) problems.push(`learning ${v.learning ? 'on' : 'off'}, want ${s.learning ? 'on' : 'off'}`);
  }
  // An IPv6-only node's one device is the IPv6 one, published as BackendV6Data.
  const published = ((config.enableIPv4 ? own.attrs.backendData : own.attrs.backendV6Data) as Partial<Record<string, unknown>> | undefined)?.VtepMAC;
  const macProblem = typeof published === 'string' && link.mac && published.toLowerCase() !== link.mac
    ? `MAC ${link.mac}, but this node's lease publishes VtepMAC ${published}: peers address the wrong VTEP`
    : undefined;
  for (const p of problems) out.fail('device', `${link.name}: ${p}`, TWILLD_REPAIRS);
  if (macProblem) out.fail('device', `${link.name}: ${macProblem}`, 'restart twilld: it republishes its lease with the device\'s MAC');
  if (problems.length === 0 && !macProblem) {
    out.ok('device', `${link.name}: vxlan VNI ${s.vni}, UDP port ${s.port}, up, MTU ${link.mtu}, MAC ${link.mac ?? '?'} as in the lease`);
  }
}
