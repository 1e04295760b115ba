/**
 * `Netlink`: the agent's only way to change the kernel's network state
 * (twill never runs `ip` or `bridge`). One instance holds two rtnetlink
 * sockets in the process's network namespace: one for changes, pipelined,
 * and one for reads, so that listing never waits behind a batch of writes.
 *
 * All methods take and return plain values ('10.244.1.0/24',
 * 'aa:bb:cc:dd:ee:ff', link names or indexes) and fail with the typed errors
 * of errors.ts. Many calls may be in flight at once (`Promise.all`); the
 * sockets bound what is outstanding. Idle sockets do not keep the process
 * alive.
 */
import { AddressInfo, deleteAddress, listAddresses, replaceAddress } from './addresses';
import { applyAll, BatchOptions, BatchResult, Operation } from './batch';
import { LinkRef, RtContext } from './context';
import { EventGroup, EventListener, subscribe, SubscribeOptions, Unsubscribe } from './events';
import { appendFdb, deleteFdb, FdbEntry, FdbSelector, FdbSpec, listFdb, replaceFdb } from './fdb';
import {
  createIpip, createVxlan, createWireguard, deleteLink, getLink, IpipSpec, LinkInfo, listLinks, setAlias, setLinkUp, setMtu, setVxlanLearning, VxlanSpec,
} from './links';
import { deleteNeighbor, listNeighbors, NeighborInfo, NeighborSelector, NeighborSpec, probeNeighbor, replaceNeighbor } from './neighbors';
import { deleteRoute, listRoutes, replaceRoute, routeGet, RouteFilter, RouteInfo, RouteSelector, RouteSpec } from './routes';
import { GET_BUDGET_BYTES, RtSocket, RtSocketOptions } from './socket';
import { IpFamily } from './wire-format';

export type NetlinkOptions = Omit<RtSocketOptions, 'bytesPerRequest'>;

export class Netlink {
  private readonly ctx: RtContext;

  private constructor(ctx: RtContext) {
    this.ctx = ctx;
  }

  /** Opens the sockets. Throws (EPERM, EACCES…) if the process may not use rtnetlink. */
  static open(options: NetlinkOptions = {}): Netlink {
    const writer = RtSocket.open(options);
    let reader: RtSocket;
    try {
      // Its GETs (link lookups) are answered with whole objects: fewer fit in its buffer.
      reader = RtSocket.open({ ...options, bytesPerRequest: GET_BUDGET_BYTES });
    } catch (err) {
      writer.close();
      throw err;
    }
    return new Netlink(new RtContext(writer, reader));
  }

  /** Requests in flight at once on the change socket (after capping by its receive buffer). */
  get window(): number {
    return this.ctx.writer.window;
  }

  /** Closes the sockets; calls still pending fail with ECANCELED. Subscriptions are separate and stay open. */
  close(): void {
    this.ctx.writer.close();
    this.ctx.reader.close();
  }

  // Links

  /** The link, or undefined if there is none of that name/index. */
  getLink(ref: LinkRef): Promise<LinkInfo | undefined> { return getLink(this.ctx, ref); }
  listLinks(): Promise<LinkInfo[]> { return listLinks(this.ctx); }
  /** Creates a vxlan device, down. EEXIST if the name is taken (check `vxlanMismatches` to adopt it). */
  createVxlan(spec: VxlanSpec): Promise<LinkInfo> { return createVxlan(this.ctx, spec); }
  /** Creates an ipip device, down. `UnsupportedLinkKindError` if the kernel has no ipip. */
  createIpip(spec: IpipSpec): Promise<LinkInfo> { return createIpip(this.ctx, spec); }
  /** ENODEV if absent. */
  /** Throws UnsupportedLinkKindError where the kernel has no WireGuard. */
  createWireguard(name: string): Promise<LinkInfo> { return createWireguard(this.ctx, name); }
  deleteLink(ref: LinkRef): Promise<void> { return deleteLink(this.ctx, ref); }
  setLinkUp(ref: LinkRef): Promise<void> { return setLinkUp(this.ctx, ref, true); }
  setLinkDown(ref: LinkRef): Promise<void> { return setLinkUp(this.ctx, ref, false); }
  setMtu(ref: LinkRef, mtu: number): Promise<void> { return setMtu(this.ctx, ref, mtu); }
  setVxlanLearning(ref: LinkRef, learning: boolean): Promise<void> { return setVxlanLearning(this.ctx, ref, learning); }
  setAlias(ref: LinkRef, alias: string): Promise<void> { return setAlias(this.ctx, ref, alias); }

