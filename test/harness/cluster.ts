/**
 * A cluster of twill "nodes" on one machine, for the integration tests.
 *
 * Topology (id is 4 random hex digits, unique per run):
 *
 *   root namespace:  bridge tw<id>br 198.18.0.254/24 ── veth tw<id>n<i> ─┐
 *   node tw<id>-n<i>: eth0 198.18.0.<i+1>/24, default via 198.18.0.253  ◄─┘
 *                     cni0 <subnet>.1 ── veth-p<i> ─┐        (after addPod)
 *   pod tw<id>-p<i>:   eth0 <subnet>.2, default via .1 ◄┘
 *
 * The default gateway 198.18.0.253 is an address nobody holds: it makes eth0
 * the node's default-route interface (what twilld picks without --iface)
 * while nothing can leave the machine. The bridge's own address lets a server
 * in the root namespace (the tests' etcd on 198.18.0.254) serve the nodes.
 * The root namespace never forwards: ip_forward is set inside nodes only.
 *
 * With `farNodes`, those nodes sit on a second subnet behind a router, so
 * that they are not on the same link as the others (host-gw cannot reach
 * them):
 *
 *   router tw<id>-r0: eth0 198.18.0.253/24 ── veth tw<id>r0 on the bridge
 *                     far0 (bridge) 198.18.1.254/24, ip_forward=1, no default route
 *                       └─ n<i> ── veth ─┐
 *   far node tw<id>-n<i>: eth0 198.18.1.<i+1>/24, default via 198.18.1.254 ◄┘
 *
 * The near nodes' gateway 198.18.0.253 is then the router's address: they
 * get an explicit route to 198.18.1.0/24 via it, and anything else they send
 * there is dropped by the router, which has no default route. The root
 * namespace gets a route to 198.18.1.0/24 via the router on the bridge (for
 * the replies of servers on 198.18.0.254); it goes with the bridge. The far
 * side lives inside the router namespace, so deleting that namespace removes
 * it; the only root-namespace link it adds is tw<id>r0.
 *
 * With `ipv6Underlay`, the underlay is dual stack: node i's eth0 also holds
 * fd00:198:18::<i+1>/64 (a ULA, inside the node namespaces only; the root
 * bridge only switches it) with IPv6 forwarding on in the node, and pods
 * may be given an IPv6 subnet inside fd00::/8 beside their IPv4 one. With
 * far nodes too, the far side is fd00:198:19::/64 (far node i at ::<i+1>),
 * the router's legs ::fe on each, and each side routes the other's /64 via
 * the router, as in IPv4.
 *
 * With `nearPrefixLen: 23`, the near nodes hold 198.18.0.<i+1>/23: the far
 * subnet lies inside their interface prefix, yet their more specific route
 * sends it via the router — an address that looks on the link but is not.
 *
 * The wiring (namespaces, bridges, veth pairs, addresses) is lib/lab/topology's,
 * the same that `twill lab` builds; this module adds what tests need on top:
 * the underlay lock, far nodes, address checks and cleanup by PID.
 *
 * Ownership and cleanup: every object carries the cluster id in its name, and
 * the bridge carries the owner's PID in its alias. `destroy()` removes
 * everything named after the id, whether or not creation finished, and is safe
 * to repeat. `cleanupStale()` does the same for clusters whose owner process
 * is dead, so a crashed run never breaks the next one. Processes are killed by
 * PID only (the ones this cluster spawned, then whatever `ip netns pids` finds
 * in its namespaces).
 */
import { randomBytes } from 'crypto';
import * as net from 'net';
import { IP, IPNet } from '../../lib/ip';
import { addBridge, addNamespace, attachPod, attachToBridge, clusterNames, enableForwarding, localMac, type IpCommand } from '../../lib/lab/topology';
import {
  NsProcess,
  deleteLink,
  deleteNetns,
  execIn,
  ip,
  ipIn,
  isAlive,
  killNetnsProcesses,
  listLinks,
  listNetns,
  sleep,
  type RunOptions,
  type RunResult,
  type SpawnOptions,
} from './netns';

/** Every namespace and root-namespace link the harness makes starts with this. */
export const HARNESS_PREFIX = 'tw';

/** The underlay: one /24 out of 198.18.0.0/15 (RFC 2544 benchmarking space). */
export const UNDERLAY = {
  network: '198.18.0.0/24',
  prefixLen: 24,
  /** Address of the root-namespace bridge; root-namespace servers listen here. */
  bridgeIp: '198.18.0.254',
  /** The nodes' default gateway, deliberately unanswered (with `farNodes`, the router's near leg). */
  gateway: '198.18.0.253',
} as const;

/** The second underlay of `farNodes`, behind the router. */
export const FAR_UNDERLAY = {
  network: '198.18.1.0/24',
  prefixLen: 24,
  /** The router's far leg: the far nodes' default gateway. */
  routerIp: '198.18.1.254',
} as const;

