/**
 * The one interface every datapath sits behind (DESIGN §3).
 *
 * A backend owns the kernel objects it creates and can find them again
 * (by device, route protocol or table), so `reconcile` and `teardown` never
 * touch anything else. `reconcile` is level-triggered: it is handed the
 * whole desired state — this node's lease and every peer — and makes the
 * kernel match it, whatever happened before (start-up, lease events,
 * periodic repair, restart, migration).
 */
import type { BackendConfig, NetworkConfig } from '../lib/config';
import type { ExternalInterface } from '../lib/iface';
import type { Lease } from '../lib/subnet';
import type { Log } from '../lib/observe/logger';
import type { Netlink } from '../lib/netlink';

export interface LocalNode {
  readonly extIface: ExternalInterface;
  readonly publicIP: string;
  readonly network: NetworkConfig;
}

export interface BackendStart {
  /** Published in the lease as BackendData (flanneld peers read it). */
  readonly backendData?: unknown;
  /** MTU pods must use over this backend. */
  readonly mtu: number;
}

export interface ReconcileReport {
  /** Kernel objects created or replaced. */
  readonly changed: number;
  /** Kernel objects removed. */
  readonly removed: number;
  /** Peers skipped, each with the reason (a bad lease from another node). */
  readonly skipped: readonly string[];
  /** Kernel operations refused, each with the reason; retried on the next reconcile. */
  readonly failures: readonly string[];
}

/** Packet counters of a userspace datapath, totals since twilld started. */
export interface BackendCounters {
  readonly rxPackets: number;
  readonly txPackets: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly drops: number;
}

export interface ReconcileOptions {
  /**
   * Peers moving to another backend of this node: their entries stay (the
   * other backend's route replaces this one's atomically) but are not
   * re-asserted; the next reconcile without them removes what is left.
   */
  readonly retained?: readonly Lease[];
  /** Every valid peer lease, whatever backend carries it (a userspace ipip engine accepts packets from all of them). */
  readonly known?: readonly Lease[];
  /**
   * How many other backends of the same type run beside this one (a
   * migration between two settings of one type). udp then routes peer by
   * peer instead of holding the network route.
   */
  readonly siblings?: number;
}

export interface Backend {
  readonly type: string;
  /** How packets move ('kernel' or 'userspace'); final once start() resolved. */
  readonly mode: string;
  /** Creates or adopts the local devices; never removes what it finds. */
  start(local: LocalNode): Promise<BackendStart>;
  /** Makes the kernel hold exactly what `own` and `peers` call for. */
  reconcile(own: Lease, peers: readonly Lease[], opts?: ReconcileOptions): Promise<ReconcileReport>;
  /** Releases sockets and timers; the datapath stays (restart without loss). */
  stop(): Promise<void>;
  /** Removes every kernel object this backend created (after a migration). */
  teardown(): Promise<void>;
  /** Userspace datapaths only: counters for /metrics. */
  counters?(): Promise<BackendCounters>;
  /**
   * Takes new local settings (same type and identity, other live keys) on
   * this running backend. Without it, a new backend object with the new
   * settings adopts the devices.
   */
  reconfigure?(config: BackendConfig): void;
  /** Why this running backend cannot take `config`'s settings in place; undefined when it can. */
  inPlaceRefusal?(config: BackendConfig): string | undefined;
}

export interface BackendContext {
  readonly log: Log;
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
  create(config: BackendConfig, ctx: BackendContext): Backend;
}

/** The backend cannot run on this node; the message says why and what to do. */
export class BackendUnavailableError extends Error {
  constructor(readonly backendType: string, message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

export const EMPTY_REPORT: ReconcileReport = { changed: 0, removed: 0, skipped: [], failures: [] };
