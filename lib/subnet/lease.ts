import { IPNet } from '../ip';

/**
 * What a node publishes about itself in its lease value. Field names follow
 * flanneld's `LeaseAttrs`; `backends` is twill's own addition (the backends
 * this node terminates, used during migrations) and is ignored by flanneld.
 */
export interface LeaseAttrs {
  /** IPv4 address peers send to; "0.0.0.0" when the node has none. */
  readonly publicIP: string;
  readonly publicIPv6: string | null;
  readonly backendType?: string;
  readonly backendData?: unknown;
  readonly backendV6Data?: unknown;
  readonly backends?: readonly BackendAdvert[];
}

/** One backend a node terminates, with the data peers need to reach it. */
export interface BackendAdvert {
  readonly type: string;
  /** The settings that tell this backend apart on the wire (e.g. vxlan Port), non-default ones only; absent for the defaults. */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  readonly data?: unknown;
  /** Its IPv6 data (what BackendV6Data says for the primary one), in dual stack; twill's `DataV6`. */
  readonly v6Data?: unknown;
}

/** A subnet lease as read from etcd. */
export interface Lease {
  /** The etcd key below `<prefix>/subnets/`, e.g. `10.244.1.0-24`. */
  readonly key: string;
  /** The IPv4 subnet; flanneld's empty 0.0.0.0/0 for an IPv6-only lease: ask `carriesIPv4` before routing or naming by it. */
  readonly subnet: IPNet;
  readonly ipv6Subnet?: IPNet;
  readonly attrs: LeaseAttrs;
  /** etcd lease id (decimal string); undefined for a reservation, which never expires. */
  readonly etcdLeaseId?: string;
  readonly modRevision: bigint;
}

export function isReservation(lease: Lease): boolean {
  return lease.etcdLeaseId === undefined;
}

export type LeaseEvent =
  | { readonly type: 'added'; readonly lease: Lease }
  | { readonly type: 'changed'; readonly lease: Lease; readonly previous: Lease }
  | { readonly type: 'removed'; readonly lease: Lease };

/** flanneld's PublicIP of a node without an IPv4 address (an IPv6-only network). */
export const NO_PUBLIC_IP = '0.0.0.0';

/**
 * The IPv4 subnet of an IPv6-only lease: flanneld's empty IP4Net, which its
 * key spells `0.0.0.0-0` (`0.0.0.0-0&fd00:10:244:1::-64`). It is no subnet
 * at all: nothing may be routed to it (it would be a default route), and
 * every IPv6-only lease has the same one, so it never identifies a lease.
 */
export const NO_IPV4_SUBNET: IPNet = IPNet.parse('0.0.0.0/0', { want: 4 });

/** Anything with a lease's subnets: a Lease, a backend Peer, a parsed key. */
interface HasSubnets {
  readonly subnet: IPNet;
  readonly ipv6Subnet?: IPNet;
}

/**
 * Whether a lease (or peer, or key) carries an IPv4 subnet: false for an
 * IPv6-only one. The one rule everything that routes, keys maps or prints
 * by the IPv4 subnet asks.
 */
export function carriesIPv4(l: HasSubnets): boolean {
  return !(l.subnet.prefixLen === 0 && l.subnet.ip.value === 0n);
}

/** The subnets a lease really holds (one or two), IPv4 first: what it claims and what may be routed to it. */
export function heldSubnets(l: HasSubnets): IPNet[] {
  const out = carriesIPv4(l) ? [l.subnet] : [];
  if (l.ipv6Subnet) out.push(l.ipv6Subnet);
  return out;
}

/** The subnet that names a lease in messages and tables: its IPv4 subnet, or the IPv6 one of an IPv6-only lease. */
export function leaseLabel(l: HasSubnets): string {
  return (carriesIPv4(l) || !l.ipv6Subnet ? l.subnet : l.ipv6Subnet).toString();
}

/**
 * The underlay address peers send to: PublicIP, or PublicIPv6 for a node
 * that publishes no IPv4 address (an IPv6-only cluster, PublicIP "0.0.0.0").
 * Undefined when it publishes neither.
 */
export function underlayAddress(attrs: Pick<LeaseAttrs, 'publicIP' | 'publicIPv6'>): string | undefined {
  if (attrs.publicIP !== NO_PUBLIC_IP) return attrs.publicIP;
  return attrs.publicIPv6 ?? undefined;
}