/** The far nodes' IPv6 underlay (`ipv6Underlay` with `farNodes`), behind the router. */
export const FAR_UNDERLAY_V6 = {
  network: 'fd00:198:19::/64',
  prefixLen: 64,
  routerIp: 'fd00:198:19::fe',
} as const;

/** The IPv6 underlay of `ipv6Underlay` (a ULA /64, inside node namespaces only). */
export const UNDERLAY_V6 = {
  network: 'fd00:198:18::/64',
  prefixLen: 64,
  /** The router's near leg (with `farNodes`). */
  routerIp: 'fd00:198:18::fe',
} as const;

/** Pods may only be given subnets inside this network. */
export const POD_NETWORK = '10.244.0.0/16';

/** IPv6 pod subnets and test targets: unique local addresses (RFC 4193) only, inside namespaces only. */
export const ULA_SPACE = 'fd00::/8';

/** Addresses tests may send to: underlay 198.18.0.0/15 and loopback anywhere; pods only inside namespaces. */
const UNDERLAY_SPACE = IPNet.parse('198.18.0.0/15');
const LOOPBACK = IPNet.parse('127.0.0.0/8');
const POD_SPACE = IPNet.parse(POD_NETWORK);
const ULA = IPNet.parse(ULA_SPACE);

/** A target address outside the ranges the network-safety rules allow. */
export class UnsafeAddressError extends Error {
  constructor(readonly address: string, readonly fromNs: string | null) {
    super(
      `refusing to send to ${address} from ${fromNs ?? 'the root namespace'}: tests may target only ` +
        `198.18.0.0/15, 127.0.0.0/8${fromNs === null ? '' : ` and (inside namespaces) ${POD_NETWORK} and ${ULA_SPACE}`}`,
    );
    this.name = 'UnsafeAddressError';
  }
}

/**
 * Throws `UnsafeAddressError` unless `address` is one tests may send to from
 * `fromNs` (null = root namespace). Every traffic generator calls this first.
 */
export function assertSafeTarget(address: string, fromNs: string | null): void {
  let addr: IP;
  try {
    addr = IP.parse(address, 4);
  } catch {
    let v6: IP | undefined;
    try {
      v6 = IP.parse(address, 6);
    } catch {
      // neither family: refused below
    }
    if (v6 && fromNs !== null && ULA.contains(v6)) return;
    throw new UnsafeAddressError(address, fromNs);
  }
  if (UNDERLAY_SPACE.contains(addr) || LOOPBACK.contains(addr)) return;
  if (fromNs !== null && POD_SPACE.contains(addr)) return;
  throw new UnsafeAddressError(address, fromNs);
}

/** A node by 0-based index or by namespace name. */
export type NodeRef = number | string;

export interface ClusterOptions {
  /** Number of nodes, 1..32. */
  nodes: number;
  /** A label for error messages and the bridge alias (not part of any name). */
  name?: string;
  /**
   * Called after each node is fully built. Tests throw from it to simulate a
   * failure half way through creation.
   */
  afterNode?: (index: number) => void | Promise<void>;
  /**
   * How long to wait for another process's cluster to be destroyed (several
   * test runs on one machine take turns); default 45 s.
   */
  underlayWaitMs?: number;
  /**
   * Nodes (0-based) placed on 198.18.1.0/24 behind a router namespace
   * instead of on the bridge (see the module comment): node i gets
   * 198.18.1.<i+1>. Default none (and no router).
   */
  farNodes?: readonly number[];
  /**
   * Prefix length of the near nodes' eth0 address: 24 (default) or 23, which
   * makes 198.18.1.0/24 look on-link to them although they route it via the
   * router (see the module comment).
   */
  nearPrefixLen?: 23 | 24;
  /** A dual-stack underlay: node i's eth0 also holds fd00:198:18::<i+1>/64, a far node fd00:198:19::<i+1>/64 (see the module comment). */
  ipv6Underlay?: boolean;
  /**
   * With `ipv6Underlay`: false takes the IPv4 address (and the IPv4 default
   * route) off the nodes' eth0, leaving an IPv6-only underlay. The nodes
   * then cannot reach the root namespace over the bridge; see
   * TwillCluster's etcd relay. Default true.
   */
  ipv4Underlay?: boolean;
}

/** A pod namespace attached to a node's cni0 bridge. */
export interface PodInfo {
  node: number;
  ns: string;
  /** The pod subnet, e.g. "10.244.1.0/24". */
  subnet: string;
  /** The pod's address (subnet + 2). */
  ip: string;
  /** cni0's address (subnet + 1), the pod's default gateway. */
  gateway: string;
  /** With an IPv6 subnet (`addPod` opts.ipv6Subnet): the pod's IPv6 address (subnet + 2); cni0 holds subnet + 1. */
  ipv6?: string;
  /** The node-side end of the pod's veth. */
  hostVeth: string;
  mtu: number;
}

