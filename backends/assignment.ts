/**
 * Which backend instance carries traffic between two nodes, and so which
 * instance of this node carries each peer (DESIGN §5, live migration and
 * per-peer choice). The agent runs it on every reconcile; `twill status`,
 * `twill migrate` and `twill diagnose` use the same functions, so what the
 * CLI shows is what the agents do. A migration is nothing but a change of
 * its inputs (which instances run, in which order of preference).
 *
 * Backends are named by instance key (backends/instance.ts): the type, plus
 * the settings that tell two of one type apart on the wire. A node
 * terminates the backends its lease lists in `TwillBackends`, or else its
 * `BackendType` (absent: udp, as flanneld publishes udp leases). Between
 * two nodes the first backend of the preference order — the configured
 * `Backend.Type`, then its `Fallback` — that both terminate and that can
 * reach the peer is used; failing that, any other both terminate (the
 * state in the middle of a migration), in the order the local node lists
 * them.
 *
 * Peers that no backend can carry are skipped here, once, with the reason:
 * a lease claiming this node's public IP, one with no public IP, one whose
 * node terminates no backend this node runs (or, for host-gw, one the
 * kernel does not reach directly and no Fallback carries).
 */
import { BackendConfig, ConfigError, setting } from '../lib/config';
import type { BackendAdvert, Lease, LeaseAttrs } from '../lib/subnet';
import { leaseLabel, underlayAddress } from '../lib/subnet/lease';
import type { AssignedPeers, Peer } from './backend';
import { bareLeaseKey, instanceKey, instanceOf, matchBareKey, typeOfKey } from './instance';

/** flanneld's lease for udp and alloc carries no BackendType. */
export function primaryBackendType(attrs: LeaseAttrs): string {
  return attrs.backendType ?? 'udp';
}

/** The instance key of one TwillBackends entry. */
export function advertKey(advert: BackendAdvert): string {
  return instanceKey(advert.type, advert.settings);
}

/**
 * Every backend instance the lease's node terminates (instance keys, see
 * backends/instance.ts), its primary one first: the TwillBackends entries
 * when the lease lists them (twill lists every instance there, the primary
 * included), else the BackendType with what its BackendData tells. With
 * `local` (the instances this node runs), a bare lease is matched to the
 * local instance it must be (matchBareKey).
 */
export function terminatedBy(attrs: LeaseAttrs, local?: readonly string[]): string[] {
  if (attrs.backends && attrs.backends.length > 0) return [...new Set(attrs.backends.map(advertKey))];
  // An IPv6-only node publishes only BackendV6Data (flanneld's vxlan has no IPv4 device then).
  const key = bareLeaseKey(primaryBackendType(attrs), attrs.backendData ?? attrs.backendV6Data);
  return [local ? matchBareKey(key, local) : key];
}

/** What a node publishes about one backend instance it terminates (BackendData, e.g. the VTEP MAC). */
export function backendDataOf(attrs: LeaseAttrs, key: string): unknown {
  if (attrs.backends && attrs.backends.length > 0) return attrs.backends.find((b) => advertKey(b) === key)?.data;
  return primaryBackendType(attrs) === typeOfKey(key) ? attrs.backendData : undefined;
}

/**
 * What a node publishes about IPv6 for instance `key`: its TwillBackends
 * entry's DataV6 when the lease lists instances (during a migration each
 * one's own), else flanneld's BackendV6Data, which belongs to BackendType.
 */
export function backendV6DataOf(attrs: LeaseAttrs, key: string): unknown {
  if (attrs.backends && attrs.backends.length > 0) return attrs.backends.find((b) => advertKey(b) === key)?.v6Data;
  return primaryBackendType(attrs) === typeOfKey(key) ? attrs.backendV6Data : undefined;
}

