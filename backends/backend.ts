/**
 * The one interface every datapath sits behind (DESIGN §3): a planner plus
 * a small lifecycle.
 *
 * - `start` creates or adopts what has a lifecycle (a device, an engine) and
 *   says what this node publishes; it never removes what it finds.
 * - `prepare` runs before each plan: it brings back a device someone deleted
 *   and (re)starts an engine for this node's subnet.
 * - `desired` is the planner. Pure: given this node, its device as it is now
 *   and the peers the agent assigned to this backend, it says what the
 *   kernel should hold (backends/kernel-state.ts). One reconciler
 *   (backends/reconciler.ts) diffs that against the kernel and applies it;
 *   `twill diagnose` diffs the same plan and reports instead.
 *
 * A backend owns exactly the kernel objects it can name — routes by its
 * route protocol number, addresses, neighbours and FDB entries on its own
 * device — so the reconciler never touches anything else.
 */
import type { BackendConfig } from '../lib/config';
import type { ExternalInterface } from '../lib/iface';
import type { IPNet } from '../lib/ip';
import { NO_PUBLIC_IP, type Lease } from '../lib/subnet/lease';
import type { Log } from '../lib/observe/logger';
import type { LinkInfo, Netlink } from '../lib/netlink';
import type { KernelState } from './kernel-state';
import type { WireguardPeerStats } from '../lib/observe/metrics';

export interface LocalNode {
  readonly extIface: ExternalInterface;
  /** Published as PublicIP; flanneld's "0.0.0.0" in an IPv6-only network (`localCarriesIPv4`). */
  readonly publicIP: string;
  /** Published as PublicIPv6 when the network carries IPv6 (EnableIPv6); peers route this node's IPv6 subnet to it. */
  readonly publicIPv6?: string;
}

/** Whether this node sends and receives IPv4 on the underlay: false in an IPv6-only network (PublicIP "0.0.0.0"). */
export function localCarriesIPv4(local: Pick<LocalNode, 'publicIP'>): boolean {
  return local.publicIP !== NO_PUBLIC_IP;
}

export interface BackendStart {
  /** Published in the lease as BackendData (flanneld peers read it). */
  readonly backendData?: unknown;
  /** Published as BackendV6Data when this node carries IPv6 (vxlan: the IPv6 device's VNI and VTEP MAC). */
  readonly backendV6Data?: unknown;
  /** MTU pods must use over this backend. */
  readonly mtu: number;
}

/** A peer as the backend instance that carries it sees it (backends/assignment.ts makes them). */
export interface Peer {
  /** Its lease key (`10.244.1.0-24`). */
  readonly key: string;
  /** 0.0.0.0/0 for an IPv6-only peer: ask `carriesIPv4` (lib/subnet/lease.ts) before routing to it. */
  readonly subnet: IPNet;
  readonly publicIP: string;
  /** Its IPv6 subnet and the IPv6 address it publishes (PublicIPv6), when its lease has them. */
  readonly ipv6Subnet?: IPNet;
  readonly publicIPv6?: string;
  /** What the peer publishes for this backend instance: its BackendData (vxlan: VNI and VtepMAC). */
  readonly data: unknown;
  /** Its BackendV6Data for this backend instance, when it publishes one (vxlan over IPv6). */
  readonly v6Data?: unknown;
}

/** The peers one backend instance plans for. */
export interface AssignedPeers {
  /** Peers this backend carries. */
  readonly carried: readonly Peer[];
  /**
   * Peers moving to another backend of this node: their link-layer entries
   * and routes stay (the other backend's route replaces the route
   * atomically) but are not asserted; the next plan without them removes
   * what is left.
   */
  readonly leaving: readonly Peer[];
  /** Every usable peer, whatever backend carries it (userspace ipip accepts packets from all of them). */
  readonly known: readonly Peer[];
  /**
   * Every usable peer whose node terminates this backend instance, as this
   * instance sees it (its BackendData here), whatever carries it now:
   * wireguard must know a peer's key before that peer sends to it.
   */
  readonly terminating?: readonly Peer[];
  /**
   * Peers another backend carries over routes a routing daemon installs
   * (bgp), which this one would carry without them: planned as standby
   * routes (backends/standby.ts), so that traffic never waits for a
   * reconcile when the daemon's route goes.
   */
  readonly standby?: readonly Peer[];
}