/** Creation failed; the partial cluster has already been destroyed. */
export class ClusterCreateError extends Error {
  constructor(readonly cluster: Cluster, override readonly cause: unknown, readonly cleanupError?: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    const cleanup = cleanupError
      ? `; cleanup also failed: ${cleanupError instanceof Error ? cleanupError.message : String(cleanupError)}`
      : '';
    super(`creating cluster ${cluster.id} failed: ${why}${cleanup}`);
    this.name = 'ClusterCreateError';
  }
}

/**
 * The underlay addresses are taken: by a cluster of this same process that
 * was not destroyed, by another process that kept the underlay lock longer
 * than `underlayWaitMs`, or by a device holding 198.18.0.254 outside the lock.
 */
export class UnderlayInUseError extends Error {
  constructor(readonly holder: string) {
    super(`the harness underlay (${UNDERLAY.network}) is in use by ${holder}; destroy that cluster first`);
    this.name = 'UnderlayInUseError';
  }
}

/** Some objects could not be removed; `leftovers` names them. */
export class CleanupError extends Error {
  constructor(readonly clusterId: string, readonly leftovers: Leftovers, readonly errors: unknown[]) {
    super(
      `cluster ${clusterId}: could not remove namespaces [${leftovers.namespaces.join(', ')}] ` +
        `links [${leftovers.links.join(', ')}]` +
        (errors.length ? ` (${errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')})` : ''),
    );
    this.name = 'CleanupError';
  }
}

/** Objects of one cluster that still exist. */
export interface Leftovers {
  namespaces: string[];
  links: string[];
}

const MAX_NODES = 32;
/** The cluster is built with the lab's topology builders; `ip` failures stay `CommandError`s. */
const ipCommand: IpCommand = (args, ns) => ipIn(ns ?? null, args);
const BRIDGE_ALIAS_TAG = 'twill-harness';
/** The router namespace's bridge for the far nodes' links. */
const FAR_BRIDGE = 'far0';

export class Cluster {
  readonly bridge: string;
  private readonly names: ReturnType<typeof clusterNames>;
  /** The router namespace, when the cluster has far nodes; null otherwise. */
  readonly router: string | null;
  /** Far nodes (see `ClusterOptions.farNodes`), ascending. */
  readonly farNodes: readonly number[];
  private readonly pods = new Map<number, PodInfo>();
  private readonly processes = new Set<NsProcess>();
  private destroyed = false;
  private destroying: Promise<void> | null = null;

  /** Use `createCluster`; the constructor only names things. */
  constructor(
    readonly id: string,
    readonly size: number,
    readonly name: string,
    readonly prefix: string = HARNESS_PREFIX,
    farNodes: readonly number[] = [],
    /** Prefix length of the near nodes' eth0 address (`ClusterOptions.nearPrefixLen`). */
    readonly nearPrefixLen: number = UNDERLAY.prefixLen,
    /** The underlay is dual stack (`ClusterOptions.ipv6Underlay`). */
    readonly ipv6Underlay: boolean = false,
    /** The nodes keep their IPv4 underlay address (`ClusterOptions.ipv4Underlay`). */
    readonly ipv4Underlay: boolean = true,
  ) {
    this.names = clusterNames(prefix, id);
    this.bridge = this.names.bridge;
    this.farNodes = [...new Set(farNodes)].sort((a, b) => a - b);
    this.router = this.farNodes.length ? this.names.router : null;
  }

  /** Node namespace names, index order. */
  get nodeNames(): string[] {
    return range(this.size).map((i) => this.nodeName(i));
  }

  /** Node underlay addresses, index order. */
  get nodeIps(): string[] {
    return range(this.size).map((i) => this.nodeIp(i));
  }

  nodeName(node: NodeRef): string {
    return this.names.node(this.index(node));
  }

  nodeIp(node: NodeRef): string {
    const i = this.index(node);
    return this.isFar(i) ? `198.18.1.${i + 1}` : `198.18.0.${i + 1}`;
  }

  /** Node i's IPv6 underlay address (`ipv6Underlay`): fd00:198:18::<i+1>. */
  nodeIpv6(node: NodeRef): string {
    if (!this.ipv6Underlay) throw new Error(`cluster ${this.id} has no IPv6 underlay (ipv6Underlay)`);
    return `${this.isFar(node) ? 'fd00:198:19' : 'fd00:198:18'}::${(this.index(node) + 1).toString(16)}`;
  }

  /** True when the node sits behind the router (`farNodes`). */
  isFar(node: NodeRef): boolean {
    return this.farNodes.includes(this.index(node));
  }

  /** The router's root-namespace veth on the bridge; null without far nodes. */
  get routerVeth(): string | null {
    return this.router ? this.names.routerVeth : null;
  }

