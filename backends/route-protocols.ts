/**
 * The route protocol number (`rtm_protocol`) of each backend's routes.
 * A backend owns exactly the routes carrying its number, so it never
 * deletes a route it did not make; and because a route replace changes the
 * protocol with the route, moving a peer from one backend to another hands
 * the route over atomically. 117–120 are unassigned in the kernel's and
 * iproute2's lists; `ip route` shows them as `proto 117` and so on.
 */
export const BACKEND_ROUTE_PROTOCOL = {
  vxlan: 117,
  'host-gw': 118,
  ipip: 119,
  udp: 120,
} as const;
