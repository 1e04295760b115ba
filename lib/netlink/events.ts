/**
 * Kernel change notifications (rtnetlink multicast groups), decoded into the
 * same plain values the rest of this layer returns, so that a backend can
 * reconcile when someone deletes or changes its objects.
 *
 * This module opens the notification socket in the calling process. Prefer
 * `subscribe()` (event-relay.ts), which runs it in a child process: when
 * notifications arrive faster than they are read (a device with thousands
 * of neighbours deleted, `ip route flush`), the kernel marks the socket
 * ENOBUFS, and the `netlink` package's native poll handler then throws a C++
 * exception that aborts the process. There is no way to set
 * NETLINK_NO_ENOBUFS through the package.
 *
 * Events carry interface indexes; the `dev` name fields stay unset.
 */
import { createNetlink, ErrnoException, NetlinkMessage, Protocol, rt } from 'netlink';
import { AddressInfo, decodeAddress } from './addresses';
import { decodeFdb, FdbEntry } from './fdb';
import { decodeLink, LinkInfo } from './links';
import { decodeNeighbor, NeighborInfo } from './neighbors';
import { decodeRoute, RouteInfo } from './routes';

export type EventGroup = 'link' | 'ipv4-route' | 'ipv6-route' | 'neigh' | 'ipv4-ifaddr' | 'ipv6-ifaddr';

/** The rtnetlink multicast group of each `EventGroup` (RTNLGRP_*). */
const GROUPS: Record<EventGroup, rt.MulticastGroups> = {
  link: rt.MulticastGroups.LINK,
  'ipv4-route': rt.MulticastGroups.IPV4_ROUTE,
  'ipv6-route': rt.MulticastGroups.IPV6_ROUTE,
  neigh: rt.MulticastGroups.NEIGH,
  'ipv4-ifaddr': rt.MulticastGroups.IPV4_IFADDR,
  'ipv6-ifaddr': rt.MulticastGroups.IPV6_IFADDR,
};

export const EVENT_GROUPS = Object.keys(GROUPS) as EventGroup[];

export type EventAction = 'new' | 'del';

export type NetlinkEvent =
  | { type: 'link'; action: EventAction; link: LinkInfo }
  | { type: 'address'; action: EventAction; address: AddressInfo }
  | { type: 'route'; action: EventAction; route: RouteInfo }
  | { type: 'neighbor'; action: EventAction; neighbor: NeighborInfo }
  | { type: 'fdb'; action: EventAction; fdb: FdbEntry }
  /** Notifications may have been lost: read the kernel's state again instead of trusting the events seen so far. */
  | { type: 'resync'; reason: string };

export type EventListener = (event: NetlinkEvent) => void;

/** Stops the subscription and releases its socket (or child process). Idempotent. */
export type Unsubscribe = () => void;

const T = rt.MessageType;

/** Decodes one notification; undefined for messages of no interest (other families, other types). */
export function decodeEvent(msg: NetlinkMessage): NetlinkEvent | undefined {
  switch (msg.type) {
    case T.NEWLINK: case T.DELLINK: {
      const m = rt.parseMessage(msg.type, msg.data);
      if (m.kind !== 'link') return undefined;
      return { type: 'link', action: msg.type === T.NEWLINK ? 'new' : 'del', link: decodeLink(m) };
    }
    case T.NEWADDR: case T.DELADDR: {
      const m = rt.parseMessage(msg.type, msg.data);
      const address = m.kind === 'address' ? decodeAddress(m) : undefined;
      return address && { type: 'address', action: msg.type === T.NEWADDR ? 'new' : 'del', address };
    }
    case T.NEWROUTE: case T.DELROUTE: {
      const m = rt.parseMessage(msg.type, msg.data);
      const route = m.kind === 'route' ? decodeRoute(m) : undefined;
      return route && { type: 'route', action: msg.type === T.NEWROUTE ? 'new' : 'del', route };
    }
    case T.NEWNEIGH: case T.DELNEIGH: {
      const m = rt.parseMessage(msg.type, msg.data);
      if (m.kind !== 'neighbor') return undefined;
      const action: EventAction = msg.type === T.NEWNEIGH ? 'new' : 'del';
      const fdb = decodeFdb(m);
      if (fdb) return { type: 'fdb', action, fdb };
      const neighbor = decodeNeighbor(m);
      return neighbor && { type: 'neighbor', action, neighbor };
    }
    default:
      return undefined;
  }
}

export interface EventSocketOptions {
  /** SO_RCVBUF to ask for (default 4 MiB; capped by net.core.rmem_max). */
  recvBufferSize?: number;
  /**
   * Report only removals (and every link change): additions of routes,
   * addresses and neighbours are dropped before decoding. An agent that
   * repairs what others delete needs no more, and skipping the flood of
   * notifications its own batches cause keeps it fast.
   */
  deletionsOnly?: boolean;
}

/** RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWNEIGH: additions skipped under `deletionsOnly`. */
const ADDITIONS = new Set([20, 24, 28]);

/**
 * Joins `groups` on a new socket in this process and calls `onEvent` for each
 * notification. The socket keeps the event loop alive until unsubscribed.
 * A notification that cannot be decoded is reported as a 'resync' event.
 * Throws if the socket cannot be opened (e.g. EPERM).
 */
export function openEventSocket(groups: EventGroup[], onEvent: EventListener, options: EventSocketOptions = {}): Unsubscribe {
  const nl = createNetlink(Protocol.ROUTE);
  nl.setRecvBufferSize(options.recvBufferSize ?? 4 << 20);
  for (const g of new Set(groups)) nl.addMembership(GROUPS[g]);
  nl.ref(true);
  nl.on('message', (msgs: NetlinkMessage[]) => {
    for (const msg of msgs) {
      if (options.deletionsOnly && ADDITIONS.has(msg.type)) continue;
      let event: NetlinkEvent | undefined;
      try {
        event = decodeEvent(msg);
      } catch (err) {
        event = { type: 'resync', reason: `undecodable notification (type ${msg.type}): ${(err as Error).message}` };
      }
      if (event) onEvent(event);
    }
  });
  nl.on('invalid', (err: unknown) => onEvent({ type: 'resync', reason: `malformed notification: ${String(err)}` }));
  nl.on('error', (err: ErrnoException) => onEvent({ type: 'resync', reason: `notification socket error: ${err.code}` }));
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    nl.close();
  };
}