  /** 0-based index of a node given by index or namespace name. */
  index(node: NodeRef): number {
    const i = typeof node === 'number' ? node : this.nodeNamesUnchecked().indexOf(node);
    if (!Number.isInteger(i) || i < 0 || i >= this.size) {
      throw new RangeError(`cluster ${this.id} has no node ${String(node)} (nodes 0..${this.size - 1})`);
    }
    return i;
  }

  /** The root-namespace end of node i's underlay veth; a far node has none (its link ends in the router). */
  rootVeth(node: NodeRef): string {
    const i = this.index(node);
    if (this.isFar(i)) throw new Error(`cluster ${this.id}: node ${i} is behind the router; its link is n${i} in ${this.router}, not in the root namespace`);
    return this.names.rootVeth(i);
  }

  /** Runs argv inside a node namespace. */
  exec(node: NodeRef, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return execIn(this.nodeName(node), argv, opts);
  }

  /** Runs argv inside the pod of a node (see `addPod`). */
  execPod(node: NodeRef, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return execIn(this.pod(node).ns, argv, opts);
  }

  /** `ip -n <node> <args>`. */
  ip(node: NodeRef, args: readonly string[], opts?: RunOptions): Promise<string> {
    return ipIn(this.nodeName(node), args, opts);
  }

  /**
   * Spawns a long-running process (twilld, say) in a node. The cluster keeps
   * the handle and stops it in `destroy()`; stop it earlier with `handle.stop()`.
   */
  async spawn(node: NodeRef, argv: readonly string[], opts?: SpawnOptions): Promise<NsProcess> {
    const p = await NsProcess.spawn(this.nodeName(node), argv, opts);
    this.processes.add(p);
    void p.exited.then(() => this.processes.delete(p));
    return p;
  }

  /** The pod of a node; throws if `addPod` was not called for it. */
  pod(node: NodeRef): PodInfo {
    const i = this.index(node);
    const pod = this.pods.get(i);
    if (!pod) throw new Error(`cluster ${this.id}: node ${i} has no pod (call addPod first)`);
    return pod;
  }

  /**
   * Gives node `node` a cni0 bridge holding the first address of `subnetCidr`
   * and one pod namespace behind it holding the second, with its default
   * route via cni0. One pod per node; the subnet must lie in 10.244.0.0/16.
   */
  async addPod(node: NodeRef, subnetCidr: string, opts: { mtu?: number; ipv6Subnet?: string } = {}): Promise<PodInfo> {
    const i = this.index(node);
    if (this.pods.has(i)) throw new Error(`cluster ${this.id}: node ${i} already has a pod`);
    const subnet = IPNet.parse(subnetCidr, { want: 4 });
    if (!POD_SPACE.covers(subnet) || subnet.prefixLen > 30) {
      throw new RangeError(`pod subnet ${subnetCidr} must be a /30 or larger inside ${POD_NETWORK}`);
    }
    const nodeNs = this.nodeName(i);
    const podNs = this.names.pod(i);
    const gateway = subnet.ip.add(1).toString();
    const podIp = subnet.ip.add(2).toString();
    const hostVeth = `veth-p${i}`;
    const mtu = opts.mtu ?? 1500;

    await addNamespace(ipCommand, podNs);
    // Recorded at once so that a failure below still leaves setPodMtu/execPod usable for diagnosis.
    const pod: PodInfo = { node: i, ns: podNs, subnet: subnet.toString(), ip: podIp, gateway, hostVeth, mtu };
    this.pods.set(i, pod);

    await attachPod(ipCommand, { node: nodeNs, pod: podNs, hostVeth, gateway, address: podIp, prefixLen: subnet.prefixLen, mtu });
    if (opts.ipv6Subnet !== undefined) pod.ipv6 = await this.addPodIpv6(nodeNs, podNs, opts.ipv6Subnet);
    return pod;
  }

