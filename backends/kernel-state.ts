/**
 * What backends share: turning a desired set of kernel entries into the
 * smallest list of netlink operations, given what the kernel holds now.
 *
 * Each `diff*` is pure. Adds and replaces come before deletes in the plan,
 * so a peer whose entries change is never without a path (an entry moved to
 * a new MAC or gateway is replaced, then the stale one goes).
 */
import type { FdbEntry, NeighborInfo, Operation, RouteInfo } from '../lib/netlink';

export interface WantedRoute {
  readonly dst: string;
  /** Absent for a device route (`10.244.0.0/16 dev flannel0`). */
  readonly gateway?: string;
  /** Output device name. */
  readonly dev: string;
  readonly ifindex: number;
  readonly onlink: boolean;
}

export interface WantedNeighbor {
  readonly ip: string;
  readonly mac: string;
}

export interface WantedFdb {
  readonly mac: string;
  readonly dst: string;
}

export interface Plan {
  readonly upserts: Operation[];
  readonly deletes: Operation[];
}

export function emptyPlan(): Plan {
  return { upserts: [], deletes: [] };
}

/**
 * Routes: `existing` are the kernel's routes carrying `protocol` (the
 * backend's own). Routes to a destination in `keep` are left alone.
 */
export function diffRoutes(plan: Plan, wanted: readonly WantedRoute[], existing: readonly RouteInfo[], protocol: number, keep: ReadonlySet<string> = new Set()): void {
  const have = new Map(existing.map((r) => [r.dst, r]));
  const want = new Set<string>();
  for (const w of wanted) {
    want.add(w.dst);
    const r = have.get(w.dst);
    if (r && r.gateway === w.gateway && r.ifindex === w.ifindex && r.onlink === w.onlink && r.type === 'unicast') continue;
    plan.upserts.push({ op: 'replaceRoute', route: { dst: w.dst, gateway: w.gateway, dev: w.ifindex, onlink: w.onlink, protocol } });
  }
  for (const r of existing) {
    if (!want.has(r.dst) && !keep.has(r.dst)) plan.deletes.push({ op: 'deleteRoute', route: { dst: r.dst, protocol, table: r.table } });
  }
}

/** Permanent ARP entries on one device (the backend's own device: all of them are its). */
export function diffNeighbors(plan: Plan, dev: number, wanted: readonly WantedNeighbor[], existing: readonly NeighborInfo[]): void {
  const have = new Map(existing.map((n) => [n.ip, n]));
  const want = new Set<string>();
  for (const w of wanted) {
    want.add(w.ip);
    const n = have.get(w.ip);
    if (n && n.permanent && n.mac === w.mac) continue;
    plan.upserts.push({ op: 'replaceNeighbor', neighbor: { dev, ip: w.ip, mac: w.mac, permanent: true } });
  }
  for (const n of existing) {
    if (!want.has(n.ip)) plan.deletes.push({ op: 'deleteNeighbor', neighbor: { dev, ip: n.ip } });
  }
}

/** FDB entries with a remote VTEP on one vxlan device. */
export function diffFdb(plan: Plan, dev: number, wanted: readonly WantedFdb[], existing: readonly FdbEntry[]): void {
  const key = (mac: string, dst: string) => `${mac}@${dst}`;
  const have = new Set(existing.filter((e) => e.dst && e.permanent).map((e) => key(e.mac, e.dst!)));
  const want = new Set<string>();
  for (const w of wanted) {
    want.add(key(w.mac, w.dst));
    if (!have.has(key(w.mac, w.dst))) plan.upserts.push({ op: 'replaceFdb', fdb: { dev, mac: w.mac, dst: w.dst } });
  }
  for (const e of existing) {
    if (e.dst && !want.has(key(e.mac, e.dst))) plan.deletes.push({ op: 'deleteFdb', fdb: { dev, mac: e.mac, dst: e.dst } });
  }
}