  // Addresses

  listAddresses(ref: LinkRef, family?: IpFamily): Promise<AddressInfo[]> { return listAddresses(this.ctx, ref, family); }
  /** Adds the address, or updates it if present (no error either way). */
  replaceAddress(ref: LinkRef, cidr: string): Promise<void> { return replaceAddress(this.ctx, ref, cidr); }
  /** EADDRNOTAVAIL if absent. */
  deleteAddress(ref: LinkRef, cidr: string): Promise<void> { return deleteAddress(this.ctx, ref, cidr); }

  // Routes

  /** Routes of the main table unless `filter.table` says otherwise. */
  listRoutes(filter?: RouteFilter): Promise<RouteInfo[]> { return listRoutes(this.ctx, filter); }
  /**
   * The route the kernel would take to one IPv4 address (`ip route get`):
   * its gateway when it goes through a router, its device; undefined when
   * there is no route. `{ dev: false }` leaves out the device's name (saves a request).
   */
  routeGet(dst: string, opts: { dev?: boolean } = {}): Promise<RouteInfo | undefined> { return routeGet(this.ctx, dst, opts.dev ?? true); }
  /** Atomic create-or-replace (NLM_F_CREATE|NLM_F_REPLACE). */
  replaceRoute(spec: RouteSpec): Promise<void> { return replaceRoute(this.ctx, spec); }
  /** ESRCH if no route matches. */
  deleteRoute(sel: RouteSelector): Promise<void> { return deleteRoute(this.ctx, sel); }

  // Neighbours (ARP / NDP)

  listNeighbors(ref?: LinkRef, family?: IpFamily): Promise<NeighborInfo[]> { return listNeighbors(this.ctx, ref, family); }
  replaceNeighbor(spec: NeighborSpec): Promise<void> { return replaceNeighbor(this.ctx, spec); }
  /** Starts resolving `ip` on the link (NTF_USE), creating no permanent entry. */
  probeNeighbor(sel: NeighborSelector): Promise<void> { return probeNeighbor(this.ctx, sel); }
  /** ENOENT if absent. */
  deleteNeighbor(sel: NeighborSelector): Promise<void> { return deleteNeighbor(this.ctx, sel); }

  // FDB (vxlan)

  listFdb(ref: LinkRef): Promise<FdbEntry[]> { return listFdb(this.ctx, ref); }
  replaceFdb(spec: FdbSpec): Promise<void> { return replaceFdb(this.ctx, spec); }
  appendFdb(spec: FdbSpec): Promise<void> { return appendFdb(this.ctx, spec); }
  /** ENOENT if absent. */
  deleteFdb(sel: FdbSelector): Promise<void> { return deleteFdb(this.ctx, sel); }

  // Batches and events

  /** Applies all operations pipelined; one failure does not stop the others. */
  apply(operations: readonly Operation[], options?: BatchOptions): Promise<BatchResult> { return applyAll(this.ctx, operations, options); }

  /** Kernel change notifications on their own socket, read in this process by twill's native addon (events.ts). */
  subscribe(groups: EventGroup[], onEvent: EventListener, options?: SubscribeOptions): Promise<Unsubscribe> {
    return subscribe(groups, onEvent, options);
  }
}
