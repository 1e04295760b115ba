/**
 * lib/netlink — a small typed layer over the `netlink` package (rtnetlink):
 * links, addresses, routes, neighbours, FDB entries and change events.
 */
export { Netlink, NetlinkOptions } from './netlink';
export { LinkRef } from './context';
export {
  NetlinkError, UnsupportedLinkKindError, InvalidArgumentError,
  isUnsupportedLinkKind, isNotFound, isAlreadyExists, errnoName,
} from './errors';
export { LinkInfo, VxlanInfo, VxlanSpec, IpipSpec, vxlanMismatches } from './links';
export { AddressInfo } from './addresses';
export { RouteSpec, RouteSelector, RouteFilter, RouteInfo, RouteProtocol, RouteTable, RouteScope } from './routes';
export { NeighborSpec, NeighborSelector, NeighborInfo } from './neighbors';
export { FdbSpec, FdbSelector, FdbEntry } from './fdb';
export { Operation, OperationFailure, BatchResult, BatchOptions } from './batch';
export { EventGroup, EventAction, NetlinkEvent, EventListener, Unsubscribe, EVENT_GROUPS, watchNftables } from './events';
export { subscribe, SubscribeOptions } from './events';
export { IpFamily, Cidr, parseCidr } from './wire-format';