  /**
   * An IPv6-only pod (an IPv6-only network): cni0 holding the IPv6
   * subnet's first address, one pod namespace behind it holding the second,
   * with its IPv6 default route via cni0. The PodInfo's `subnet`, `ip` and
   * `gateway` are then IPv6 (and `ipv6` is `ip`).
   */
  async addPodIpv6Only(node: NodeRef, ipv6SubnetCidr: string, opts: { mtu?: number } = {}): Promise<PodInfo> {
    const i = this.index(node);
    if (this.pods.has(i)) throw new Error(`cluster ${this.id}: node ${i} already has a pod`);
    const subnet = IPNet.parse(ipv6SubnetCidr, { want: 6 });
    if (!ULA.covers(subnet) || subnet.prefixLen > 126) throw new RangeError(`pod IPv6 subnet ${ipv6SubnetCidr} must be a /126 or larger inside ${ULA_SPACE}`);
    const nodeNs = this.nodeName(i);
    const podNs = this.names.pod(i);
    const gateway = subnet.ip.add(1).toString();
    const podIp = subnet.ip.add(2).toString();
    const hostVeth = `veth-p${i}`;
    const mtu = String(opts.mtu ?? 1500);
    await addNamespace(ipCommand, podNs);
    const pod: PodInfo = { node: i, ns: podNs, subnet: subnet.toString(), ip: podIp, gateway, ipv6: podIp, hostVeth, mtu: opts.mtu ?? 1500 };
    this.pods.set(i, pod);
    await ipIn(nodeNs, ['link', 'add', 'cni0', 'address', localMac(), 'type', 'bridge']);
    await ipIn(nodeNs, ['link', 'set', 'cni0', 'up']);
    await ipIn(nodeNs, ['-6', 'addr', 'add', `${gateway}/${subnet.prefixLen}`, 'dev', 'cni0', 'nodad']);
    await ipIn(nodeNs, ['link', 'add', hostVeth, 'mtu', mtu, 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', mtu, 'netns', podNs]);
    await ipIn(nodeNs, ['link', 'set', hostVeth, 'master', 'cni0', 'up']);
    await ipIn(podNs, ['-6', 'addr', 'add', `${podIp}/${subnet.prefixLen}`, 'dev', 'eth0', 'nodad']);
    await ipIn(podNs, ['link', 'set', 'eth0', 'up']);
    await ipIn(podNs, ['-6', 'route', 'add', 'default', 'via', gateway, 'dev', 'eth0']);
    return pod;
  }

  /**
   * The pod's second family: cni0 holds the IPv6 subnet's first address,
   * the pod its second, with the IPv6 default route via cni0. No duplicate
   * address detection: the addresses are usable at once, and unique by construction.
   */
  private async addPodIpv6(nodeNs: string, podNs: string, subnetCidr: string): Promise<string> {
    const subnet = IPNet.parse(subnetCidr, { want: 6 });
    if (!ULA.covers(subnet) || subnet.prefixLen > 126) throw new RangeError(`pod IPv6 subnet ${subnetCidr} must be a /126 or larger inside ${ULA_SPACE}`);
    const gateway = subnet.ip.add(1).toString();
    const podIp = subnet.ip.add(2).toString();
    await ipIn(nodeNs, ['-6', 'addr', 'add', `${gateway}/${subnet.prefixLen}`, 'dev', 'cni0', 'nodad']);
    await ipIn(podNs, ['-6', 'addr', 'add', `${podIp}/${subnet.prefixLen}`, 'dev', 'eth0', 'nodad']);
    await ipIn(podNs, ['-6', 'route', 'add', 'default', 'via', gateway, 'dev', 'eth0']);
    return podIp;
  }

  /**
   * Sets the MTU of a node's pod interface and its node-side veth (overlay
   * backends lower it: vxlan to ext − 50). cni0 follows its ports.
   */
  async setPodMtu(node: NodeRef, mtu: number): Promise<void> {
    const pod = this.pod(node);
    await ipIn(this.nodeName(node), ['link', 'set', pod.hostVeth, 'mtu', String(mtu)]);
    await ipIn(pod.ns, ['link', 'set', 'eth0', 'mtu', String(mtu)]);
    pod.mtu = mtu;
  }

  /** Objects of this cluster that still exist (namespaces and root-namespace links). */
  leftovers(): Promise<Leftovers> {
    return findClusterObjects(this.prefix, this.id);
  }

  /**
   * Removes every namespace, device and process of this cluster: the ones it
   * spawned first (by PID), then anything else still running in its
   * namespaces, then root-namespace links, then namespaces. Works after a
   * partial creation and when called again; rejects with `CleanupError` only
   * if something survives, after trying everything.
   */
  destroy(): Promise<void> {
    if (this.destroyed) return Promise.resolve();
    if (!this.destroying) {
      this.destroying = this.doDestroy().then(
        () => {
          this.destroyed = true;
          this.destroying = null;
        },
        (err: unknown) => {
          this.destroying = null; // a later call tries again
          throw err;
        },
      );
    }
    return this.destroying;
  }

  /** Builds bridge and nodes. Called once by `createCluster`. */
  async build(hooks: Pick<ClusterOptions, 'afterNode'> = {}): Promise<void> {
    const alias = `${BRIDGE_ALIAS_TAG} pid=${process.pid} name=${this.name}`;
    await addBridge(ipCommand, { name: this.bridge, address: `${UNDERLAY.bridgeIp}/${UNDERLAY.prefixLen}`, alias });
    await this.buildRouter();
    for (let i = 0; i < this.size; i++) {
      await this.buildNode(i);
      await hooks.afterNode?.(i);
    }
  }

  private async buildNode(i: number): Promise<void> {
    const ns = this.nodeName(i);
    await addNamespace(ipCommand, ns);
    const address = `${this.nodeIp(i)}/${this.isFar(i) ? FAR_UNDERLAY.prefixLen : this.nearPrefixLen}`;
    if (this.isFar(i)) {
      // A veth from the router's far bridge straight into the node: nothing in the root namespace.
      await attachToBridge(ipCommand, { ns, bridge: FAR_BRIDGE, bridgeNs: this.router!, veth: `n${i}`, address, gateway: FAR_UNDERLAY.routerIp });
    } else {
      const routes = this.router ? [FAR_UNDERLAY.network] : [];
      await attachToBridge(ipCommand, { ns, bridge: this.bridge, veth: this.rootVeth(i), address, gateway: UNDERLAY.gateway, routes });
    }
    await enableForwarding(ipCommand, ns);
    if (this.ipv6Underlay) {
      await ipIn(ns, ['-6', 'addr', 'add', `${this.nodeIpv6(i)}/${UNDERLAY_V6.prefixLen}`, 'dev', 'eth0', 'nodad']);
      await execIn(ns, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
      if (this.router) {
        const [other, via] = this.isFar(i) ? [UNDERLAY_V6.network, FAR_UNDERLAY_V6.routerIp] : [FAR_UNDERLAY_V6.network, UNDERLAY_V6.routerIp];
        await ipIn(ns, ['-6', 'route', 'add', other, 'via', via, 'dev', 'eth0']);
      }
    }
    // IPv6 only: the IPv4 address goes, and with it the IPv4 routes of eth0.
    if (!this.ipv4Underlay) await ipIn(ns, ['-4', 'addr', 'flush', 'dev', 'eth0']);
  }

  /**
   * The router between the bridge and the far nodes (when there are any):
   * its near leg on the bridge at the nodes' gateway address, its far bridge,
   * forwarding on and no default route, and the root namespace's route to
   * the far subnet through it (bound to the bridge, so it goes with it).
   */
  private async buildRouter(): Promise<void> {
    const router = this.router;
    const veth = this.routerVeth;
    if (!router || !veth) return;
    await addNamespace(ipCommand, router);
    await attachToBridge(ipCommand, { ns: router, bridge: this.bridge, veth, address: `${UNDERLAY.gateway}/${UNDERLAY.prefixLen}` });
    await addBridge(ipCommand, { name: FAR_BRIDGE, address: `${FAR_UNDERLAY.routerIp}/${FAR_UNDERLAY.prefixLen}`, ns: router });
    await enableForwarding(ipCommand, router);
    await ip(['route', 'add', FAR_UNDERLAY.network, 'via', UNDERLAY.gateway, 'dev', this.bridge]);
    if (this.ipv6Underlay) {
      await ipIn(router, ['-6', 'addr', 'add', `${UNDERLAY_V6.routerIp}/${UNDERLAY_V6.prefixLen}`, 'dev', 'eth0', 'nodad']);
      await ipIn(router, ['-6', 'addr', 'add', `${FAR_UNDERLAY_V6.routerIp}/${FAR_UNDERLAY_V6.prefixLen}`, 'dev', FAR_BRIDGE, 'nodad']);
      await execIn(router, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
    }
  }

  private async doDestroy(): Promise<void> {
    const errors: unknown[] = [];
    await Promise.all(
      [...this.processes].map((p) =>
        p.stop(2000).then(
          () => this.processes.delete(p),
          (e: unknown) => errors.push(e),
        ),
      ),
    );
    await removeClusterObjects(this.prefix, this.id, errors);
    const left = await this.leftovers();
    // Released even when something survived: the next cluster's own checks
    // (cleanupStale, the bridge-address check) deal with what is left.
    releaseUnderlay(this);
    if (left.namespaces.length || left.links.length) throw new CleanupError(this.id, left, errors);
    this.pods.clear();
  }

  private nodeNamesUnchecked(): string[] {
    return range(this.size).map((i) => this.names.node(i));
  }
}

/**
 * Builds a cluster of `nodes` node namespaces on a fresh underlay bridge.
 * Leftovers of crashed earlier runs are removed first. On any failure the
 * partial cluster is destroyed and `ClusterCreateError` (holding it) is thrown.
 */
export async function createCluster(opts: ClusterOptions): Promise<Cluster> {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > MAX_NODES) {
    throw new RangeError(`createCluster: nodes must be an integer 1..${MAX_NODES}, got ${String(opts.nodes)}`);
  }
  const far = opts.farNodes ?? [];
  const bad = far.filter((i) => !Number.isInteger(i) || i < 0 || i >= opts.nodes);
  if (bad.length) throw new RangeError(`createCluster: farNodes must be node indexes 0..${opts.nodes - 1}, got ${bad.map(String).join(', ')}`);
  const nearPrefixLen = opts.nearPrefixLen ?? UNDERLAY.prefixLen;
  if (nearPrefixLen !== 23 && nearPrefixLen !== 24) throw new RangeError(`createCluster: nearPrefixLen must be 23 or 24, got ${String(nearPrefixLen)}`);
  if (opts.ipv4Underlay === false && !opts.ipv6Underlay) throw new RangeError('createCluster: ipv4Underlay false needs ipv6Underlay (an underlay with no address family)');
  if (opts.ipv4Underlay === false && far.length) throw new RangeError('createCluster: an IPv6-only underlay does not support farNodes yet');
  const name = (opts.name ?? 'cluster').replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
  const lock = await acquireUnderlay(opts.underlayWaitMs ?? 45_000);
  let cluster: Cluster;
  try {
    await cleanupStale(HARNESS_PREFIX);
    await assertUnderlayFree(far.length > 0);
    cluster = new Cluster(await freshId(HARNESS_PREFIX), opts.nodes, name, HARNESS_PREFIX, far, nearPrefixLen, opts.ipv6Underlay ?? false, opts.ipv4Underlay ?? true);
    lock.cluster = cluster;
  } catch (e) {
    releaseUnderlay(lock.cluster);
    throw e;
  }
  try {
    await cluster.build({ afterNode: opts.afterNode });
  } catch (cause) {
    let cleanupError: unknown;
    try {
      await cluster.destroy();
    } catch (e) {
      cleanupError = e;
    }
    throw new ClusterCreateError(cluster, cause, cleanupError);
  }
  return cluster;
}

/*
 * The underlay lock. Every cluster uses the same addresses (198.18.0.0/24,
 * etcd on .254), so only one may exist on the machine at a time; test runs
 * started side by side take turns. The lock is an abstract Unix socket bound
 * in the root namespace: binding is atomic, and the kernel releases it when
 * the holder dies, so a crashed run never leaves a stale lock to break.
 */
const UNDERLAY_LOCK = '\0twill-harness-underlay';

/** The lock while this process holds it; `cluster` is null until the cluster is named. */
interface HeldLock {
  server: net.Server;
  cluster: Cluster | null;
}
let held: HeldLock | null = null;

/** Takes the underlay lock, waiting up to `waitMs` for other processes; refuses at once if this process holds it. */
async function acquireUnderlay(waitMs: number): Promise<HeldLock> {
  const mine = (): UnderlayInUseError => new UnderlayInUseError(`cluster ${held?.cluster?.id ?? '(being built)'} of this process`);
  if (held) throw mine();
  const server = await bindLock(waitMs);
  if (held) {
    // Another createCluster of this process got it while this one waited.
    server.close();
    throw mine();
  }
  const lock: HeldLock = { server, cluster: null };
  held = lock;
  return lock;
}

/** Binds the lock socket, retrying while another process holds it. */
async function bindLock(waitMs: number): Promise<net.Server> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const server = net.createServer();
    const bound = await new Promise<boolean>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(false) : reject(e)));
      server.listen({ path: UNDERLAY_LOCK }, () => resolve(true));
    });
    if (bound) {
      server.unref(); // holding the lock must not keep the test process alive
      return server;
    }
    if (Date.now() >= deadline) throw new UnderlayInUseError(`another process (still held after ${waitMs} ms)`);
    await sleep(200);
  }
}