/** What a plan depends on besides the peers: all of it read before planning, so `desired` does no I/O. */
export interface PlanInput {
  readonly local: LocalNode;
  readonly own: Lease;
  /** The backend's device as the kernel holds it now (from `prepare`, or read by diagnose); undefined when it has none. */
  readonly device?: LinkInfo;
  /** Its IPv6 device (vxlan's `flannel-v6.<VNI>`, wireguard's `flannel-wg-v6`), from `prepareIPv6`; undefined when it has none or it is unknown. */
  readonly ipv6Device?: LinkInfo;
  /** Whether a peer's public address (IPv4 or IPv6) is reached directly through the external interface (backends/direct-reach.ts). */
  readonly reach: (publicIP: string) => boolean;
  /** The pod network (udp routes all of it into its TUN). */
  readonly network?: IPNet;
  /** How many other backends of the same type run beside this one (a migration between two of its settings). */
  readonly siblings: number;
}

/** Packet counters of a userspace datapath, totals since twilld started. */
export interface BackendCounters {
  readonly rxPackets: number;
  readonly txPackets: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly drops: number;
}

/** One entry of a userspace engine's peer table. */
export interface EnginePeer {
  readonly subnet: string;
  readonly publicIP: string;
  readonly port?: number;
  /** wireguard: the peer's public key (base64, from its lease). */
  readonly publicKey?: string;
  /** wireguard: what the peer may send from; absent: [subnet]. In dual stack with one device: both of its subnets. */
  readonly allowedIPs?: readonly string[];
  /** wireguard: the device that holds this entry; absent: the backend's main one (`flannel-wg`). */
  readonly device?: string;
  /** wireguard: the node's IPv4 subnet, on an entry of its IPv6 subnet (`flannel-wg-v6`). */
  readonly peerSubnet?: string;
}

export interface Backend {
  readonly type: string;
  /** How packets move ('kernel', 'userspace' or 'none'); final once start() resolved. */
  readonly mode: string;
  /** The protocol number of the routes this backend owns (its slot's); undefined for one that makes none. */
  readonly routeProtocol?: number;
  /** Its plan asks `reach` (host-gw, DirectRouting): the agent refreshes reachability before planning. */
  readonly usesReach: boolean;
  /** Creates or adopts the local devices; never removes what it finds. */
  start(local: LocalNode): Promise<BackendStart>;
  /** Brings back what the plan relies on (device, engine); resolves with the device as it is now. */
  prepare(own: Lease, peers: AssignedPeers, network?: IPNet): Promise<LinkInfo | undefined>;
  /** A backend with a device of its own for IPv6 (vxlan): brings it back; resolves with it as it is now, undefined when this node carries no IPv6. */
  prepareIPv6?(): Promise<LinkInfo | undefined>;
  /** The kernel state wanted for exactly these peers. Pure. */
  desired(input: PlanInput, peers: AssignedPeers): KernelState;
  /** Userspace backends: hands the engine its peer table (the reconciler calls it before routes change). */
  setEnginePeers?(peers: readonly EnginePeer[]): Promise<void>;
  /** Releases sockets and timers; the datapath stays (restart without loss). */
  stop(): Promise<void>;
  /** Removes what start created: devices and engines (the reconciler removes the routes). */
  teardown(): Promise<void>;
  /** Userspace datapaths only: counters for /metrics. */
  counters?(): Promise<BackendCounters>;
  /**
   * bgp: the subnets (inside `network`) a routing daemon has a route to in
   * the kernel now. The assignment lets this backend carry a peer only
   * while its subnet is among them.
   */
  learnedRoutes?(network?: IPNet): Promise<ReadonlySet<string>>;
  /**
   * wireguard: the subnets of the peers it has completed a handshake with.
   * The assignment moves a peer to this backend from another one both nodes
   * terminate only once it is among them (backends/readiness.ts).
   */
  establishedPeers?(): Promise<ReadonlySet<string>>;
  /** bgp: BIRD's sessions, for /metrics, status and diagnose. */
  bgpSessions?(): Promise<readonly BgpSessionInfo[]>;
  /** wireguard: each WireGuard peer's last handshake and bytes, for /metrics, status and diagnose. */
  wireguardPeers?(): Promise<readonly WireguardPeerStats[]>;
  /**
   * Takes new local settings (same type and identity, other live keys) on
   * this running backend. Without it, a new backend object with the new
   * settings adopts the devices. Returns the BackendData to publish when
   * the settings change it (bgp's ASN).
   */
  reconfigure?(config: BackendConfig): { readonly backendData: unknown } | void;
  /** Why this running backend cannot take `config`'s settings in place; undefined when it can. */
  inPlaceRefusal?(config: BackendConfig): string | undefined;
}

