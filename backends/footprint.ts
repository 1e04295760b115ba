/**
 * Which backends have left state in this node's kernel: what a restarting
 * agent must keep running (peers may still send over it, e.g. when the
 * agent was stopped in the middle of a migration) until no peer needs it.
 * Each backend is recognised by its own objects only: its device, or
 * routes carrying its protocol number.
 */
import type { BackendConfig } from '../lib/config';
import type { Netlink } from '../lib/netlink';
import { BACKEND_ROUTE_PROTOCOL } from './route-protocols';
import { IPIP_DEVICE } from './ipip/constants';

const UDP_DEVICE = 'flannel0';
const VXLAN_DEVICE = /^flannel\.\d+$/;

export async function backendsInKernel(nl: Netlink): Promise<BackendConfig[]> {
  const [links, routes] = await Promise.all([nl.listLinks(), nl.listRoutes({ family: 4 })]);
  const protocols = new Set(routes.map((r) => r.protocol));
  const found: BackendConfig[] = [];
  const vxlan = links.find((l) => l.kind === 'vxlan' && VXLAN_DEVICE.test(l.name) && l.vxlan);
  if (vxlan?.vxlan) found.push({ type: 'vxlan', settings: { VNI: vxlan.vxlan.vni, Port: vxlan.vxlan.port } });
  else if (protocols.has(BACKEND_ROUTE_PROTOCOL.vxlan)) found.push({ type: 'vxlan', settings: {} });
  if (protocols.has(BACKEND_ROUTE_PROTOCOL['host-gw'])) found.push({ type: 'host-gw', settings: {} });
  const ipip = links.find((l) => l.name === IPIP_DEVICE);
  if (ipip) found.push({ type: 'ipip', settings: { Mode: ipip.kind === 'tun' ? 'userspace' : 'kernel' } });
  else if (protocols.has(BACKEND_ROUTE_PROTOCOL.ipip)) found.push({ type: 'ipip', settings: {} });
  if (links.some((l) => l.name === UDP_DEVICE) || protocols.has(BACKEND_ROUTE_PROTOCOL.udp)) found.push({ type: 'udp', settings: {} });
  return found;
}
