import type { BackendFactory } from '../backend';
import { BgpBackend } from './bgp-backend';
import { bgpSettings } from './settings';

export { BgpBackend, BIRD_METRIC, RTPROT_BIRD, birdPeers, peerAsn } from './bgp-backend';
export { bgpSettings, DEFAULT_ASN } from './settings';

export const bgpBackend: BackendFactory = {
  type: 'bgp',
  validate: (config) => void bgpSettings(config),
  // All of them reach BIRD as a new config on the next reconcile (`configure`): sessions whose settings
  // changed restart, the others keep running.
  liveKeys: ['ASN', 'Mesh', 'Peers', 'Password', 'GracefulRestart', 'HoldTime'],
  create: (config, ctx) => new BgpBackend(bgpSettings(config), ctx),
};
