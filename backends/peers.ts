/**
 * Which peers a backend carries. A peer is carried over a backend when its
 * lease says it terminates that backend; anything else is skipped with a
 * reason the agent logs once.
 */
import { IPNet, IP } from '../lib/ip';
import type { Lease } from '../lib/subnet';

/** The backend a lease asks for; flanneld's udp (and alloc) leases carry no BackendType. */
export function leaseBackendType(lease: Lease): string {
  return lease.attrs.backendType ?? 'udp';
}

export function partitionPeers(peers: readonly Lease[], type: string, own: Lease): { carried: Lease[]; skipped: string[] } {
  const carried: Lease[] = [];
  const skipped: string[] = [];
  for (const p of peers) {
    if (p.key === own.key) continue;
    const theirs = leaseBackendType(p);
    if (theirs !== type) {
      skipped.push(`peer ${p.subnet.toString()} (${p.attrs.publicIP}) uses backend ${theirs}, this node runs ${type}; not reachable until they match`);
    } else if (p.attrs.publicIP === own.attrs.publicIP) {
      skipped.push(`peer ${p.subnet.toString()} claims this node's own public IP ${p.attrs.publicIP}; ignoring it`);
    } else if (p.attrs.publicIP === '0.0.0.0') {
      skipped.push(`peer ${p.subnet.toString()} publishes no public IP; ignoring it`);
    } else {
      carried.push(p);
    }
  }
  return { carried, skipped };
}

/** The subnets of `leases`, as route destinations. */
export function subnetsOf(leases: readonly Lease[] = []): Set<string> {
  return new Set(leases.map((p) => p.subnet.toString()));
}

/** True when `ip` is on the same link-layer network as the interface address `local`/`prefixLen`. */
export function onLink(ip: string, local: string | undefined, prefixLen: number | undefined): boolean {
  if (!local || prefixLen === undefined) return false;
  return IPNet.of(IP.parse(local), prefixLen).contains(IP.parse(ip));
}
