/**
 * The lab's network: an underlay bridge in the root namespace holding
 * 198.19.0.254/24 (etcd listens there), one namespace per node with `eth0`
 * at 198.19.0.<n+1>, and one pod namespace per node behind the node's
 * `cni0` bridge on the node's leased subnet. Everything is named with the
 * `twlab<id>` prefix so `lab down` can find it even without the state file.
 * (198.19.0.0/24 keeps the lab apart from the test suite's 198.18.0.0/24.)
 *
 * The builders below (namespaces, bridges, veth pairs, addresses, pods) are
 * also what the integration harness (test/harness/cluster.ts) builds its
 * clusters with, so the lab a user tries and the clusters the tests check are
 * wired the same way.
 */
import { randomBytes } from 'crypto';
import { rmSync } from 'fs';
import { runDirFor } from '../../backends/wireguard/engine';
import { ip, run } from './run';

export const PREFIX = 'twlab';
export const UNDERLAY_NET = '198.19.0';
export const BRIDGE_IP = `${UNDERLAY_NET}.254`;

/**
 * Runs `ip ARGS` in the root namespace (`ns` undefined) or with `ip -n ns`,
 * rejecting when ip fails. The lab and the test harness each pass their own,
 * so that failures keep the error type each of them reports.
 */
export type IpCommand = (args: readonly string[], ns?: string) => Promise<unknown>;

/**
 * Names of one namespace cluster, all starting with `<prefix><id>` so that
 * cleanup can find them by name alone: namespaces `-n<i>` (node), `-p<i>`
 * (pod), `-r0` (router); root-namespace links `br` (bridge), `n<i>` (node
 * veth), `r0` (router veth).
 */
export function clusterNames(prefix: string, id: string) {
  const tag = `${prefix}${id}`;
  return {
    bridge: `${tag}br`,
    node: (n: number) => `${tag}-n${n}`,
    pod: (n: number) => `${tag}-p${n}`,
    rootVeth: (n: number) => `${tag}n${n}`,
    router: `${tag}-r0`,
    routerVeth: `${tag}r0`,
  };
}

export const names = (id: string) => clusterNames(PREFIX, id);

export function nodeIp(n: number): string {
  return `${UNDERLAY_NET}.${n + 1}`;
}

/** A named namespace with its loopback up. */
export async function addNamespace(ip: IpCommand, ns: string): Promise<void> {
  await ip(['netns', 'add', ns]);
  await ip(['link', 'set', 'lo', 'up'], ns);
}

/**
 * A bridge holding `address` (CIDR), up. `alias` marks who owns it (the
 * harness records its PID there); `ip link add … alias` drops the alias
 * silently, so it is set in a second step.
 *
 * The bridge gets a MAC of its own: without one it takes the lowest MAC of
 * its ports, so a port added later (a node, an outside host, a pod) can
 * change it under every neighbour that has resolved the bridge's address.
 * Their frames to the old MAC then reach no one until they resolve it again,
 * 30–50 s later: a node's etcd connection hung that long in the tests.
 */
export async function addBridge(ip: IpCommand, bridge: { name: string; address: string; ns?: string; alias?: string }): Promise<void> {
  const { name, ns } = bridge;
  await ip(['link', 'add', 'name', name, 'address', localMac(), 'type', 'bridge', 'forward_delay', '0'], ns);
  if (bridge.alias !== undefined) await ip(['link', 'set', 'dev', name, 'alias', bridge.alias], ns);
  await ip(['addr', 'add', bridge.address, 'dev', name], ns);
  await ip(['link', 'set', name, 'up'], ns);
}

/** A random unicast MAC from the locally administered range. */
export function localMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = (bytes[0] & 0xfc) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** How a namespace's `eth0` hangs off a bridge; see `attachToBridge`. */
export interface BridgePort {
  /** The namespace that gets eth0; it must exist. */
  readonly ns: string;
  /** The bridge, and the namespace it is in (undefined: the root namespace). */
  readonly bridge: string;
  readonly bridgeNs?: string;
  /** The veth end left beside the bridge, as its port. */
  readonly veth: string;
  /** eth0's address (CIDR). */
  readonly address: string;
  /** The default gateway; none when undefined (a router's leg). */
  readonly gateway?: string;
  /** More destinations routed via `gateway`. */
  readonly routes?: readonly string[];
}

/**
 * A veth pair from a bridge into `port.ns` as `eth0`, addressed and up, with
 * its default route (and `routes`) via the gateway.
 */
