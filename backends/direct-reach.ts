/**
 * Which peers this node reaches directly on the external interface's link —
 * the question host-gw (and a Fallback's choice of it) and vxlan
 * DirectRouting ask before sending to a peer without encapsulation.
 *
 * A peer is *direct* when
 *   - the kernel's route to its public IP (`ip route get`, RTM_GETROUTE)
 *     is a unicast route without a gateway leaving through the external
 *     interface — as flanneld decides DirectRouting. A peer whose address
 *     lies inside the interface's prefix but that a more specific route
 *     sends via a router is not direct; neither is one with no route;
 *   - and its neighbour (ARP) entry on that interface is not FAILED.
 *
 * The neighbour part is a memory of the last definite answer: no entry yet
 * (or resolution still in progress) keeps what was seen before, and counts
 * as reachable for a peer never resolved — the kernel resolves on the first
 * packet. For a peer without an entry or with a FAILED one, `refresh`
 * starts that resolution itself (NTF_USE, nothing permanent) so that the
 * next refresh knows — a peer that failed is tried again even when nothing
 * sends to it any more, and is direct again once it answers. While it is
 * being tried (INCOMPLETE), or when the kernel has garbage-collected its
 * FAILED entry, the last definite answer stands.
 *
 * The route part is asked again when the kernel may have changed it: with
 * the kernel's notifications (`refresh`'s `kernelEpoch`, KernelWatch.mark),
 * a route answer stands until a notification arrives or ROUTE_MAX_AGE_MS
 * passes; without them, for maxAgeMs, as the neighbour part always does.
 * At 5000 peers that is one neighbour dump every 30 s instead of 5000
 * route lookups too.
 *
 * The answers come from the last `refresh`; an IP never refreshed is not
 * direct. Failed lookups never reject `refresh`: the IP is then not direct
 * and the failure is in the returned list, for the caller to log.
 */
import { readFileSync } from 'fs';
import { IP } from '../lib/ip';
import { NetlinkError, type NeighborInfo, type Netlink, type RouteInfo } from '../lib/netlink';
import type { Lease } from '../lib/subnet';
import { NO_PUBLIC_IP } from '../lib/subnet/lease';

/** The external interface: its index (what routes and neighbours name) and name (for messages). */
export interface DirectReachIface {
  readonly index: number;
  readonly name: string;
}

export interface DirectReachOptions {
  /** Route lookups (and probes) in flight at once; default 16. */
  readonly concurrency?: number;
  /** Start ARP resolution for direct peers without a neighbour entry or with a FAILED one (default true). */
  readonly probe?: boolean;
  /**
   * How long a verdict stands before the IP is looked up again (default
   * 30 s). A refresh runs on every reconcile; without this, thousands of
   * peers would cost thousands of route lookups every few seconds.
   */
  readonly maxAgeMs?: number;
}

/** How long a route answer stands while no kernel notification says routes changed. */
export const ROUTE_MAX_AGE_MS = 300_000;

/** What the kernel's route to a peer said: why it is not direct (undefined: on the link), and when. */
interface RouteAnswer {
  readonly notDirect?: string;
  /** The notification count (KernelWatch.mark) when asked; undefined without notifications. */
  readonly epoch?: number;
  readonly at: number;
}

interface Verdict {
  readonly direct: boolean;
  readonly why: string;
  /** Absent when the lookup failed: asked again at the next refresh after maxAgeMs. */
  readonly route?: RouteAnswer;
  /** The last definite neighbour answer: true = FAILED, false = resolved; undefined = never known. */
  readonly neighborFailed?: boolean;
  /** When it was decided (Date.now()). */
  readonly at: number;
}

/** NUD states that mean the neighbour answered (or needs no answer). */
const RESOLVED_STATES = ['reachable', 'stale', 'delay', 'probe', 'permanent', 'noarp'];

export class DirectReach {
  private verdicts = new Map<string, Verdict>();
  private changes = 0;
  private readonly concurrency: number;
  private readonly probe: boolean;
  private readonly maxAgeMs: number;