/** Releases the lock if `cluster` holds it (null: the lock taken for a cluster not yet named). */
function releaseUnderlay(cluster: Cluster | null): void {
  if (!held || held.cluster !== cluster) return;
  held.server.close();
  held = null;
}

/** What `cleanupStale` removed, by cluster id. */
export interface StaleReport {
  removed: string[];
  /** Ids skipped because their owner process is still alive. */
  live: string[];
}

/**
 * Removes namespaces, root-namespace links and processes of harness clusters
 * (names `<prefix><4 hex>…`) whose owner process is gone — or that have no
 * owner record at all (no bridge: creation or destroy was cut short). Clusters
 * of live processes, this one included, are left alone. It runs under the
 * underlay lock (waiting for it up to 45 s), so a cluster another process is
 * still building, whose bridge has no alias yet, is never mistaken for stale.
 */
export async function cleanupStale(prefix: string = HARNESS_PREFIX): Promise<StaleReport> {
  // Hold the underlay lock while looking, unless a cluster of ours already does,
  // so that no other process is half way through building a cluster.
  const ownLock = held === null ? await bindLock(45_000) : null;
  try {
    return await removeStale(prefix);
  } finally {
    ownLock?.close();
  }
}

async function removeStale(prefix: string): Promise<StaleReport> {
  const ids = new Set<string>();
  const owners = new Map<string, number>();
  const { nsRe, linkRe } = namePatterns(prefix);
  for (const ns of await listNetns()) {
    const m = nsRe.exec(ns);
    if (m) ids.add(m[1]);
  }
  for (const link of await listLinks(null)) {
    const m = linkRe.exec(link.ifname);
    if (!m) continue;
    ids.add(m[1]);
    const owner = /\bpid=(\d+)/.exec(link.ifalias ?? '');
    if (m[2] === 'br' && link.ifalias?.startsWith(BRIDGE_ALIAS_TAG) && owner) owners.set(m[1], Number(owner[1]));
  }
  const report: StaleReport = { removed: [], live: [] };
  const errors: unknown[] = [];
  for (const id of [...ids].sort()) {
    const owner = owners.get(id);
    if (owner !== undefined && (owner === process.pid || (await isAlive(owner)))) {
      report.live.push(id);
      continue;
    }
    await removeClusterObjects(prefix, id, errors);
    report.removed.push(id);
  }
  if (errors.length) {
    throw new Error(`cleanupStale: ${errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')}`);
  }
  return report;
}

