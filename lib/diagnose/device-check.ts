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
import { overlayMtus } from './mtu';

/** `family` 6: the backend's IPv6 device (vxlan's flannel-v6.<VNI>), whose MAC is published as BackendV6Data. */
export function checkDevice(link: LinkInfo, backend: BackendConfig, config: NetworkConfig, extMtu: number, own: Lease, out: Findings, family: 4 | 6 = 4): void {
  const problems: string[] = [];
  const mtus = overlayMtus(backend.type, extMtu, config, family === 6);
  const mtu = family === 6 ? mtus.v6 : mtus.v4;
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
  const field = family === 6 ? 'BackendV6Data' : 'BackendData';
  const published = ((family === 6 ? own.attrs.backendV6Data : own.attrs.backendData) as Partial<Record<string, unknown>> | undefined)?.VtepMAC;
  const macProblem = typeof published === 'string' && link.mac && published.toLowerCase() !== link.mac
    ? `MAC ${link.mac}, but this node's lease publishes ${field}.VtepMAC ${published}: peers address the wrong VTEP`
    : undefined;
  for (const p of problems) out.fail('device', `${link.name}: ${p}`, TWILLD_REPAIRS);
  if (macProblem) out.fail('device', `${link.name}: ${macProblem}`, 'restart twilld: it republishes its lease with the device\'s MAC');
  if (problems.length === 0 && !macProblem) {
    out.ok('device', `${link.name}: vxlan VNI ${s.vni}, UDP port ${s.port}${family === 6 ? ' over IPv6' : ''}, up, MTU ${link.mtu}, MAC ${link.mac ?? '?'} as in the lease`);
  }
}
