import type { BackendConfig } from '../../lib/config';
import type { BackendFactory, Identity } from '../backend';
import { VxlanBackend } from './vxlan-backend';
import { DEFAULT_VXLAN_PORT, vxlanSettings } from './settings';

/** VNI, Port and GBP must match between two VTEPs; each is named only when it is not flanneld's default. */
function identity(config: BackendConfig): Identity {
  const s = vxlanSettings(config);
  return { ...(s.vni !== 1 ? { VNI: s.vni } : {}), ...(s.port !== DEFAULT_VXLAN_PORT ? { Port: s.port } : {}), ...(s.gbp ? { GBP: true } : {}) };
}

export const vxlanBackend: BackendFactory = {
  type: 'vxlan',
  validate: (config) => void vxlanSettings(config),
  // Routes and the device MTU change in place; Learning is changed on the device. VNI, Port and GBP are the
  // backend's identity: a change of them runs a second vxlan backend beside the first (a migration).
  liveKeys: ['DirectRouting', 'MTU', 'Learning'],
  identity,
  revealed: {
    keys: ['VNI'],
    read: (data): Identity => {
      const vni = data !== null && typeof data === 'object' ? (data as Record<string, unknown>).VNI : undefined;
      return typeof vni === 'number' && Number.isInteger(vni) && vni !== 1 ? { VNI: vni } : {};
    },
  },
  conflict: (a, b) => {
    const x = vxlanSettings(a);
    const y = vxlanSettings(b);
    if (x.vni !== y.vni || x.port !== y.port) return undefined;
    return `vxlan VNI ${x.vni} on port ${x.port} cannot run with GBP ${x.gbp ? 'on' : 'off'} and ${y.gbp ? 'on' : 'off'} at once ` +
      '(the kernel keeps one socket per port and GBP setting); change Backend.Port or Backend.VNI together with Backend.GBP';
  },
  create: (config, ctx) => new VxlanBackend(vxlanSettings(config), ctx.netlink, ctx.log, ctx.slot),
};
