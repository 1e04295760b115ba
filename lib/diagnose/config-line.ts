/** How `twill diagnose` names the network config, in etcd and Kubernetes mode alike. */
import type { NetworkConfig } from '../config';

/** The network config in one line: each family's network and subnet size (IPv6 alone in an IPv6-only network), the backend and its settings. */
export function describeConfig(config: NetworkConfig): string {
  const backend = config.backend;
  const settings = Object.keys(backend.settings).filter((k) => k.toLowerCase() !== 'type');
  const families = [
    ...(config.enableIPv4 && config.network ? [`network ${config.network.toString()}, /${config.subnetLen} per node`] : []),
    ...(config.enableIPv6 && config.ipv6Network ? [`IPv6 network ${config.ipv6Network.toString()}, /${config.ipv6SubnetLen} per node`] : []),
  ];
  return `${families.join('; ')}, backend ${backend.type}` +
    (settings.length ? ` (${settings.map((k) => `${k}=${JSON.stringify(backend.settings[k])}`).join(', ')})` : '');
}