  constructor(private readonly nl: Netlink, private readonly ext: DirectReachIface, opts: DirectReachOptions = {}) {
    this.concurrency = Math.max(1, opts.concurrency ?? 16);
    this.probe = opts.probe ?? true;
    this.maxAgeMs = opts.maxAgeMs ?? 30_000;
  }

  /**
   * Decides again every IP (public IPs of peers, IPv4 or IPv6) not decided
   * within maxAgeMs and remembers which are direct; IPs not listed are
   * forgotten. `kernelEpoch`: KernelWatch.mark() (undefined without kernel
   * notifications); a route answer taken at the same epoch is not asked
   * again. Resolves with the problems met (one line per failed lookup or
   * probe), never rejects.
   */
  async refresh(peerIPs: readonly string[], kernelEpoch?: number): Promise<string[]> {
    const now = Date.now();
    const next = new Map<string, Verdict>();
    const ips: string[] = [];
    /** The route answers that still stand, for IPs whose neighbour part is due. */
    const standing = new Map<string, RouteAnswer>();
    for (const ip of new Set(peerIPs)) {
      const known = this.verdicts.get(ip);
      if (known && now - known.at < this.maxAgeMs) next.set(ip, known);
      else {
        ips.push(ip);
        const route = known?.route;
        if (route && kernelEpoch !== undefined && route.epoch === kernelEpoch && now - route.at < ROUTE_MAX_AGE_MS) standing.set(ip, route);
      }
    }
    const problems: string[] = [];
    if (ips.length === 0) {
      this.adopt(next);
      return problems;
    }
    // IPv6 peers (PublicIPv6) are neighbours of the other table: NDP's, not ARP's.
    const families = [...new Set(ips.map((ip) => (ip.includes(':') ? 6 : 4) as 4 | 6))];
    const neighborsLoaded = Promise.all(families.map((f) => this.nl.listNeighbors(this.ext.index, f))).then(
      (lists) => new Map<string, NeighborInfo>(lists.flat().filter((n) => n.ifindex === this.ext.index).map((n) => [canonical(n.ip), n])),
      (err: unknown) => {
        problems.push(`listing neighbours on ${this.ext.name}: ${message(err)}`);
        return undefined;
      },
    );
    const lookups = await mapBounded(ips, this.concurrency, async (ip): Promise<RouteAnswer | { error: string }> => {
      const stands = standing.get(ip);
      if (stands) return stands;
      try {
        return { notDirect: this.notDirect(await this.nl.routeGet(ip, { dev: false })), epoch: kernelEpoch, at: now };
      } catch (err) {
        return { error: message(err) };
      }
    });
    const neighbors = await neighborsLoaded;

    const toProbe: string[] = [];
    ips.forEach((ip, i) => {
      const route = lookups[i];
      if ('error' in route) {
        problems.push(`route lookup of ${ip}: ${route.error}`);
        next.set(ip, { direct: false, why: `route lookup failed: ${route.error}`, at: now });
        return;
      }
      if (route.notDirect) {
        next.set(ip, { direct: false, why: route.notDirect, route, at: now });
        return;
      }
      const before = this.verdicts.get(ip)?.neighborFailed;
      const entry = neighbors?.get(canonical(ip));
      let failed = before;
      if (entry?.state.includes('failed')) failed = true;
      else if (entry && RESOLVED_STATES.some((s) => entry.state.includes(s))) failed = false;
      if (neighbors && (!entry || entry.state.includes('failed'))) toProbe.push(ip);
      const direct = failed !== true;
      const state = entry ? entry.state.join(',') || 'none' : neighbors ? 'no entry' : 'unknown';
      next.set(ip, {
        direct,
        neighborFailed: failed,
        route,
        at: now,
        why: direct ? `on the link of ${this.ext.name} (neighbour ${state})` : `on the link of ${this.ext.name}, but its ARP resolution failed (neighbour ${state})`,
      });
    });
    this.adopt(next);

    if (this.probe && toProbe.length) {
      let tableFull = 0;
      await mapBounded(toProbe, this.concurrency, async (ip) => {
        try {
          await this.nl.probeNeighbor({ dev: this.ext.index, ip });
        } catch (err) {
          if (err instanceof NetlinkError && err.code === 'ENOBUFS') tableFull++;
          else problems.push(`starting ARP resolution of ${ip} on ${this.ext.name}: ${message(err)}`);
        }
      });
      if (tableFull > 0) problems.push(neighbourTableFull(tableFull, toProbe.length, this.ext.name, this.gcThresh3()));
    }
    return problems;
  }