/** `Backend.Fallback`: a type name or a backend object (`{"Type": "vxlan", "VNI": 2}`); undefined when absent. */
export function fallbackConfig(config: BackendConfig): BackendConfig | undefined {
  const v = setting(config.settings, 'Fallback');
  if (v === undefined || v === null) return undefined;
  let fallback: BackendConfig;
  if (typeof v === 'string') {
    fallback = { type: v.toLowerCase(), settings: {} };
  } else if (typeof v === 'object' && !Array.isArray(v)) {
    const obj = v as Record<string, unknown>;
    const type = setting(obj, 'Type');
    if (typeof type !== 'string') throw new ConfigError('Backend.Fallback', 'Backend.Fallback: an object needs a "Type" string, e.g. {"Type": "vxlan"}');
    const settings: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(obj)) if (k.toLowerCase() !== 'type') settings[k] = val;
    fallback = { type: type.toLowerCase(), settings };
  } else {
    throw new ConfigError('Backend.Fallback', `Backend.Fallback: ${JSON.stringify(v)} is not a backend type or a backend object`);
  }
  if (fallback.type === config.type) throw new ConfigError('Backend.Fallback', `Backend.Fallback: "${fallback.type}" is the backend itself; name a different one`);
  if (setting(fallback.settings, 'Fallback') !== undefined) throw new ConfigError('Backend.Fallback', 'Backend.Fallback: a fallback cannot have a fallback of its own');
  return fallback;
}

/** The backend config itself, without its Fallback: what one backend instance runs. */
export function withoutFallback(config: BackendConfig): BackendConfig {
  const settings: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config.settings)) if (k.toLowerCase() !== 'fallback') settings[k] = v;
  return { type: config.type, settings };
}

/** The configured preference as instance keys: Backend.Type (with its settings), then its Fallback. */
export function preferenceOrder(config: BackendConfig): string[] {
  const fallback = fallbackConfig(config);
  return fallback ? [instanceOf(config).key, instanceOf(fallback).key] : [instanceOf(config).key];
}

/**
 * The backend instance that carries traffic from a node terminating `local`
 * to a peer terminating `remote` (instance keys), or undefined when they
 * share none. `usable(key)` says whether the peer can be reached over that
 * backend from here (host-gw: only on the same link).
 */
export function chooseBackend(
  order: readonly string[],
  local: readonly string[],
  remote: readonly string[],
  usable: (type: string) => boolean = () => true,
): string | undefined {
  const shared = (t: string) => local.includes(t) && remote.includes(t) && usable(t);
  return order.find(shared) ?? local.find((t) => !order.includes(t) && shared(t));
}

export interface AssignmentInput {
  /** The configured preference: Backend.Type's instance, then its Fallback's (preferenceOrder). */
  readonly order: readonly string[];
  /** The instances this node runs, preferred first. */
  readonly running: readonly string[];
  readonly own: Lease;
  /** Every accepted lease; this node's own is left out here. */
  readonly leases: Iterable<Lease>;
  /** Whether the kernel reaches `publicIP` directly (host-gw needs it). */
  readonly reach: (publicIP: string) => boolean;
  /** Why it does not, for the skip message. */
  readonly whyNotReached: (publicIP: string) => string;
  /**
   * Whether BGP has a route to a peer's subnet in the kernel (bgp carries a
   * peer only then); absent where that cannot be known (the CLI): yes.
   */
  readonly routed?: (subnet: string) => boolean;
  /**
   * Whether instance `key` has a working session with the peer owning
   * `subnet` (wireguard: a completed handshake); absent: yes. A peer moves
   * to such an instance from another one both nodes terminate only once it
   * has (make before break: a handshake the peer drops because it does not
   * know this node's key yet is retried only after 5 s); with no other
   * shared instance it goes there at once, as its traffic starts the session.
   */
  readonly established?: (key: string, subnet: string) => boolean;
}

export interface Assignment {
  /** Instance key → peers it carries, as that instance sees them. */
  readonly carried: ReadonlyMap<string, readonly Peer[]>;
  /** Every peer some backend could carry (userspace ipip accepts packets from all of them). */
  readonly known: readonly Peer[];
  /** Instance key → every usable peer whose node terminates it, as that instance sees it. */
  readonly terminating: ReadonlyMap<string, readonly Peer[]>;
  /** Instance key → peers it holds standby routes for (backends/standby.ts). */
  readonly standby: ReadonlyMap<string, readonly Peer[]>;
  readonly skipped: readonly string[];
}

/** Backend types whose routes a routing daemon installs and may withdraw at any moment: their peers get a standby. */
const DAEMON_ROUTED: readonly string[] = ['bgp'];

