/**
 * The Prometheus metrics twilld exposes on `/metrics` (DESIGN §5).
 *
 * `AgentMetrics` owns a private `Registry` (exposition.ts: twill's own
 * small Prometheus text renderer, not prom-client), so that tests can hold
 * several independent sets. The agent
 * reports facts through one method per fact; the metric names and labels
 * below are a public contract that dashboards and alerts depend on, so
 * they are renamed only with a CHANGELOG entry:
 *
 * | metric                                   | type      | labels            |
 * |------------------------------------------|-----------|-------------------|
 * | twill_peers                              | gauge     | backend           |
 * | twill_peer_routes                        | gauge     | backend, family=ipv4\|ipv6 |
 * | twill_reconcile_total                    | counter   | result=ok\|error  |
 * | twill_reconcile_duration_seconds         | histogram |                   |
 * | twill_kernel_changes_total               | counter   | kind=changed\|removed |
 * | twill_repairs_trusted_total              | counter   |                   |
 * | twill_lease_expiry_timestamp_seconds     | gauge     |                   |
 * | twill_subnet_changes_total               | counter   |                   |
 * | twill_etcd_errors_total                  | counter   | operation         |
 * | twill_etcd_reconnects_total              | counter   |                   |
 * | twill_etcd_up                            | gauge     |                   |
 * | twill_config_rejected_total              | counter   |                   |
 * | twill_config_valid                       | gauge     |                   |
 * | twill_leases_skipped_total               | counter   |                   |
 * | twill_backend_info                       | gauge     | backend, mode     |
 * | twill_datapath_receive_packets_total     | counter   | backend           |
 * | twill_datapath_transmit_packets_total    | counter   | backend           |
 * | twill_datapath_receive_bytes_total       | counter   | backend           |
 * | twill_datapath_transmit_bytes_total      | counter   | backend           |
 * | twill_datapath_drops_total               | counter   | backend           |
 * | twill_underlay_drops_total               | counter   | reason=unknown_source\|spoofed_source, intake=vxlan\|udp\|ipip, family=ipv4\|ipv6 |
 * | twill_tunnel_guard_active                | gauge     |                   |
 * | twill_wireguard_peer_handshake_age_seconds | gauge   | peer              |
 * | twill_wireguard_peer_receive_bytes       | gauge     | peer              |
 * | twill_wireguard_peer_transmit_bytes      | gauge     | peer              |
 * | twill_bgp_session_up                     | gauge     | neighbor          |
 * | twill_bgp_session_state                  | gauge     | neighbor, state, reason |
 * | twill_bgp_routes_imported                | gauge     | neighbor          |
 * | twill_bgp_routes_exported                | gauge     | neighbor          |
 * | twill_bgp_routes_learned                 | gauge     |                   |
 *
 * The bgp series exist while the bgp backend runs: one per BIRD session
 * (its neighbour's IP); `state` is BIRD's BGP state (Established, Active,
 * Connect, Idle, …), and routes_learned counts BIRD's routes in the kernel.
 *
 * For wireguard the datapath counters hold bytes only (wireguard-go counts no
 * packets); the wireguard series exist per WireGuard peer (its subnet) while the
 * wireguard backend runs; the age is absent until a first handshake, and the
 * bytes count from wireguard-go's start.
 *
 * plus the Node.js process metrics, prefixed `twill_`
 * (`twill_process_cpu_seconds_total`, `twill_nodejs_heap_size_used_bytes`, …;
 * see `processMetrics`), computed when scraped.
 *
 * Failure semantics: no method throws. A value that is not a finite number
 * (or a negative count) is a bug in the caller, not a reason to take the
 * agent down; it is ignored and the metric keeps its previous value.
 */
import { CONTENT_TYPE, Counter, Gauge, GaugeSet, Histogram, Registry, processMetrics } from './exposition';
import type { BgpSessionInfo } from '../../backends/backend';

/** The BGP state word of a BIRD session: `Established`, `Active`, `Idle`, … (BIRD's info column, its first word). */
export function bgpStateOf(s: BgpSessionInfo): string {
  return s.info.trim().split(/\s+/)[0] || s.state;
}

