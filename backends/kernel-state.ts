/**
 * The kernel state a backend plans (`Backend.desired`), and the pure diff
 * that turns it, with what the kernel holds now, into the smallest list of
 * netlink operations. The reconciler applies that list; `twill diagnose`
 * reports it. Neither restates what a backend installs.
 *
 * Adds and replaces come before deletes in a plan, and link-layer entries
 * before routes, so a peer whose entries change is never without a path (an
 * entry moved to a new MAC or gateway is replaced, then the stale one goes).
 */
import type { AddressInfo, FdbEntry, NeighborInfo, Operation, RouteInfo } from '../lib/netlink';
import type { EnginePeer, Peer } from './backend';
import type { Intake } from './intake';

export interface WantedRoute {
  readonly dst: string;
  /** Absent for a device route (`10.244.0.0/16 dev flannel0`). */
  readonly gateway?: string;
  /** Output device name. */
  readonly dev: string;
  readonly ifindex: number;
  readonly onlink: boolean;
  /** The lease key of the peer it serves; absent for a route that serves them all. */
  readonly peer?: string;
  /** Absent: 0. A standby route (backends/standby.ts) has a higher one, so that another route wins while it exists. */
  readonly metric?: number;
}

export interface WantedNeighbor {
  readonly ip: string;
  readonly mac: string;
  readonly peer?: string;
}

export interface WantedFdb {
  readonly mac: string;
  readonly dst: string;
  readonly peer?: string;
}

/** A device the backend owns: exactly these addresses, and (when given) exactly these permanent neighbours and FDB entries. */
export interface DeviceState {
  readonly name: string;
  readonly ifindex: number;
  /** The family of its addresses and neighbours (vxlan's IPv6 device: 6; wireguard's one device in dual stack: 'dual'); absent: 4. */
  readonly family?: 4 | 6 | 'dual';
  readonly addresses: readonly string[];
  readonly neighbors?: readonly WantedNeighbor[];
  readonly fdb?: readonly WantedFdb[];
}

export interface KernelState {
  /** The reconciler owns every route carrying this protocol number, and only those; undefined: no routes. */
  readonly protocol?: number;
  readonly routes: readonly WantedRoute[];
  readonly devices: readonly DeviceState[];
  /** Route destinations left as they are (peers leaving for another backend of this node). */
  readonly keepRoutes: readonly string[];
  /** A userspace engine's peer table; absent for kernel backends. */
  readonly engine?: readonly EnginePeer[];
  /** Peers left out, each with the reason (a bad lease from another node). */
  readonly skipped: readonly string[];
  /** The encapsulated traffic this backend receives from peers (backends/intake.ts); absent: none (host-gw, alloc). */
  readonly intake?: readonly Intake[];
}

/** What the kernel holds of a plan's objects: routes of its protocol, and each of its devices' entries (absent: the device is gone). */
export interface ObservedState {
  readonly routes: readonly RouteInfo[];
  readonly devices: ReadonlyMap<number, { readonly addresses: readonly AddressInfo[]; readonly neighbors: readonly NeighborInfo[]; readonly fdb: readonly FdbEntry[] }>;
}

export interface AddressOperation {
  readonly op: 'replaceAddress' | 'deleteAddress';
  readonly ifindex: number;
  readonly dev: string;
  readonly cidr: string;
}

export interface Plan {
  /** Applied first: a route's source address and onlink next hop need the device's address. */
  readonly addresses: AddressOperation[];
  readonly upserts: Operation[];
  readonly deletes: Operation[];
}

/** rtm/ifa scope "link": an IPv6 link-local address. */
const LINK_SCOPE = 253;

/** The metric the kernel gives an IPv6 route added without one. */
const IPV6_DEFAULT_METRIC = 1024;

export function emptyPlan(): Plan {
  return { addresses: [], upserts: [], deletes: [] };
}

/** The whole diff of a plan against the kernel. */
export function diffKernelState(state: KernelState, observed: ObservedState): Plan {
  const plan = emptyPlan();
  for (const d of state.devices) {
    const have = observed.devices.get(d.ifindex);
    if (!have) continue;
    diffAddresses(plan, d, have.addresses);
    // FDB and ARP first, so a route never points at a VTEP the kernel cannot resolve.
    if (d.fdb) diffFdb(plan, d.ifindex, d.fdb, have.fdb);
    if (d.neighbors) diffNeighbors(plan, d.ifindex, d.neighbors, have.neighbors);
  }
  if (state.protocol !== undefined) diffRoutes(plan, state.routes, observed.routes, state.protocol, new Set(state.keepRoutes));
  return plan;
}