/** The peer as the instance `key` sees it: its BackendData for that instance. */
export function peerFor(lease: Lease, key: string): Peer {
  return {
    key: lease.key,
    subnet: lease.subnet,
    publicIP: lease.attrs.publicIP,
    ...(lease.ipv6Subnet ? { ipv6Subnet: lease.ipv6Subnet } : {}),
    ...(lease.attrs.publicIPv6 ? { publicIPv6: lease.attrs.publicIPv6 } : {}),
    data: backendDataOf(lease.attrs, key),
    ...(backendV6DataOf(lease.attrs, key) !== undefined ? { v6Data: backendV6DataOf(lease.attrs, key) } : {}),
  };
}

/** Why `lease` cannot be a peer of `own` at all; undefined when it can. */
export function unusablePeer(lease: Lease, own: Lease): string | undefined {
  const label = `peer ${leaseLabel(lease)}`;
  const address = underlayAddress(lease.attrs);
  if (address === undefined) return `${label} publishes no public IP; ignoring it`;
  if (address === underlayAddress(own.attrs)) return `${label} claims this node's own public IP ${address}; ignoring it`;
  return undefined;
}

export function assignPeers(input: AssignmentInput): Assignment {
  const carried = new Map<string, Peer[]>(input.running.map((k) => [k, []]));
  const known: Peer[] = [];
  const terminating = new Map<string, Peer[]>(input.running.map((k) => [k, []]));
  const standby = new Map<string, Peer[]>(input.running.map((k) => [k, []]));
  const skipped: string[] = [];
  const usable = (key: string, lease: Lease) => {
    const type = typeOfKey(key);
    if (type === 'host-gw') return input.reach(underlayAddress(lease.attrs)!);
    if (type === 'bgp') return input.routed?.(leaseLabel(lease)) ?? true;
    return true;
  };
  const ready = (key: string, lease: Lease) => usable(key, lease) && (input.established?.(key, leaseLabel(lease)) ?? true);
  for (const lease of input.leases) {
    if (lease.key === input.own.key) continue;
    const unusable = unusablePeer(lease, input.own);
    if (unusable) {
      skipped.push(unusable);
      continue;
    }
    const remote = terminatedBy(lease.attrs, input.running);
    for (const k of remote) terminating.get(k)?.push(peerFor(lease, k));
    const key = chooseBackend(input.order, input.running, remote, (k) => ready(k, lease))
      ?? chooseBackend(input.order, input.running, remote, (k) => usable(k, lease));
    known.push(peerFor(lease, key ?? remote[0]));
    if (!key) {
      const offLink = remote.includes('host-gw') && input.running.includes('host-gw')
        ? `; host-gw cannot reach it (${input.whyNotReached(underlayAddress(lease.attrs)!)}): give host-gw a Fallback (e.g. "Fallback": "vxlan") to carry such peers`
        : remote.includes('bgp') && input.running.includes('bgp')
          ? '; BGP has no route to it yet (see its session in `twill status`): give bgp a Fallback (e.g. "Fallback": "vxlan") to carry such peers meanwhile'
          : ': not reachable until they share a backend';
      skipped.push(`peer ${leaseLabel(lease)} (${underlayAddress(lease.attrs)}) terminates ${remote.join(', ')}; this node runs ${input.running.join(', ')}${offLink}`);
      continue;
    }
    carried.get(key)!.push(peerFor(lease, key));
    if (DAEMON_ROUTED.includes(typeOfKey(key))) {
      const spare = chooseBackend(input.order.filter((k) => k !== key), input.running.filter((k) => k !== key), remote, (k) => usable(k, lease));
      if (spare) standby.get(spare)!.push(peerFor(lease, spare));
    }
  }
  return { carried, known, terminating, standby, skipped };
}

/**
 * The peers instance `key` plans for, given the peers each instance carried
 * after the last reconcile: a peer that moved from A to another instance is
 * `leaving` A (A keeps its entries, as A saw the peer, until the new route
 * has replaced A's), in this pass only.
 */
export function assignedTo(assignment: Assignment, key: string, previous: ReadonlyMap<string, readonly Peer[]>): AssignedPeers {
  const carried = assignment.carried.get(key) ?? [];
  const here = new Set(carried.map((p) => p.key));
  const carriedSomewhere = new Set([...assignment.carried.values()].flatMap((ps) => ps.map((p) => p.key)));
  const leaving = (previous.get(key) ?? []).filter((p) => !here.has(p.key) && carriedSomewhere.has(p.key));
  return { carried, leaving, known: assignment.known, terminating: assignment.terminating.get(key) ?? [], standby: assignment.standby.get(key) ?? [] };
}
