import type { BackendFactory } from '../backend';
import { VxlanBackend } from './vxlan-backend';
import { vxlanSettings } from './settings';

export const vxlanBackend: BackendFactory = {
  type: 'vxlan',
  validate: (config) => void vxlanSettings(config),
  create: (config, ctx) => new VxlanBackend(vxlanSettings(config), ctx.netlink, ctx.log),
};
