/**
 * bgp (Calico's model): no encapsulation; every node announces its pod
 * subnet over BGP and learns the others', and BIRD 2's kernel protocol
 * installs the learned routes itself, as routes of protocol `bird` (12)
 * with metric BIRD_METRIC. They are BIRD's: twill neither writes nor
 * removes them while BIRD runs, so this backend's plan owns no route.
 *
 * What twill does own is the choice: a peer is carried by bgp only while
 * BIRD's route to its subnet is in the kernel (`learnedRoutes`, asked by
 * the assignment before every plan). Until then — and as soon as it goes —
 * the peer stays on, or moves to, the Fallback (or, during a migration, the
 * backend it came from). Those backends' routes have metric 0 and so win
 * over BIRD's while both exist: moving a peer to bgp is removing twill's
 * route, and moving it away is adding one, each a single kernel change.
 *
 * BIRD runs once per node (bird-engine.ts), configured from the plan's
 * inputs on every `prepare`: a full mesh with every node whose lease
 * terminates bgp (`Mesh`), plus the listed `Peers` on this node's link.
 * It is adopted across twilld restarts, so a restart costs no route.
 */
import { IP, IPNet } from '../../lib/ip';
import type { Lease } from '../../lib/subnet';
import type { Log } from '../../lib/observe/logger';
import { byCodeUnit } from '../../lib/order';
import type { BackendConfig } from '../../lib/config';
import type { Netlink, Unsubscribe } from '../../lib/netlink';
import { BackendUnavailableError, type AssignedPeers, type Backend, type BgpSessionInfo, type BackendContext, type BackendStart, type LocalNode, type Peer, type PlanInput } from '../backend';
import type { KernelState } from '../kernel-state';
import { birdConfig, peerProtocolName, type BirdPeer } from './bird-config';
import { BirdEngine, birdMissing } from './bird-engine';
import { bgpSettings, type BgpSettings } from './settings';

/** Linux's RTPROT_BIRD: the protocol number of the routes BIRD installs. */
export const RTPROT_BIRD = 12;
/** BIRD's kernel metric: above twill's own routes (0), so a tunnel route wins while a peer moves. */
export const BIRD_METRIC = 32;
/** Route events from BIRD come in bursts (a session's routes at once): one reconcile for a burst. */
const ROUTE_EVENT_DEBOUNCE_MS = 50;

/** The ASN a peer publishes in its BackendData; a string saying what is wrong when it has none usable. */
export function peerAsn(data: unknown, fallback: number): { asn: number } | { problem: string } {
  const v = data !== null && typeof data === 'object' ? (data as Record<string, unknown>).ASN : undefined;
  if (v === undefined) return { asn: fallback };
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 4294967294) return { problem: `its lease's BackendData.ASN is ${JSON.stringify(v)}, not an AS number` };
  return { asn: v };
}

/** The BIRD neighbours of this node: the mesh, then the listed peers on its link. */
export function birdPeers(settings: BgpSettings, terminating: readonly Peer[], onLink: (ip: string) => boolean): { peers: BirdPeer[]; skipped: string[] } {
  const peers: BirdPeer[] = [];
  const skipped: string[] = [];
  const taken = new Set<string>();
  for (const p of settings.peers) {
    if (!onLink(p.ip)) continue;
    taken.add(p.ip);
    peers.push({ name: peerProtocolName('peer', p.ip), ip: p.ip, asn: p.asn, ...(p.password ?? settings.password ? { password: p.password ?? settings.password } : {}) });
  }
  if (settings.mesh) {
    for (const p of [...terminating].sort((a, b) => byCodeUnit(a.publicIP, b.publicIP))) {
      if (taken.has(p.publicIP)) continue;
      const asn = peerAsn(p.data, settings.asn);
      if ('problem' in asn) {
        skipped.push(`bgp: peer ${p.subnet.toString()} (${p.publicIP}): ${asn.problem}; no BGP session with it`);
        continue;
      }
      taken.add(p.publicIP);
      peers.push({ name: peerProtocolName('mesh', p.publicIP), ip: p.publicIP, asn: asn.asn, only: p.subnet.toString(), ...(settings.password ? { password: settings.password } : {}) });
    }
  }
  return { peers, skipped };
}

export class BgpBackend implements Backend {
  readonly type = 'bgp';
  readonly mode = 'kernel';
  readonly routeProtocol = undefined;
  readonly usesReach = false;
  private readonly nl: Netlink;
  private readonly log: Log;
  private readonly engine: BirdEngine;
  private local?: LocalNode;
  private linkNets: IPNet[] = [];
  private unsubscribe?: Unsubscribe;
  private eventTimer?: NodeJS.Timeout;
  private lastSkipped: string[] = [];

  constructor(private settings: BgpSettings, private readonly ctx: BackendContext) {
    this.nl = ctx.netlink;
    this.log = ctx.log;
    this.engine = new BirdEngine({ log: ctx.log, requestReconcile: ctx.requestReconcile });
  }