/** The device holds exactly its planned addresses (an old subnet's address goes). */
export function diffAddresses(plan: Plan, device: DeviceState, existing: readonly AddressInfo[]): void {
  const have = new Set(existing.map((a) => a.cidr));
  for (const cidr of device.addresses) if (!have.has(cidr)) plan.addresses.push({ op: 'replaceAddress', ifindex: device.ifindex, dev: device.name, cidr });
  // The kernel gives every IPv6 device a link-local address of its own (scope link); it is not the plan's to remove.
  for (const a of existing.filter((x) => !(x.family === 6 && x.scope === LINK_SCOPE))) {
    if (!device.addresses.includes(a.cidr)) plan.addresses.push({ op: 'deleteAddress', ifindex: device.ifindex, dev: device.name, cidr: a.cidr });
  }
}

/**
 * Routes: `existing` are the kernel's routes carrying `protocol` (the
 * backend's own). A route is its destination and metric (the kernel's key
 * within a table). Routes to a destination in `keep` are left alone,
 * whatever their metric.
 */
export function diffRoutes(plan: Plan, wanted: readonly WantedRoute[], existing: readonly RouteInfo[], protocol: number, keep: ReadonlySet<string> = new Set()): void {
  // The kernel stores an IPv6 route asked for with metric 0 as metric 1024 (and reports it so): the same route.
  const id = (dst: string, metric: number | undefined) => `${dst} metric ${metric || (dst.includes(':') ? IPV6_DEFAULT_METRIC : 0)}`;
  // Loops and forEach rather than filter/map chains and entry iterators: at 5000 peers a full check diffs
  // ~15000 entries, and each intermediate array or [key, value] pair is garbage the collector must promote.
  const have = new Map<string, RouteInfo>();
  for (const r of existing) if (r.protocol === protocol) have.set(id(r.dst, r.metric), r);
  const want = new Set<string>();
  for (const w of wanted) {
    const key = id(w.dst, w.metric);
    want.add(key);
    const r = have.get(key);
    if (r && r.gateway === w.gateway && r.ifindex === w.ifindex && r.onlink === w.onlink && r.type === 'unicast') continue;
    plan.upserts.push({ op: 'replaceRoute', route: { dst: w.dst, gateway: w.gateway, dev: w.ifindex, onlink: w.onlink, protocol, ...(w.metric ? { metric: w.metric } : {}) } });
  }
  have.forEach((r, key) => {
    if (!want.has(key) && !keep.has(r.dst)) plan.deletes.push({ op: 'deleteRoute', route: { dst: r.dst, protocol, table: r.table, ...(r.metric ? { metric: r.metric } : {}) } });
  });
}

/** Permanent ARP entries on device `dev` (the backend's own device: all of them are its); entries of other devices and non-permanent ones in `existing` are not its. */
export function diffNeighbors(plan: Plan, dev: number, wanted: readonly WantedNeighbor[], existing: readonly NeighborInfo[]): void {
  const have = new Map<string, NeighborInfo>();
  for (const n of existing) if (n.ifindex === dev && n.permanent) have.set(n.ip, n);
  const want = new Set<string>();
  for (const w of wanted) {
    want.add(w.ip);
    const n = have.get(w.ip);
    if (n && n.mac === w.mac) continue;
    plan.upserts.push({ op: 'replaceNeighbor', neighbor: { dev, ip: w.ip, mac: w.mac, permanent: true } });
  }
  for (const n of existing) {
    if (n.ifindex === dev && n.permanent && !want.has(n.ip)) plan.deletes.push({ op: 'deleteNeighbor', neighbor: { dev, ip: n.ip } });
  }
}

/** FDB entries with a remote VTEP on vxlan device `dev`; entries of other devices in `existing` are not its. */
export function diffFdb(plan: Plan, dev: number, wanted: readonly WantedFdb[], existing: readonly FdbEntry[]): void {
  const key = (mac: string, dst: string) => `${mac}@${dst}`;
  const have = new Set<string>();
  for (const e of existing) if (e.ifindex === dev && e.dst && e.permanent) have.add(key(e.mac, e.dst));
  const want = new Set<string>();
  for (const w of wanted) {
    const k = key(w.mac, w.dst);
    want.add(k);
    if (!have.has(k)) plan.upserts.push({ op: 'replaceFdb', fdb: { dev, mac: w.mac, dst: w.dst } });
  }
  for (const e of existing) {
    if (e.ifindex === dev && e.dst && !want.has(key(e.mac, e.dst))) plan.deletes.push({ op: 'deleteFdb', fdb: { dev, mac: e.mac, dst: e.dst } });
  }
}

/** Routes to carried peers' subnets, per family. */
export interface PeerRoutes {
  readonly ipv4: number;
  readonly ipv6: number;
}

/** How many of a plan's routes lead to the carried peers, per family (`twill_peer_routes`). */
export function countPeerRoutes(routes: readonly WantedRoute[], carried: readonly Peer[]): PeerRoutes {
  const keys = new Set(carried.map((p) => p.key));
  let ipv4 = 0;
  let ipv6 = 0;
  for (const r of routes) {
    if (r.peer === undefined || !keys.has(r.peer)) continue;
    if (r.dst.includes(':')) ipv6++;
    else ipv4++;
  }
  return { ipv4, ipv6 };
}