/** Namespaces and root-namespace links carrying cluster `id`. */
export async function findClusterObjects(prefix: string, id: string): Promise<Leftovers> {
  const { nsRe, linkRe } = namePatterns(prefix);
  const namespaces = (await listNetns()).filter((n) => nsRe.exec(n)?.[1] === id);
  const links = (await listLinks(null)).map((l) => l.ifname).filter((n) => linkRe.exec(n)?.[1] === id);
  return { namespaces, links };
}

/**
 * Removes everything named after cluster `id`, collecting errors instead of
 * stopping at the first, so one stuck object does not keep the rest alive.
 */
async function removeClusterObjects(prefix: string, id: string, errors: unknown[]): Promise<void> {
  const attempt = async (fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      errors.push(e);
    }
  };
  const first = await findClusterObjects(prefix, id);
  // Processes first: a namespace is only freed when nothing runs in it.
  await Promise.all(first.namespaces.map((ns) => attempt(() => killNetnsProcesses(ns))));
  // Root-side veths before namespaces: deleting one end removes the pair at
  // once, whereas a deleted namespace frees its devices asynchronously. (The
  // far nodes' veths and bridge live in the router namespace: they go with it.
  // The root route to the far subnet goes with the bridge.)
  const veths = first.links.filter((l) => !l.endsWith('br'));
  const bridges = first.links.filter((l) => l.endsWith('br'));
  for (const l of veths) await attempt(() => deleteLink(null, l));
  for (const l of bridges) await attempt(() => deleteLink(null, l));
  // Pods before nodes (and the router), for tidiness; any order works.
  const ordered = [...first.namespaces].sort((a, b) => Number(b.includes('-p')) - Number(a.includes('-p')));
  for (const ns of ordered) await attempt(() => deleteNetns(ns));
  // A veth whose namespace was deleted can linger for a moment while the
  // kernel tears the namespace down; wait for that rather than report it.
  for (let i = 0; i < 50; i++) {
    const left = await findClusterObjects(prefix, id);
    if (!left.namespaces.length && !left.links.length) return;
    for (const l of left.links) await attempt(() => deleteLink(null, l));
    await sleep(20);
  }
}

