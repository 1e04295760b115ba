import type { BackendFactory, Identity } from '../backend';
import { WireguardBackend } from './wireguard-backend';
import { DEFAULT_LISTEN_PORT, wireguardSettings } from './settings';

export { WIREGUARD_DEVICE, WIREGUARD_V6_DEVICE, WireguardBackend, portOfWireguardAlias } from './wireguard-backend';
export { peerPublicKey } from './keys';
export { socketPathFor } from './engine';

export const wireguardBackend: BackendFactory = {
  type: 'wireguard',
  validate: (config) => void wireguardSettings(config),
  // The PSK and the keepalive reach wireguard-go on the next reconcile; the port is the identity.
  liveKeys: ['PSK', 'PersistentKeepaliveInterval', 'Mode', 'ListenPortV6'],
  // Peers send to PublicIP:ListenPort, so two nodes must agree on it.
  identity: (config): Identity => {
    const port = wireguardSettings(config).listenPort;
    return port !== DEFAULT_LISTEN_PORT ? { ListenPort: port } : {};
  },
  conflict: (a, b) => {
    if (a.type !== 'wireguard' || b.type !== 'wireguard') return undefined;
    const x = wireguardSettings(a).listenPort;
    const y = wireguardSettings(b).listenPort;
    return x === y ? undefined : `wireguard ListenPort ${x} and ${y} cannot run side by side (one device, flannel-wg, per node); migrate through another backend (e.g. vxlan) to change it`;
  },
  create: (config, ctx) => new WireguardBackend(wireguardSettings(config), ctx),
};
