import type { IPNet } from '../ip';

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