export function isEstablished(s: BgpSessionInfo): boolean {
  return bgpStateOf(s) === 'Established';
}

/** Why a session is not established, as BIRD says it (its last error, or the rest of its info column); '' when it is. */
export function bgpReasonOf(s: BgpSessionInfo): string {
  if (isEstablished(s)) return '';
  return (s.lastError ?? s.info.trim().slice(bgpStateOf(s).length)).trim().slice(0, 120);
}

/** One WireGuard peer as wireguard-go reports it. */
export interface WireguardPeerStats {
  /** Its subnet (its allowed IPs), or its endpoint when it has none. */
  readonly peer: string;
  /** Unix seconds; 0: never. */
  readonly lastHandshakeSec: number;
  readonly rxBytes: number;
  readonly txBytes: number;
}

/** Absolute datapath counters as read back from a userspace datapath. */
export interface DatapathCounters {
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  txBytes: number;
  drops: number;
}

/** Histogram buckets from 1 ms to 10 s: a reconcile of a few peers takes milliseconds, of 5000 routes seconds. */
const RECONCILE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const DATAPATH_FIELDS = ['rxPackets', 'txPackets', 'rxBytes', 'txBytes', 'drops'] as const;
type DatapathField = (typeof DATAPATH_FIELDS)[number];

export class AgentMetrics {
  /** The registry every twill metric lives in; `metrics()` renders it. */
  readonly registry = new Registry();

  private readonly peers: Gauge<'backend'>;
  private readonly peerRoutes: Gauge<'backend' | 'family'>;
  private readonly reconciles: Counter<'result'>;
  private readonly reconcileDuration: Histogram;
  private readonly repairsTrusted: Counter;
  private readonly kernelChanges: Counter<'kind'>;
  private readonly leaseExpiry: Gauge;
  private readonly subnetChanges: Counter;
  private readonly etcdErrors: Counter<'operation'>;
  private readonly etcdReconnects: Counter;
  private readonly etcdUp: Gauge;
  private readonly configRejections: Counter;
  private readonly configValid: Gauge;
  private readonly leasesSkipped: Counter;
  private readonly backendInfo: Gauge<'backend' | 'mode'>;
  private readonly datapath: Record<DatapathField, Counter<'backend'>>;
  private readonly underlayDrops: Counter<'reason' | 'intake' | 'family'>;
  private readonly underlayLast = new Map<string, number>();
  private readonly guardActive: Gauge;
  private readonly wgHandshakeAge: GaugeSet<'peer'>;
  private readonly wgRxBytes: GaugeSet<'peer'>;
  private readonly wgTxBytes: GaugeSet<'peer'>;
  private readonly bgpUp: GaugeSet<'neighbor'>;
  private readonly bgpState: GaugeSet<'neighbor' | 'state' | 'reason'>;
  private readonly bgpImported: GaugeSet<'neighbor'>;
  private readonly bgpExported: GaugeSet<'neighbor'>;
  private readonly bgpLearned: GaugeSet<never>;
  /** The last absolute datapath values seen per backend, to turn them into counter increments. */
  private readonly datapathLast = new Map<string, DatapathCounters>();

