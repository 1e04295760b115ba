/**
 * What the running backend instances report for /metrics every few seconds:
 * a userspace engine's packet counters, WireGuard's peers, BIRD's sessions
 * and learned routes. Each asks only the instances that have such a thing.
 */
import type { Backend, BackendCounters, BgpSessionInfo } from '../../backends';
import type { IPNet } from '../ip';
import type { WireguardPeerStats } from '../observe/metrics';

type Instances = ReadonlyMap<string, Backend>;

export async function engineCounters(instances: Instances): Promise<Map<string, BackendCounters>> {
  const out = new Map<string, BackendCounters>();
  for (const [key, backend] of instances) if (backend.counters) out.set(key, await backend.counters());
  return out;
}

/** Every WireGuard peer of the running wireguard backend (none when none runs). */
export async function wireguardPeers(instances: Instances): Promise<WireguardPeerStats[]> {
  const out: WireguardPeerStats[] = [];
  for (const backend of instances.values()) if (backend.wireguardPeers) out.push(...(await backend.wireguardPeers()));
  return out;
}

/** BIRD's BGP sessions (none when no bgp backend runs). */
export async function bgpSessions(instances: Instances): Promise<BgpSessionInfo[]> {
  const out: BgpSessionInfo[] = [];
  for (const backend of instances.values()) if (backend.bgpSessions) out.push(...(await backend.bgpSessions()));
  return out;
}

/** How many routes BIRD installed (undefined when no bgp backend runs); a failed read counts as none. */
export async function bgpLearnedCount(instances: Instances, network?: IPNet): Promise<number | undefined> {
  let count: number | undefined;
  for (const backend of instances.values()) {
    if (!backend.learnedRoutes) continue;
    count = (count ?? 0) + (await backend.learnedRoutes(network).catch(() => new Set<string>())).size;
  }
  return count;
}
