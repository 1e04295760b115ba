/**
 * The route protocol number (`rtm_protocol`) of each backend's routes.
 * A backend owns exactly the routes carrying its number, so it never
 * deletes a route it did not make; and because a route replace changes the
 * protocol with the route, moving a peer from one backend to another hands
 * the route over atomically. 117–120 are unassigned in the kernel's and
 * iproute2's lists (125 too); `ip route` shows them as `proto 117` and so on.
 */
export const BACKEND_ROUTE_PROTOCOL = {
  vxlan: 117,
  'host-gw': 118,
  ipip: 119,
  udp: 120,
  // 121–124 are slot 1 of the types above (vxlan, udp) and kept free for it.
  wireguard: 125,
} as const;

/**
 * The second backend of one type, running beside the first while the
 * cluster migrates between two of its settings (a vxlan VNI or Port, a udp
 * Port), owns its routes by a number of its own: 121 for vxlan, 124 for udp.
 */
const SLOT_1_OFFSET = 4;

export function routeProtocol(type: keyof typeof BACKEND_ROUTE_PROTOCOL, slot: 0 | 1 = 0): number {
  return BACKEND_ROUTE_PROTOCOL[type] + (slot === 1 ? SLOT_1_OFFSET : 0);
}

/** Which backend type and slot own routes of `protocol`; undefined for a number twill does not use. */
export function ownerOfProtocol(protocol: number): { type: keyof typeof BACKEND_ROUTE_PROTOCOL; slot: 0 | 1 } | undefined {
  for (const [type, base] of Object.entries(BACKEND_ROUTE_PROTOCOL) as [keyof typeof BACKEND_ROUTE_PROTOCOL, number][]) {
    if (protocol === base) return { type, slot: 0 };
    if (protocol === base + SLOT_1_OFFSET && (type === 'vxlan' || type === 'udp')) return { type, slot: 1 };
  }
  return undefined;
}
