import type { BackendFactory } from '../backend';
import { VxlanBackend } from './vxlan-backend';
import { vxlanSettings } from './settings';

export const vxlanBackend: BackendFactory = {
  type: 'vxlan',
  validate: (config) => void vxlanSettings(config),
  // Routes and the device MTU change in place; VNI, Port, GBP and Learning need a new device.
  liveKeys: ['DirectRouting', 'MTU'],
  create: (config, ctx) => new VxlanBackend(vxlanSettings(config), ctx.netlink, ctx.log),
};