  constructor() {
    const r = this.registry;
    r.collect(processMetrics('twill_'));

    this.peers = r.register(new Gauge('twill_peers', 'Peers (other nodes\' leases) currently programmed into the datapath, per backend.', ['backend']));
    this.peerRoutes = r.register(new Gauge('twill_peer_routes', 'Routes to peers\' pod subnets the backend\'s last plan holds, per address family (ipv6: dual stack).', ['backend', 'family']));
    this.reconciles = r.register(new Counter('twill_reconcile_total', 'Reconciles of the kernel state with the leases, by result (ok: the backend ran to the end, error: it threw and will be retried).', ['result']));
    this.reconcileDuration = r.register(new Histogram('twill_reconcile_duration_seconds', 'Time one reconcile of the kernel state with the leases took, whether it succeeded or not.', RECONCILE_BUCKETS));
    this.repairsTrusted = r.register(new Counter('twill_repairs_trusted_total', 'Repairs that did not read the kernel state again: no kernel notification since the last full read touched twill\'s routes or devices (a full read still comes at least every 12 repair intervals).', []));
    this.kernelChanges = r.register(new Counter('twill_kernel_changes_total', 'Kernel objects (routes, FDB and ARP entries, links) that reconciles added or replaced (kind="changed") or deleted (kind="removed"). A steady rise on a quiet cluster means something else keeps undoing them.', ['kind']));
    this.leaseExpiry = r.register(new Gauge('twill_lease_expiry_timestamp_seconds', 'Unix time at which this node\'s subnet lease expires unless renewed; 0 for a reservation (never expires) or when no lease is held.'));
    this.subnetChanges = r.register(new Counter('twill_subnet_changes_total', 'Times this node lost its own subnet lease and had to take a different subnet; every pod on the node needs a new address afterwards.'));
    this.etcdErrors = r.register(new Counter('twill_etcd_errors_total', 'Failed etcd requests, by operation (a small fixed set such as acquire, renew, watch, list, config).', ['operation']));
    this.etcdReconnects = r.register(new Counter('twill_etcd_reconnects_total', 'Times contact with etcd came back after it was lost (leases are re-listed each time).'));
    this.etcdUp = r.register(new Gauge('twill_etcd_up', 'Whether etcd is reachable (1) or not (0) as of the last request or watch event; 0 until first reached.'));
    this.configRejections = r.register(new Counter('twill_config_rejected_total', 'Network configs read from etcd and refused as invalid; the last good config keeps running.'));
    this.configValid = r.register(new Gauge('twill_config_valid', 'Whether the network config currently in etcd is valid (1) or was refused (0); 0 until a config has been read.'));
    this.leasesSkipped = r.register(new Counter('twill_leases_skipped_total', 'Other nodes\' leases ignored because they are malformed or unusable (each is also logged once).'));
    this.backendInfo = r.register(new Gauge('twill_backend_info', 'Always 1, for the backend running on this node; mode says how it moves packets (kernel, userspace, or none for alloc).', ['backend', 'mode']));
    const datapath = (name: string, help: string) =>
      r.register(new Counter(name, `${help}, per backend (userspace datapaths only).`, ['backend']));
    this.datapath = {
      rxPackets: datapath('twill_datapath_receive_packets_total', 'Packets the datapath received from the overlay'),
      txPackets: datapath('twill_datapath_transmit_packets_total', 'Packets the datapath sent into the overlay'),
      rxBytes: datapath('twill_datapath_receive_bytes_total', 'Bytes the datapath received from the overlay'),
      txBytes: datapath('twill_datapath_transmit_bytes_total', 'Bytes the datapath sent into the overlay'),
      drops: datapath('twill_datapath_drops_total', 'Packets the datapath dropped'),
    };

    this.underlayDrops = r.register(new Counter('twill_underlay_drops_total', 'Tunnel packets the kernel dropped in twill\'s nftables guard (tables ip and ip6 twill_guard): from a source that holds no lease (reason="unknown_source") or from a peer with an inner source outside its subnet (reason="spoofed_source"), per intake (vxlan, udp, ipip) and underlay family (ipv4, ipv6).', ['reason', 'intake', 'family']));
    this.guardActive = r.register(new Gauge('twill_tunnel_guard_active', 'Whether twill\'s nftables guard filters tunnel traffic on this node (1) or not (0: --tunnel-guard=false, no nft, or no backend here receives tunnels).'));
    this.guardActive.set(0);
    this.wgHandshakeAge = r.register(new GaugeSet('twill_wireguard_peer_handshake_age_seconds', 'Seconds since the last WireGuard handshake with each peer (by its subnet); absent before the first. Above about 180 s with traffic flowing means the peer is not answering.', ['peer']));
    this.wgRxBytes = r.register(new GaugeSet('twill_wireguard_peer_receive_bytes', 'Bytes received from each WireGuard peer (by its subnet) since wireguard-go started.', ['peer']));
    this.bgpUp = r.register(new GaugeSet('twill_bgp_session_up', 'Whether the BGP session with each neighbour (by IP) is established (1) or not (0), as BIRD reports it.', ['neighbor']));
    this.bgpState = r.register(new GaugeSet('twill_bgp_session_state', 'Always 1, for the BGP state of the session with each neighbour (Established, Active, Connect, Idle, …) and, when it is not established, why (BIRD\'s last error).', ['neighbor', 'state', 'reason']));
    this.bgpImported = r.register(new GaugeSet('twill_bgp_routes_imported', 'Routes BIRD accepted from each BGP neighbour.', ['neighbor']));
    this.bgpExported = r.register(new GaugeSet('twill_bgp_routes_exported', 'Routes BIRD announces to each BGP neighbour (this node\'s subnet: 1 when up).', ['neighbor']));
    this.bgpLearned = r.register(new GaugeSet('twill_bgp_routes_learned', 'Pod routes BIRD has installed in this node\'s kernel (protocol bird).', []));
    this.wgTxBytes = r.register(new GaugeSet('twill_wireguard_peer_transmit_bytes', 'Bytes sent to each WireGuard peer (by its subnet) since wireguard-go started.', ['peer']));

    // Counters with a known label set start at 0, so that rate() and
    // increase() see the first event instead of a series appearing from nothing.
    this.reconciles.labels('ok').inc(0);
    this.reconciles.labels('error').inc(0);
    this.kernelChanges.labels('changed').inc(0);
    this.repairsTrusted.inc(0);
    this.kernelChanges.labels('removed').inc(0);
    this.leaseExpiry.set(0);
  }