  get socketPath(): string {
    return this.engine.socketPath;
  }

  async start(local: LocalNode): Promise<BackendStart> {
    const missing = birdMissing();
    if (missing) throw new BackendUnavailableError('bgp', `the bgp backend cannot run: ${missing}`);
    const addrs = await this.nl.listAddresses(local.extIface.index, 4);
    if (!addrs.some((a) => a.address === local.publicIP)) {
      const have = addrs.map((a) => a.address).join(', ') || 'none';
      throw new BackendUnavailableError('bgp',
        `the bgp backend cannot run: the public IP ${local.publicIP} is not an address of ${local.extIface.name} (it has ${have}); ` +
        'BGP next hops are public IPs, so a NAT in between would swallow the traffic. Use --public-ip with the interface\'s own address, or a tunnel backend');
    }
    this.linkNets = addrs.map((a) => IPNet.parse(a.cidr, { allowHostBits: true }));
    this.local = local;
    await this.watchRoutes();
    return { backendData: { ASN: this.settings.asn }, mtu: local.extIface.mtu };
  }

  async prepare(own: Lease, peers: AssignedPeers, network?: IPNet): Promise<undefined> {
    if (!network) throw new Error('the bgp backend carries IPv4 only; the network config has no Network');
    // A mesh peer may announce its own subnet only (bird-config.ts `only`): one that is not a subnet of
    // the network apart from this node's cannot be, and gets no session rather than a config BIRD refuses.
    const fits = (p: Peer) => network.covers(p.subnet) && p.subnet.prefixLen > network.prefixLen && !p.subnet.overlaps(own.subnet);
    const terminating = peers.terminating ?? [];
    const { peers: neighbours, skipped } = birdPeers(this.settings, terminating.filter(fits), (ip) => this.onLink(ip));
    for (const p of terminating.filter((q) => !fits(q))) skipped.push(`bgp: peer ${p.subnet.toString()} (${p.publicIP}) is not a subnet of ${network.toString()} apart from this node's ${own.subnet.toString()}; no BGP session with it`);
    this.lastSkipped = skipped;
    await this.engine.ensure(birdConfig({
      routerId: this.local!.publicIP,
      asn: this.settings.asn,
      ownSubnet: own.subnet.toString(),
      network: network.toString(),
      peers: neighbours,
      gracefulRestart: this.settings.gracefulRestart,
      kernelMetric: BIRD_METRIC,
      ...(this.settings.holdTime !== undefined ? { holdTime: this.settings.holdTime } : {}),
    }));
    return undefined;
  }

  desired(_input: PlanInput, _peers: AssignedPeers): KernelState {
    return { routes: [], devices: [], keepRoutes: [], skipped: this.lastSkipped };
  }

  /** The subnets BIRD has a route to in the kernel now (inside the pod network). */
  async learnedRoutes(network?: IPNet): Promise<ReadonlySet<string>> {
    const routes = await this.nl.listRoutes({ family: 4, protocol: RTPROT_BIRD });
    return new Set(routes.filter((r) => r.type === 'unicast' && (!network || network.covers(IPNet.parse(r.dst)))).map((r) => r.dst));
  }

  async bgpSessions(): Promise<readonly BgpSessionInfo[]> {
    return this.engine.sessions();
  }

  /** Peers read this node's ASN from its lease: a new one is published, and they follow. */
  reconfigure(config: BackendConfig): { backendData: unknown } {
    this.settings = bgpSettings(config);
    return { backendData: { ASN: this.settings.asn } };
  }

  async stop(): Promise<void> {
    this.unwatch();
    this.engine.detach();
  }

  async teardown(): Promise<void> {
    this.unwatch();
    await this.engine.destroy();
  }

  private onLink(ip: string): boolean {
    const addr = IP.parse(ip);
    return this.linkNets.some((n) => n.contains(addr));
  }

  /** BIRD adding or withdrawing a route is what moves a peer to or from bgp: reconcile then, not at the next repair. */
  private async watchRoutes(): Promise<void> {
    if (this.unsubscribe) return;
    try {
      this.unsubscribe = await this.nl.subscribe(['ipv4-route'], (ev) => {
        if (ev.type !== 'resync' && (ev.type !== 'route' || ev.route.protocol !== RTPROT_BIRD)) return;
        if (this.eventTimer) return;
        this.eventTimer = setTimeout(() => {
          this.eventTimer = undefined;
          this.ctx.requestReconcile?.('BGP routes changed');
        }, ROUTE_EVENT_DEBOUNCE_MS);
      });
    } catch (err) {
      this.log.warn('bgp: cannot watch BIRD\'s routes; peers move to or from bgp at the next repair instead', { error: (err as Error).message });
    }
  }

  private unwatch(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    if (this.eventTimer) clearTimeout(this.eventTimer);
    this.eventTimer = undefined;
  }
}
