/**
 * Kernel change notifications (rtnetlink multicast groups), decoded into the
 * same plain values the rest of this layer returns, so that a backend can
 * reconcile when someone deletes or changes its objects.
 *
 * The notification socket is read by twill's own native addon
 * (native/event-socket.c), in the calling process, not by the `netlink`
 * package: when notifications arrive faster than they are read (a device
 * with thousands of neighbours deleted, `ip route flush`), the kernel marks
 * the socket ENOBUFS, epoll reports an error on it, and the package's native
 * poll handler then throws a C++ exception out of a libuv callback, which
 * aborts the process before any JavaScript runs. The addon turns the same
 * overflow into one 'resync' event once the socket is drained. Requests
 * still go through the package (socket.ts), whose receive window is bounded.
 *
 * Events carry interface indexes; the `dev` name fields stay unset.
 *
 * The same addon also listens to nftables' change announcements
 * (`watchNftables`, NETLINK_NETFILTER), for the tunnel guard.
 */
import { parseMessages, NetlinkMessage, rt } from './package';
import { AddressInfo, decodeAddress } from './addresses';
import { decodeFdb, FdbEntry } from './fdb';
import { decodeLink, LinkInfo } from './links';
import { decodeNeighbor, NeighborInfo } from './neighbors';
import { decodeRoute, RouteInfo } from './routes';
import { type BatchCallback, loadNetlinkAddon } from './addon';

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
  /**
   * Under `deletionsOnly`: additions and changes happened, and were not
   * decoded. Says only what they touched: the protocols of routes, the
   * interface indexes of addresses and neighbours (FDB entries too);
   * `unknown`: some could not be told, so assume they touched anything.
   */
  | { type: 'changes'; routeProtocols: readonly number[]; ifindexes: readonly number[]; unknown: boolean }
  /**
   * Notifications may have been lost: read the kernel's state again instead
   * of trusting the events seen so far. `closed`: the socket failed and no
   * event follows.
   */
  | { type: 'resync'; reason: string; closed?: boolean };

export type EventListener = (event: NetlinkEvent) => void;

/** Stops the subscription and releases its socket. Idempotent. */
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
      const route = decodeRoute(msg.data);
      return route && { type: 'route', action: msg.type === T.NEWROUTE ? 'new' : 'del', route };
    }
    case T.NEWNEIGH: case T.DELNEIGH: {
      const action: EventAction = msg.type === T.NEWNEIGH ? 'new' : 'del';
      const fdb = decodeFdb(msg.data);
      if (fdb) return { type: 'fdb', action, fdb };
      const neighbor = decodeNeighbor(msg.data);
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
   * Report only removals (and every link change) in full: additions and
   * changes of routes, addresses and neighbours are dropped before decoding
   * (in the addon, before they reach JavaScript), and only a summary of what
   * they touched arrives, as a 'changes' event per batch. An agent that
   * repairs what others delete needs no more, and skipping the flood of
   * notifications its own batches cause keeps it fast.
   */
  deletionsOnly?: boolean;
}

/** The addon's summary of the messages it skipped (its layout is described at note_skipped in event-socket.c). */
export function decodeSkipped(summary: Buffer): NetlinkEvent {
  const routeProtocols: number[] = [];
  for (let byte = 0; byte < 32; byte++) {
    const bits = summary[byte];
    if (bits) for (let bit = 0; bit < 8; bit++) if (bits & (1 << bit)) routeProtocols.push(byte * 8 + bit);
  }
  const ifindexes: number[] = [];
  for (let at = 36; at + 4 <= summary.length; at += 4) ifindexes.push(summary.readInt32LE(at));
  return { type: 'changes', routeProtocols, ifindexes, unknown: summary.readUInt32LE(32) !== 0 };
}

/** RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWNEIGH: additions skipped under `deletionsOnly`. */
const ADDITIONS = [20, 24, 28];

/** A burst of overflows is reported once it has been quiet this long… */
const RESYNC_QUIET_MS = 50;
/** …or this long after its first loss, whichever comes first. */
const RESYNC_MAX_DELAY_MS = 1000;

/**
 * Joins `groups` on a new socket in this process and calls `onEvent` for each
 * notification. The socket keeps the event loop alive until unsubscribed.
 * Lost notifications (receive buffer overflow) and a notification that cannot
 * be decoded are reported as a 'resync' event; the socket stays open.
 * Throws if the socket cannot be opened (e.g. EPERM) or the addon is not built.
 */