function namePatterns(prefix: string): { nsRe: RegExp; linkRe: RegExp } {
  const p = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return {
    // n: node, p: pod, r: router.
    nsRe: new RegExp(`^${p}([0-9a-f]{4})-[npr]\\d+$`),
    linkRe: new RegExp(`^${p}([0-9a-f]{4})(br|[nr]\\d+)$`),
  };
}

/** A 4-hex-digit id no existing namespace or link uses. */
async function freshId(prefix: string): Promise<string> {
  const { nsRe, linkRe } = namePatterns(prefix);
  const used = new Set<string>();
  for (const n of await listNetns()) {
    const m = nsRe.exec(n);
    if (m) used.add(m[1]);
  }
  for (const l of await listLinks(null)) {
    const m = linkRe.exec(l.ifname);
    if (m) used.add(m[1]);
  }
  for (let tries = 0; tries < 100; tries++) {
    const id = randomBytes(2).toString('hex');
    if (!used.has(id)) return id;
  }
  throw new Error('createCluster: no free cluster id');
}

/**
 * Two bridges holding 198.18.0.254/24 would split the root namespace's
 * routes; refuse early. With far nodes, the root namespace must not already
 * reach 198.18.1.0/24 some other way (an address in it, or a route for it).
 */
async function assertUnderlayFree(far: boolean): Promise<void> {
  const out = await ip(['-j', '-4', 'addr', 'show']);
  const links = JSON.parse(out || '[]') as { ifname: string; addr_info?: { local?: string }[] }[];
  const holder = links.find((l) => (l.addr_info ?? []).some((a) => a.local === UNDERLAY.bridgeIp));
  if (holder) throw new UnderlayInUseError(`device ${holder.ifname}`);
  if (!far) return;
  const farNet = IPNet.parse(FAR_UNDERLAY.network);
  const inFar = links.find((l) => (l.addr_info ?? []).some((a) => a.local !== undefined && farNet.contains(IP.parse(a.local, 4))));
  if (inFar) throw new UnderlayInUseError(`device ${inFar.ifname} (an address in ${FAR_UNDERLAY.network})`);
  const route = (await ip(['-4', 'route', 'show', 'exact', FAR_UNDERLAY.network])).trim();
  if (route) throw new UnderlayInUseError(`the route ${route}`);
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
