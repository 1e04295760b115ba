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