  /** The Content-Type header to serve `metrics()` with (Prometheus text format 0.0.4). */
  get contentType(): string {
    return CONTENT_TYPE;
  }

  /** Renders every metric in the Prometheus text format. Rejects only if a collector throws. */
  metrics(): Promise<string> {
    return this.registry.render();
  }

  /** Routes to peers' subnets `backend` holds after a reconcile, per address family. */
  setPeerRoutes(backend: string, family: 'ipv4' | 'ipv6', n: number): void {
    if (isCount(n)) this.peerRoutes.labels(backend, family).set(n);
  }

  /** Peers programmed by `backend` after a reconcile (0 once a backend stops). */
  setPeers(backend: string, n: number): void {
    if (isCount(n)) this.peers.labels(backend).set(n);
  }

  /** One reconcile finished after `seconds`; `ok` is false if it threw. */
  observeReconcile(seconds: number, ok: boolean): void {
    this.reconciles.labels(ok ? 'ok' : 'error').inc();
    if (isCount(seconds)) this.reconcileDuration.observe(seconds);
  }

  /** A repair trusted the kernel notifications instead of reading the kernel. */
  repairTrusted(): void {
    this.repairsTrusted.inc();
  }

  /** Kernel objects a reconcile added/replaced and deleted (its report's `changed` and `removed`). */
  countKernelChanges(changed: number, removed: number): void {
    if (isCount(changed)) this.kernelChanges.labels('changed').inc(changed);
    if (isCount(removed)) this.kernelChanges.labels('removed').inc(removed);
  }

  /** When the own lease expires; `undefined` for a reservation or no lease (exported as 0). */
  setLeaseExpiry(date: Date | undefined): void {
    const ms = date?.getTime();
    this.leaseExpiry.set(ms !== undefined && Number.isFinite(ms) ? ms / 1000 : 0);
  }

  /** The own subnet was lost and replaced by a different one. */
  subnetChanged(): void {
    this.subnetChanges.inc();
  }

  /** An etcd request failed; keep `operation` to a small fixed set, one time series each. */
  etcdError(operation: string): void {
    this.etcdErrors.labels(operation).inc();
  }

  /** Contact with etcd came back after a loss. */
  etcdReconnected(): void {
    this.etcdReconnects.inc();
  }

  setEtcdUp(up: boolean): void {
    this.etcdUp.set(up ? 1 : 0);
  }

  /** A network config was refused; the caller keeps running the last good one. */
  configRejected(): void {
    this.configRejections.inc();
  }

  setConfigValid(ok: boolean): void {
    this.configValid.set(ok ? 1 : 0);
  }

  /** Another node's lease was ignored as malformed. */
  leaseSkipped(): void {
    this.leasesSkipped.inc();
  }

  /**
   * The backend now running and how it moves packets (`kernel` unless
   * given, e.g. `userspace` for the TUN ipip datapath). Replaces the
   * previous backend's series, so exactly one is 1.
   */
  setBackend(backend: string, mode = 'kernel'): void {
    this.backendInfo.reset();
    this.backendInfo.labels(backend, mode).set(1);
  }