  /** Why the kernel's route (`ip route get`) does not reach `ip` directly; undefined when it does. */
  private notDirect(r: RouteInfo | undefined): string | undefined {
    return !r ? 'no route'
      : r.type !== 'unicast' ? `a ${r.type} route`
        : r.gateway ? `routed via ${r.gateway}`
          : r.ifindex !== this.ext.index ? `routed out of another interface (index ${String(r.ifindex)})`
            : undefined;
  }

  /**
   * Rises whenever a refresh changes an answer `isDirect` gives, or the
   * reason `why` gives for an IP that is not direct, or which IPs are known:
   * while it stands still, whatever was decided from those answers stands.
   */
  get version(): number {
    return this.changes;
  }

  private adopt(next: Map<string, Verdict>): void {
    const before = this.verdicts;
    this.verdicts = next;
    if (before.size !== next.size) {
      this.changes++;
      return;
    }
    for (const [ip, v] of next) {
      const old = before.get(ip);
      if (!old || old.direct !== v.direct || (!v.direct && old.why !== v.why)) {
        this.changes++;
        return;
      }
    }
  }

  /** True when the last refresh found `ip` directly reachable; false for an IP never refreshed. */
  isDirect(ip: string): boolean {
    return this.verdicts.get(ip)?.direct ?? false;
  }

  private gcThresh3(): string | undefined {
    try {
      return readFileSync('/proc/sys/net/ipv4/neigh/default/gc_thresh3', 'utf8').trim();
    } catch {
      return undefined;
    }
  }

  /** Why `ip` is or is not direct, for logs and diagnostics. */
  why(ip: string): string {
    return this.verdicts.get(ip)?.why ?? 'not looked up yet';
  }
}

/** The public IPs to ask about: every other node's, both families (host-gw and DirectRouting ask each family's own address, PublicIPv6 for IPv6). */
export function peerPublicIPs(own: Lease, all: readonly Lease[]): string[] {
  return all.filter((l) => l.key !== own.key).flatMap((l) => [l.attrs.publicIP, l.attrs.publicIPv6 ?? NO_PUBLIC_IP]).filter((ip) => ip !== NO_PUBLIC_IP);
}

/** One spelling per address, so that an IPv6 neighbour is found whichever way its address is written. */
function canonical(ip: string): string {
  if (!ip.includes(':')) return ip;
  try {
    return IP.parse(ip, 6).toString();
  } catch {
    return ip;
  }
}

/** `fn` over `items` with at most `limit` calls in flight; results in input order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * The kernel refuses a new neighbour entry with ENOBUFS once the table
 * holds gc_thresh3 entries (default 1024): on a link with more nodes than
 * that, host-gw cannot resolve them all. One line for all of them, saying
 * which sysctl to raise, instead of one per peer.
 */
export function neighbourTableFull(refused: number, asked: number, dev: string, gcThresh3: string | undefined): string {
  return `the kernel's neighbour table is full: ${refused} of ${asked} ARP resolutions on ${dev} were refused (ENOBUFS); ` +
    `raise net.ipv4.neigh.default.gc_thresh3${gcThresh3 ? ` (now ${gcThresh3})` : ''} and gc_thresh2 above the number of nodes on this link`;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