export async function attachToBridge(ip: IpCommand, port: BridgePort): Promise<void> {
  const { ns, bridgeNs, veth, gateway } = port;
  await ip(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns], bridgeNs);
  await ip(['link', 'set', veth, 'master', port.bridge, 'up'], bridgeNs);
  await ip(['addr', 'add', port.address, 'dev', 'eth0'], ns);
  await ip(['link', 'set', 'eth0', 'up'], ns);
  if (gateway === undefined) return;
  for (const dst of ['default', ...(port.routes ?? [])]) await ip(['route', 'add', dst, 'via', gateway, 'dev', 'eth0'], ns);
}

/** Nodes route between their pods and the overlay; the root namespace is never made to forward. */
export async function enableForwarding(ip: IpCommand, ns: string): Promise<void> {
  await ip(['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
}

/** A pod behind its node's `cni0`; see `attachPod`. */
export interface PodPort {
  readonly node: string;
  /** The pod namespace; it must exist. */
  readonly pod: string;
  /** The node-side end of the pod's veth. */
  readonly hostVeth: string;
  /** cni0's address and the pod's default gateway. */
  readonly gateway: string;
  readonly address: string;
  readonly prefixLen: number;
  readonly mtu: number;
}

/** `cni0` in the node holding the gateway address, and the pod's `eth0` on it. */
export async function attachPod(ip: IpCommand, port: PodPort): Promise<void> {
  const { node, pod, hostVeth, prefixLen } = port;
  const mtu = String(port.mtu);
  await addBridge(ip, { name: 'cni0', address: `${port.gateway}/${prefixLen}`, ns: node });
  await ip(['link', 'add', hostVeth, 'mtu', mtu, 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', mtu, 'netns', pod], node);
  await ip(['link', 'set', hostVeth, 'master', 'cni0', 'up'], node);
  await ip(['addr', 'add', `${port.address}/${prefixLen}`, 'dev', 'eth0'], pod);
  await ip(['link', 'set', 'eth0', 'up'], pod);
  await ip(['route', 'add', 'default', 'via', port.gateway, 'dev', 'eth0'], pod);
}

export async function createUnderlay(id: string): Promise<void> {
  await addBridge(ip, { name: names(id).bridge, address: `${BRIDGE_IP}/24` });
}

export async function createNode(id: string, n: number): Promise<void> {
  const N = names(id);
  const ns = N.node(n);
  await addNamespace(ip, ns);
  // A default route to a gateway nobody answers for: the default-route
  // interface is eth0, and nothing can leave the lab.
  await attachToBridge(ip, { ns, bridge: N.bridge, veth: N.rootVeth(n), address: `${nodeIp(n)}/24`, gateway: `${UNDERLAY_NET}.253` });
  await enableForwarding(ip, ns);
}

/** A pod namespace behind cni0 holding the subnet's .2, cni0 holding .1. */
export async function createPod(id: string, n: number, subnet: string, mtu: number): Promise<string> {
  const N = names(id);
  const [base, len] = subnet.split('/');
  const parts = base.split('.').map(Number);
  const gateway = `${parts[0]}.${parts[1]}.${parts[2]}.${parts[3] + 1}`;
  const podIp = `${parts[0]}.${parts[1]}.${parts[2]}.${parts[3] + 2}`;
  const pod = N.pod(n);
  await addNamespace(ip, pod);
  await attachPod(ip, { node: N.node(n), pod, hostVeth: 'vethpod', gateway, address: podIp, prefixLen: Number(len), mtu });
  return podIp;
}

/** Every lab namespace and root-namespace link there is (of any lab id). */
export async function findLabObjects(): Promise<{ namespaces: string[]; links: string[] }> {
  const nsText = await run(['ip', 'netns', 'list']).catch(() => '');
  const namespaces = nsText.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(PREFIX));
  const linkText = await run(['ip', '-o', 'link', 'show']).catch(() => '');
  const links = linkText.split('\n').map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '').filter((n) => n.startsWith(PREFIX));
  return { namespaces, links };
}

/** Kills every process left in the lab's namespaces (by PID) and removes the namespaces and links. */
export async function removeLabObjects(): Promise<void> {
  const { namespaces, links } = await findLabObjects();
  for (const ns of namespaces) {
    const pids = (await run(['ip', 'netns', 'pids', ns]).catch(() => '')).split('\n').map(Number).filter((p) => p > 0);
    for (const pid of pids) killQuietly(pid, 'SIGKILL');
    // A node's wireguard-go directory (socket, PID file, log) is named after its namespace's inode.
    try {
      rmSync(runDirFor(`/run/netns/${ns}`), { recursive: true, force: true });
    } catch {
      // the namespace is half gone already: nothing of it to find
    }
  }
  for (const l of links) await ip(['link', 'del', l]).catch(() => undefined);
  for (const ns of namespaces.sort((a, b) => Number(b.includes('-p')) - Number(a.includes('-p')))) {
    await ip(['netns', 'del', ns]).catch(() => undefined);
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