/** One BGP session as BIRD reports it. */
export interface BgpSessionInfo {
  /** BIRD's protocol name (mesh_198_18_0_2, peer_198_18_0_253). */
  readonly name: string;
  readonly neighbor?: string;
  readonly neighborAs?: number;
  /** BIRD's protocol state: up, start, down. */
  readonly state: string;
  /** BGP state and reason: Established, Active, Connect, Idle … */
  readonly info: string;
  readonly routesImported?: number;
  readonly routesExported?: number;
  readonly lastError?: string;
}

export interface BackendContext {
  readonly log: Log;
  /** wireguard: the private key's file (flanneld's default /run/flannel/wgkey). */
  readonly wireguardKeyFile?: string;
  readonly netlink: Netlink;
  /** Asks the agent for a reconcile soon (a userspace datapath restarted with a new device). */
  readonly requestReconcile?: (reason: string) => void;
  /**
   * Which of the (at most two) backends of this type on the node this is:
   * slot 1 runs beside slot 0 while the cluster migrates between two
   * settings of one type. It picks the route protocol number (and, where
   * names would clash, the device name), so the two never touch each
   * other's objects. 0 when absent.
   */
  readonly slot?: InstanceSlot;
}

export type InstanceSlot = 0 | 1;

/** Settings that tell two backends of one type apart on the wire, by their documented name (non-default values only). */
export type Identity = Readonly<Record<string, string | number | boolean>>;

export interface BackendFactory {
  readonly type: string;
  /** Checks the Backend settings of the network config; throws ConfigError naming the key. */
  validate(config: BackendConfig): void;
  /** Keys a running backend of this type applies in place, losing nothing; a change of any other key needs a migration. */
  readonly liveKeys?: readonly string[];
  /**
   * The settings a peer must match to talk to this backend (vxlan: VNI,
   * Port, GBP; udp: Port), non-default values only. Two backends of one
   * type with different identities run side by side during a migration;
   * leases name the identity of each backend they list. None: {}.
   */
  identity?(config: BackendConfig): Identity;
  /** What a lease without TwillBackends tells of its identity (vxlan: BackendData.VNI), and which keys it can tell. */
  readonly revealed?: { readonly keys: readonly string[]; read(data: unknown): Identity };
  /** Why backends of these two configs cannot run on one node at once (they would need the same socket); undefined when they can. */
  conflict?(a: BackendConfig, b: BackendConfig): string | undefined;
  /** Builds the backend; does no I/O (diagnose builds one to plan with, without starting it). */
  create(config: BackendConfig, ctx: BackendContext): Backend;
}

/** The backend cannot run on this node; the message says why and what to do. */
export class BackendUnavailableError extends Error {
  constructor(readonly backendType: string, message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}