  /**
   * An absolute drop count read from the guard's named nft counter. As for
   * the datapath counters, a value lower than the last means the counter
   * started over (the table was recreated): the value itself is the increase.
   */
  setUnderlayDrops(reason: 'unknown_source' | 'spoofed_source', intake: string, total: number, family: 4 | 6 = 4): void {
    if (!isCount(total)) return;
    const key = `${reason}/${intake}/${family}`;
    const previous = this.underlayLast.get(key) ?? 0;
    this.underlayDrops.labels(reason, intake, family === 6 ? 'ipv6' : 'ipv4').inc(total >= previous ? total - previous : total);
    this.underlayLast.set(key, total);
  }

  setTunnelGuardActive(active: boolean): void {
    this.guardActive.set(active ? 1 : 0);
  }

  /** The WireGuard peers as wireguard-go reports them now (empty: no wireguard backend runs). */
  setWireguardPeers(peers: readonly WireguardPeerStats[], nowSec = Date.now() / 1000): void {
    this.wgHandshakeAge.replace(peers.filter((p) => p.lastHandshakeSec > 0).map((p) => ({ labels: { peer: p.peer }, value: Math.max(0, Math.round(nowSec - p.lastHandshakeSec)) })));
    this.wgRxBytes.replace(peers.map((p) => ({ labels: { peer: p.peer }, value: p.rxBytes })));
    this.wgTxBytes.replace(peers.map((p) => ({ labels: { peer: p.peer }, value: p.txBytes })));
  }

  /** BIRD's sessions and the routes it installed (`learned` undefined and no sessions: no bgp backend runs). */
  setBgp(sessions: readonly BgpSessionInfo[], learned: number | undefined): void {
    const named = sessions.map((s) => ({ s, neighbor: s.neighbor ?? s.name }));
    this.bgpUp.replace(named.map(({ s, neighbor }) => ({ labels: { neighbor }, value: isEstablished(s) ? 1 : 0 })));
    this.bgpState.replace(named.map(({ s, neighbor }) => ({ labels: { neighbor, state: bgpStateOf(s), reason: bgpReasonOf(s) }, value: 1 })));
    this.bgpImported.replace(named.filter(({ s }) => s.routesImported !== undefined).map(({ s, neighbor }) => ({ labels: { neighbor }, value: s.routesImported! })));
    this.bgpExported.replace(named.filter(({ s }) => s.routesExported !== undefined).map(({ s, neighbor }) => ({ labels: { neighbor }, value: s.routesExported! })));
    this.bgpLearned.replace(learned === undefined ? [] : [{ labels: {}, value: learned }]);
  }

  /**
   * Absolute counters read back from a userspace datapath. Prometheus
   * counters only go up, so each call adds the difference from the values
   * seen last time. A value lower than last time means the datapath
   * restarted and counts from 0 again: the new value itself is then the
   * increase since the restart, so nothing already exported is lost or
   * counted twice. Invalid fields (negative, NaN) are ignored and do not
   * move the baseline.
   */
  setDatapathCounters(backend: string, c: DatapathCounters): void {
    const last = this.datapathLast.get(backend);
    const next: DatapathCounters = { ...(last ?? { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0, drops: 0 }) };
    for (const field of DATAPATH_FIELDS) {
      const value = c[field];
      if (!isCount(value)) continue;
      const previous = last?.[field] ?? 0;
      const delta = value >= previous ? value - previous : value;
      this.datapath[field].labels(backend).inc(delta);
      next[field] = value;
    }
    this.datapathLast.set(backend, next);
  }
}

/** Underlay metrics are fed by the guard controller (lib/agent/guard-controller.ts). */
export interface GuardMetrics {
  setUnderlayDrops(reason: 'unknown_source' | 'spoofed_source', intake: string, total: number, family?: 4 | 6): void;
  setTunnelGuardActive(active: boolean): void;
}

/** A finite, non-negative number: anything else cannot be a count, a size or a duration. */
function isCount(n: number): boolean {
  return Number.isFinite(n) && n >= 0;
}