export function openEventSocket(groups: EventGroup[], onEvent: EventListener, options: EventSocketOptions = {}): Unsubscribe {
  const native = loadNetlinkAddon();
  let open = true;
  // A flood overflows the socket again and again while it is read; one
  // 'resync' after it has calmed down (no loss for RESYNC_QUIET_MS, or at
  // the latest RESYNC_MAX_DELAY_MS after the first loss) does the work of all.
  let resyncTimer: NodeJS.Timeout | undefined;
  let firstLoss = 0;
  const resync = (): void => {
    resyncTimer = undefined;
    if (open) onEvent({ type: 'resync', reason: 'notifications were lost (the socket receive buffer overflowed)' });
  };
  const lostNow = (): void => {
    const now = Date.now();
    if (resyncTimer) clearTimeout(resyncTimer);
    else firstLoss = now;
    resyncTimer = setTimeout(resync, Math.max(0, Math.min(RESYNC_QUIET_MS, firstLoss + RESYNC_MAX_DELAY_MS - now)));
  };
  const onBatch: BatchCallback = (messages, lost, _drained, error, skipped) => {
    if (!open) return;
    if (skipped) onEvent(decodeSkipped(skipped));
    if (messages) {
      let msgs: NetlinkMessage[] = [];
      try {
        msgs = parseMessages(messages);
      } catch (err) {
        onEvent({ type: 'resync', reason: `malformed notification: ${(err as Error).message}` });
      }
      for (const msg of msgs) {
        let event: NetlinkEvent | undefined;
        try {
          event = decodeEvent(msg);
        } catch (err) {
          event = { type: 'resync', reason: `undecodable notification (type ${msg.type}): ${(err as Error).message}` };
        }
        if (event) onEvent(event);
      }
    }
    if (lost) lostNow();
    if (error) {
      open = false;
      if (resyncTimer) clearTimeout(resyncTimer);
      onEvent({ type: 'resync', reason: `notification socket failed and was closed: ${error}`, closed: true });
    }
  };
  const groupIds = [...new Set(groups)].map((g) => GROUPS[g]);
  const handle = native.open(groupIds, options.recvBufferSize ?? 4 << 20, options.deletionsOnly ? ADDITIONS : [], onBatch);
  return () => {
    if (resyncTimer) clearTimeout(resyncTimer);
    // After a socket error the addon has closed it already; closing again would touch freed memory.
    if (open) native.close(handle);
    open = false;
  };
}

/** NETLINK_NETFILTER, and its group announcing every nftables transaction (NFNLGRP_NFTABLES). */
const NETLINK_NETFILTER = 12;
const NFNLGRP_NFTABLES = 7;

/**
 * Calls `onChange` whenever nftables changes in this network namespace (any
 * table: nft announces every transaction, twill's own too), with 'lost'
 * when announcements were lost and 'closed' when the socket failed (none
 * follows). What changed is not decoded. Throws if the socket cannot be
 * opened.
 */
export function watchNftables(onChange: (how: 'changed' | 'lost' | 'closed') => void): Unsubscribe {
  const native = loadNetlinkAddon();
  let open = true;
  const handle = native.open([NFNLGRP_NFTABLES], 1 << 20, [], (messages, lost, _drained, error) => {
    if (!open) return;
    if (error) {
      open = false;
      onChange('closed');
    } else if (lost) {
      onChange('lost');
    } else if (messages) {
      onChange('changed');
    }
  }, NETLINK_NETFILTER);
  return () => {
    if (open) native.close(handle);
    open = false;
  };
}

export type SubscribeOptions = EventSocketOptions;

/**
 * Subscribes to `groups` in this process, calling `onEvent` for each
 * notification. Resolves once the kernel delivers to the subscription, so
 * that a change made after the promise resolves is reported. Rejects if the
 * socket cannot be opened. The default receive buffer can be changed with
 * TWILL_NETLINK_EVENT_RCVBUF (bytes), for tests that provoke an overflow.
 */
export function subscribe(groups: EventGroup[], onEvent: EventListener, options: SubscribeOptions = {}): Promise<Unsubscribe> {
  try {
    const fromEnv = Number(process.env.TWILL_NETLINK_EVENT_RCVBUF) || undefined;
    const recvBufferSize = options.recvBufferSize ?? fromEnv;
    return Promise.resolve(openEventSocket(groups, onEvent, { ...options, recvBufferSize }));
  } catch (err) {
    return Promise.reject(new Error(`cannot subscribe to netlink events: ${(err as Error).message}`));
  }
}
