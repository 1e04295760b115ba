import { BackendConfig, setting } from '../../lib/config';
import { boolSetting, intSetting } from '../settings';

/** The vxlan keys of the network config's Backend object, with flanneld's defaults. */
export interface VxlanSettings {
  readonly vni: number;
  readonly port: number;
  readonly gbp: boolean;
  readonly learning: boolean;
  readonly directRouting: boolean;
  /** Device MTU; undefined means external MTU − 50. */
  readonly mtu?: number;
}

export const DEFAULT_VXLAN_PORT = 8472;

/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;
/** Outer IPv6 (40) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_V6_OVERHEAD = 70;

/**
 * The MTU of each of vxlan's devices on an external interface of `extMtu`
 * (Backend.MTU, when set, for both), and the pods': the smaller of the
 * devices this node runs, so that a full-size packet of either family fits
 * its underlay (flanneld writes the IPv4 device's).
 */
export function vxlanMtus(s: VxlanSettings, extMtu: number, ipv6: boolean, ipv4 = true): { readonly v4: number; readonly v6: number; readonly pod: number } {
  const v4 = s.mtu ?? extMtu - VXLAN_OVERHEAD;
  const v6 = s.mtu ?? extMtu - VXLAN_V6_OVERHEAD;
  return { v4, v6, pod: !ipv4 ? v6 : ipv6 ? Math.min(v4, v6) : v4 };
}

export function vxlanSettings(config: BackendConfig): VxlanSettings {
  const port = intSetting(config, 'Port', { min: 0, max: 65535, fallback: DEFAULT_VXLAN_PORT });
  // 0 or absent: external MTU − 50. Below 576 IPv4 cannot work at all.
  const mtu = setting(config.settings, 'MTU') === 0 ? 0 : intSetting(config, 'MTU', { min: 576, max: 65535, fallback: 0, alsoAllowed: '0 for the external MTU − 50' });
  return {
    vni: intSetting(config, 'VNI', { min: 0, max: 0xffffff, fallback: 1 }),
    port: port === 0 ? DEFAULT_VXLAN_PORT : port,
    gbp: boolSetting(config, 'GBP', false),
    learning: boolSetting(config, 'Learning', false),
    directRouting: boolSetting(config, 'DirectRouting', false),
    mtu: mtu === 0 ? undefined : mtu,
  };
}
