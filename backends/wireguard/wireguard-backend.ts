/**
 * wireguard (flanneld-compatible): device `flannel-wg` holding
 * `<subnet IP>/32`, MTU external − 80, and per peer a WireGuard peer with
 * endpoint `PublicIP:ListenPort`, allowed IPs = its subnet, the configured
 * PSK and keepalive. This node's public key goes in its lease as
 * `BackendData: {"PublicKey": "<base64>"}`, as flanneld publishes it.
 *
 * Dual stack (EnableIPv6), as flanneld does it: the lease also carries
 * `BackendV6Data: {"PublicKey": ...}` — the same key, from the one key file
 * — and by `Mode` (settings.ts):
 * - separate (default): a second device, `flannel-wg-v6`, listening on
 *   ListenPortV6 (51821), holding `<IPv6 subnet IP>/128`, MTU external − 80;
 *   its peers: endpoint `[PublicIPv6]:ListenPortV6`, key from
 *   BackendV6Data, allowed IPs = the IPv6 subnet. Each device is its own
 *   wireguard-go.
 * - auto, ipv4, ipv6: `flannel-wg` alone holds both addresses; each peer
 *   has the allowed IPs of both its subnets, the key of its BackendV6Data
 *   and one endpoint: `PublicIP:ListenPort` (ipv4), `[PublicIPv6]:ListenPort`
 *   (ipv6), or as flanneld's auto picks it (`autoEndpoint`).
 *
 * Routes differ from flanneld's on purpose: one route per carried peer and
 * family, `<subnet> dev flannel-wg[-v6]` with protocol 125, instead of one
 * route for the whole Network. It is the same datapath (WireGuard drops
 * what no peer's allowed IPs cover), and it lets a peer move to or from
 * another backend by an atomic route replace (live migration). A peer moves
 * here from another backend both nodes run only once every device it is
 * planned on has completed a handshake with it (`establishedPeers`).
 *
 * The engine: where the kernel has WireGuard, twill still runs wireguard-go
 * — kernel WireGuard is configured over generic netlink, which this build
 * does not speak; `start` logs it. Where it has none, wireguard-go is the
 * engine anyway (engine.ts). Its peer table is part of the plan: every peer
 * whose node terminates this backend (it must know a peer's key before the
 * peer sends), given to wireguard-go as a difference on each reconcile.
 */
import type { BackendConfig } from '../../lib/config';
import type { LinkInfo, Netlink } from '../../lib/netlink';
import { isUnsupportedLinkKind } from '../../lib/netlink';
import type { Log } from '../../lib/observe/logger';
import type { WireguardPeerStats } from '../../lib/observe/metrics';
import {
  BackendUnavailableError,
  type AssignedPeers, type Backend, type BackendContext, type BackendCounters, type BackendStart, type EnginePeer, type LocalNode, type Peer, type PlanInput,
} from '../backend';
import type { DeviceState, KernelState, WantedRoute } from '../kernel-state';
import { BACKEND_ROUTE_PROTOCOL } from '../route-protocols';
import { WireguardEngine, engineMissing } from './engine';
import { DEFAULT_KEY_FILE, KeyFileError, loadOrCreateKey, peerPublicKey, type KeyPair } from './keys';
import { autoEndpoint, formatEndpoint } from './endpoint';
import { configLines, greetingRequests, newPeers } from './peer-config';
import { wireguardSettings, type WireguardSettings } from './settings';
import type { DevicePeer } from './uapi';

export const WIREGUARD_DEVICE = 'flannel-wg';
/** flanneld's IPv6 device in Mode separate. */
export const WIREGUARD_V6_DEVICE = 'flannel-wg-v6';
/** IPv4 or IPv6 header (40 at most), UDP 8, WireGuard type, index, nonce 16, tag 16: flanneld's figure. */
export const WIREGUARD_OVERHEAD = 80;
const PROBE_DEVICE = 'twill-wgprobe';
/** How often a new peer's first handshake is looked for, and for how long: past one WireGuard retry (5 s plus jitter). */
const HANDSHAKE_POLL_MS = 100;
const HANDSHAKE_WATCH_MS = 12_000;

/** The device's alias: `twill wireguard ListenPort=51820` (backends/footprint.ts reads it back). */
export function wireguardAlias(port: number): string {
  return `twill wireguard ListenPort=${port}`;
}

/** The IPv6 device's alias: `twill wireguard ListenPortV6=51821`. */
export function wireguardV6Alias(port: number): string {
  return `twill wireguard ListenPortV6=${port}`;
}

export function portOfWireguardAlias(alias: string | undefined): number | undefined {
  const m = /^twill wireguard ListenPort=(\d{1,5})$/.exec(alias ?? '');
  return m ? Number(m[1]) : undefined;
}

/** Where a plan puts this node's IPv6 subnet: nowhere, on `flannel-wg-v6`, or on `flannel-wg` with the IPv4 one. */
export type IPv6Layout = 'none' | 'separate' | 'shared';

export class WireguardBackend implements Backend {
  readonly type = 'wireguard';
  readonly mode = 'userspace';
  readonly routeProtocol = BACKEND_ROUTE_PROTOCOL.wireguard;
  readonly usesReach = false;
  private readonly nl: Netlink;
  private readonly log: Log;
  private readonly engine: WireguardEngine;
  /** wireguard-go of `flannel-wg-v6` (dual stack, Mode separate). */
  private readonly v6Engine: WireguardEngine;
  private keys?: KeyPair;
  private local?: LocalNode;
  /** Fixed by start(): where IPv6 goes on this node. */
  private layout: IPv6Layout = 'none';
  /** IPv4 subnet of a node → its IPv6 subnet on `flannel-wg-v6`, from the last table given to wireguard-go. */
  private v6Entries = new Map<string, string>();
  /** New peers (device and hex key) awaiting their first handshake → until when to look. */
  private readonly awaitingHandshake = new Map<string, number>();
  private handshakeTimer?: NodeJS.Timeout;

  constructor(private settings: WireguardSettings, private readonly ctx: BackendContext) {
    this.nl = ctx.netlink;
    this.log = ctx.log;
    this.engine = new WireguardEngine({ device: WIREGUARD_DEVICE, log: ctx.log, requestReconcile: ctx.requestReconcile });
    this.v6Engine = new WireguardEngine({ device: WIREGUARD_V6_DEVICE, log: ctx.log, requestReconcile: ctx.requestReconcile });
  }

  /** The UAPI socket of this node's wireguard-go. */
  get socketPath(): string {
    return this.engine.socketPath;
  }

  /** Where this node's IPv6 subnet goes (tests, diagnose). */
  get ipv6Layout(): IPv6Layout {
    return this.layout;
  }

  async start(local: LocalNode): Promise<BackendStart> {
    const file = this.ctx.wireguardKeyFile ?? DEFAULT_KEY_FILE;
    if (this.settings.mode === 'ipv6' && !local.publicIPv6) {
      throw new BackendUnavailableError('wireguard', 'the wireguard backend cannot run: Backend.Mode "ipv6" reaches peers over IPv6, ' +
        'but this node has no IPv6 public address (set EnableIPv6 and give the node an IPv6 address, or use Mode "separate" or "ipv4")');
    }
    try {
      const keys = loadOrCreateKey(file);
      this.keys = keys;
      this.log.info(keys.created ? 'wireguard: made a new key pair' : 'wireguard: using the key pair from the key file', { file, publicKey: keys.publicKey });
    } catch (err) {
      if (err instanceof KeyFileError) throw new BackendUnavailableError('wireguard', `the wireguard backend cannot run: ${err.message}`);
      throw err;
    }
    const missing = engineMissing();
    if (missing) throw new BackendUnavailableError('wireguard', `the wireguard backend cannot run: ${missing}`);
    await this.noteKernelWireguard();
    this.local = local;
    this.layout = !local.publicIPv6 ? 'none' : this.settings.mode === 'separate' ? 'separate' : 'shared';
    const data = { PublicKey: this.keys.publicKey };
    // flanneld publishes the one key pair in both: each device of Mode separate uses the key file's key.
    return { backendData: data, ...(this.layout !== 'none' ? { backendV6Data: data } : {}), mtu: this.mtu(local) };
  }

  async prepare(): Promise<LinkInfo> {
    await this.engine.ensure();
    return this.prepareDevice(WIREGUARD_DEVICE, wireguardAlias(this.settings.listenPort));
  }

  /** Mode separate in dual stack: `flannel-wg-v6` and its wireguard-go; undefined otherwise. */
  async prepareIPv6(): Promise<LinkInfo | undefined> {
    if (this.layout !== 'separate') return undefined;
    await this.v6Engine.ensure();
    return this.prepareDevice(WIREGUARD_V6_DEVICE, wireguardV6Alias(this.settings.listenPortV6));
  }

  private async prepareDevice(name: string, alias: string): Promise<LinkInfo> {
    const link = await this.nl.getLink(name);
    if (!link) throw new Error(`${name} is missing although wireguard-go runs; it is restarted on the next reconcile`);
    const mtu = this.mtu(this.local!);
    if (link.mtu !== mtu) await this.nl.setMtu(link.index, mtu);
    if (link.alias !== alias) await this.nl.setAlias(link.index, alias);
    if (!link.up) await this.nl.setLinkUp(link.index);
    return link;
  }

  desired(input: PlanInput, peers: AssignedPeers): KernelState {
    const link = input.device;
    if (!link) throw new Error('the wireguard backend planned without its device');
    const skipped: string[] = [];
    const ownV6 = input.own.ipv6Subnet;
    // The layout start() chose, or (diagnose plans without starting) the one the settings and the lease imply.
    const layout: IPv6Layout = !ownV6 || !input.local.publicIPv6 ? 'none'
      : this.local ? this.layout : this.settings.mode === 'separate' ? 'separate' : 'shared';
    const problemOf = (k: { key: string } | { problem: string }): string | undefined =>
      'problem' in k ? k.problem
        // WireGuard ignores a peer holding its own key: nodes that share one key file would black-hole each other silently.
        : k.key === this.keys?.publicKey ? 'its lease publishes this node\'s own WireGuard public key (do the nodes share one key file? see --wireguard-key-file)'
          : undefined;
    /** The key of `p` on `flannel-wg`: in dual stack with one device its BackendV6Data's (flanneld's choice), else its BackendData's. */
    const mainKey = (p: Peer): { key: string } | { problem: string } => {
      if (layout === 'shared' && p.ipv6Subnet && p.v6Data !== undefined) {
        const k6 = peerPublicKey(p.v6Data);
        if ('key' in k6) return k6;
      }
      return peerPublicKey(p.data);
    };
    /** The endpoint address of `p` on `flannel-wg`, or why it has none. */
    const mainEndpoint = (p: Peer): { ip: string } | { problem: string } => {
      if (layout === 'none' || layout === 'separate' || this.settings.mode === 'ipv4') return { ip: p.publicIP };
      if (this.settings.mode === 'ipv6') return p.publicIPv6 ? { ip: p.publicIPv6 } : { problem: 'its lease has no PublicIPv6, and Backend.Mode "ipv6" reaches peers over IPv6 only' };
      return { ip: autoEndpoint(p.publicIP, p.publicIPv6, input.local.extIface.ipv4 ?? input.local.publicIP, input.local.publicIPv6)! };
    };
    const usable = (p: Peer, report: boolean): { key: string; ip: string } | undefined => {
      const k = mainKey(p);
      const e = mainEndpoint(p);
      const problem = problemOf(k) ?? ('problem' in e ? e.problem : undefined);
      if ('key' in k && 'ip' in e && problem === undefined) return { key: k.key, ip: e.ip };
      if (report) skipped.push(`peer ${p.subnet.toString()} (${p.publicIP}): ${problem}; not carried over wireguard`);
      return undefined;
    };
    const carriedHere = peers.carried.filter((p) => usable(p, true) !== undefined);
    const routes: WantedRoute[] = carriedHere.map((p) => ({ dst: p.subnet.toString(), dev: link.name, ifindex: link.index, onlink: false, peer: p.key }));
    // Carried, leaving (their route stays until another backend's replaces it) and every node that terminates wireguard.
    const everyone = [...peers.carried, ...peers.leaving, ...(peers.terminating ?? [])];
    const table = new Map<string, EnginePeer>();
    const byKey = new Set<string>();
    for (const p of everyone) {
      const u = usable(p, false);
      const subnet = p.subnet.toString();
      if (!u || table.has(subnet) || p.publicIP === input.own.attrs.publicIP) continue;
      if (byKey.has(u.key)) {
        skipped.push(`peer ${subnet} (${p.publicIP}) publishes the public key of another peer; not carried over wireguard`);
        continue;
      }
      byKey.add(u.key);
      const allowedIPs = layout === 'shared' && p.ipv6Subnet ? [subnet, p.ipv6Subnet.toString()] : [subnet];
      table.set(subnet, { subnet, publicIP: u.ip, port: this.settings.listenPort, publicKey: u.key, ...(allowedIPs.length > 1 ? { allowedIPs } : {}) });
    }
    const keepRoutes = peers.leaving.map((p) => p.subnet.toString());
    const v6Subnets = (ps: readonly Peer[]) => ps.flatMap((p) => (p.ipv6Subnet ? [p.ipv6Subnet.toString()] : []));
    const devices: DeviceState[] = [];
    if (layout === 'shared') {
      // One device, both families: each carried peer's IPv6 subnet goes where its IPv4 subnet goes.
      for (const p of carriedHere) {
        if (p.ipv6Subnet && table.get(p.subnet.toString())?.allowedIPs) {
          routes.push({ dst: p.ipv6Subnet.toString(), dev: link.name, ifindex: link.index, onlink: false, peer: p.key });
        }
      }
      keepRoutes.push(...v6Subnets(peers.leaving));
      devices.push({ name: link.name, ifindex: link.index, family: 'dual', addresses: [`${input.own.subnet.ip.toString()}/32`, `${ownV6!.ip.toString()}/128`] });
    } else {
      devices.push({ name: link.name, ifindex: link.index, addresses: [`${input.own.subnet.ip.toString()}/32`] });
    }
    const engine = [...table.values()];
    if (layout === 'separate') {
      const v6 = input.ipv6Device;
      if (!v6) {
        // A reader that does not know flannel-wg-v6 (diagnose before it exists) leaves the IPv6 routes as they are.
        keepRoutes.push(...v6Subnets([...peers.carried, ...peers.leaving]));
      } else {
        const v6Table = this.v6Table(everyone, input, skipped);
        for (const p of carriedHere) {
          const entry = p.ipv6Subnet ? v6Table.get(p.ipv6Subnet.toString()) : undefined;
          if (entry) routes.push({ dst: entry.subnet, dev: v6.name, ifindex: v6.index, onlink: false, peer: p.key });
        }
        keepRoutes.push(...v6Subnets(peers.leaving));
        devices.push({ name: v6.name, ifindex: v6.index, family: 6, addresses: [`${ownV6!.ip.toString()}/128`] });
        engine.push(...v6Table.values());
      }
    }
    return { protocol: this.routeProtocol, routes, devices, keepRoutes, engine, skipped };
  }

  /** The peers of `flannel-wg-v6` (Mode separate): IPv6 subnet → entry, key from BackendV6Data, endpoint [PublicIPv6]:ListenPortV6. */
  private v6Table(everyone: readonly Peer[], input: PlanInput, skipped: string[]): Map<string, EnginePeer> {
    const table = new Map<string, EnginePeer>();
    const byKey = new Set<string>();
    const reported = new Set<string>();
    for (const p of everyone) {
      if (!p.ipv6Subnet || p.publicIP === input.own.attrs.publicIP) continue; // an IPv4-only node
      const dst = p.ipv6Subnet.toString();
      if (table.has(dst)) continue;
      const k = peerPublicKey(p.v6Data);
      const problem = !p.publicIPv6 ? 'its lease has no PublicIPv6'
        : 'problem' in k ? k.problem.replace('BackendData', 'BackendV6Data')
          : k.key === this.keys?.publicKey ? 'its lease publishes this node\'s own WireGuard public key'
            : byKey.has(k.key) ? 'it publishes the IPv6 public key of another peer' : undefined;
      if (problem !== undefined || !('key' in k)) {
        if (!reported.has(dst)) skipped.push(`peer ${p.subnet.toString()} has the IPv6 subnet ${dst} but ${problem}; its IPv6 subnet is not routed over wireguard`);
        reported.add(dst);
        continue;
      }
      byKey.add(k.key);
      table.set(dst, { subnet: dst, publicIP: p.publicIPv6!, port: this.settings.listenPortV6, publicKey: k.key, device: WIREGUARD_V6_DEVICE, peerSubnet: p.subnet.toString() });
    }
    return table;
  }

  /** Gives each wireguard-go the planned key, port and peers: only what differs from what it holds. */
  async setEnginePeers(peers: readonly EnginePeer[]): Promise<void> {
    const v6 = peers.filter((p) => p.device === WIREGUARD_V6_DEVICE);
    // Before either wireguard-go is told: a peer whose IPv4 handshake completes while flannel-wg-v6 does not hold it
    // yet (or cannot be told) must not count as established.
    if (this.layout === 'separate') this.v6Entries = new Map(v6.flatMap((p) => (p.peerSubnet ? [[p.peerSubnet, p.subnet] as const] : [])));
    await this.configureEngine(this.engine, this.settings.listenPort, peers.filter((p) => (p.device ?? WIREGUARD_DEVICE) === WIREGUARD_DEVICE));
    if (this.layout === 'separate') await this.configureEngine(this.v6Engine, this.settings.listenPortV6, v6);
  }

  private async configureEngine(engine: WireguardEngine, listenPort: number, peers: readonly EnginePeer[]): Promise<void> {
    if (!this.keys) throw new Error('wireguard backend used before start()');
    const want = {
      privateKey: this.keys.privateKey,
      listenPort,
      keepalive: this.settings.keepalive,
      ...(this.settings.psk ? { psk: this.settings.psk } : {}),
      peers: peers.map((p) => ({ publicKey: p.publicKey!, endpoint: formatEndpoint(p.publicIP, p.port ?? listenPort), allowedIPs: p.allowedIPs ?? [p.subnet] })),
    };
    const have = await engine.state();
    const added = newPeers(want, have);
    const [greet, settle] = greetingRequests(added, want.keepalive);
    const lines = configLines(want, have);
    if (lines.length) await engine.configure(lines);
    if (greet.length) {
      await engine.configure(greet);
      await engine.configure(settle);
    }
    this.watchHandshakes(engine === this.v6Engine ? WIREGUARD_V6_DEVICE : WIREGUARD_DEVICE, added);
  }

  /**
   * The IPv4 subnets of the peers wireguard-go has completed a handshake
   * with — on `flannel-wg`, and on `flannel-wg-v6` too where that device
   * holds the peer (Mode separate): the assignment moves the peer's both
   * families at once.
   */
  async establishedPeers(): Promise<ReadonlySet<string>> {
    const done = (ps: readonly DevicePeer[]) => new Set(ps.filter((p) => p.lastHandshakeSec > 0).flatMap((p) => p.allowedIPs));
    const v4 = done((await this.engine.state()).peers);
    if (this.layout !== 'separate' || this.v6Entries.size === 0) return v4;
    const v6 = done((await this.v6Engine.state()).peers);
    return new Set([...v4].filter((s) => {
      const six = this.v6Entries.get(s);
      return six === undefined || v6.has(six);
    }));
  }

  /**
   * Asks for a reconcile as soon as a new peer's first handshake completes:
   * the assignment keeps such a peer on another backend until then, and the
   * periodic repair alone would leave it there for a whole interval.
   */
  private watchHandshakes(device: string, keys: readonly string[]): void {
    const until = Date.now() + HANDSHAKE_WATCH_MS;
    for (const k of keys) this.awaitingHandshake.set(`${device} ${k}`, until);
    if (this.awaitingHandshake.size > 0 && !this.handshakeTimer) {
      this.handshakeTimer = setTimeout(() => void this.checkHandshakes(), HANDSHAKE_POLL_MS);
    }
  }

  private async checkHandshakes(): Promise<void> {
    let completed = 0;
    for (const [device, engine] of [[WIREGUARD_DEVICE, this.engine], [WIREGUARD_V6_DEVICE, this.v6Engine]] as const) {
      if (![...this.awaitingHandshake.keys()].some((k) => k.startsWith(`${device} `))) continue;
      try {
        for (const p of (await engine.state()).peers) {
          if (p.lastHandshakeSec > 0 && this.awaitingHandshake.delete(`${device} ${p.publicKey}`)) completed++;
        }
      } catch {
        // wireguard-go restarting: its next start greets the peers again
      }
    }
    const now = Date.now();
    for (const [k, until] of this.awaitingHandshake) if (until <= now) this.awaitingHandshake.delete(k);
    this.handshakeTimer = undefined;
    if (completed > 0) this.ctx.requestReconcile?.(`WireGuard handshake completed with ${completed} new peer(s)`);
    this.watchHandshakes(WIREGUARD_DEVICE, []);
  }

  private stopWatchingHandshakes(): void {
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    this.awaitingHandshake.clear();
  }

  /** wireguard-go's peers as it reports them, of both devices in Mode separate: handshakes and bytes. */
  async devicePeers(): Promise<readonly DevicePeer[]> {
    const main = (await this.engine.state()).peers;
    if (this.layout !== 'separate') return main;
    return [...main, ...(await this.v6Engine.state()).peers];
  }

  /** One entry per peer and device, named by its first allowed IP (its IPv6 subnet on `flannel-wg-v6`). */
  async wireguardPeers(): Promise<readonly WireguardPeerStats[]> {
    return (await this.devicePeers()).map((p) => ({ peer: p.allowedIPs[0] ?? p.endpoint ?? p.publicKey, lastHandshakeSec: p.lastHandshakeSec, rxBytes: p.rxBytes, txBytes: p.txBytes }));
  }

  async counters(): Promise<BackendCounters> {
    let rxBytes = 0;
    let txBytes = 0;
    try {
      for (const p of await this.devicePeers()) {
        rxBytes += p.rxBytes;
        txBytes += p.txBytes;
      }
    } catch {
      // restarting: nothing to report now
    }
    return { rxPackets: 0, txPackets: 0, rxBytes, txBytes, drops: 0 };
  }

  /**
   * A Mode or ListenPortV6 that would change this node's devices while it
   * carries IPv6 cannot be applied in place (ListenPort never can: it is the
   * identity).
   */
  inPlaceRefusal(config: BackendConfig): string | undefined {
    const wanted = wireguardSettings(config);
    if (!this.local) return undefined;
    if (wanted.mode === 'ipv6' && !this.local.publicIPv6) return 'Backend.Mode "ipv6" needs an IPv6 public address on this node (EnableIPv6)';
    if (this.layout === 'none') return undefined; // IPv4 only: every other mode is the one device flannel-wg
    const layout: IPv6Layout = wanted.mode === 'separate' ? 'separate' : 'shared';
    const what = layout !== this.layout ? `Backend.Mode "${wanted.mode}" (this node runs "${this.settings.mode}")`
      : layout === 'separate' && wanted.listenPortV6 !== this.settings.listenPortV6 ? `Backend.ListenPortV6 ${wanted.listenPortV6} (flannel-wg-v6 listens on ${this.settings.listenPortV6})`
        : layout === 'shared' && wanted.mode !== this.settings.mode ? `Backend.Mode "${wanted.mode}" (this node runs "${this.settings.mode}")` : undefined;
    return what === undefined ? undefined
      : `the wireguard backend carries IPv6 here and cannot take ${what} live: its devices and peers' endpoints would change; restart twilld to apply it`;
  }

  /** PSK and keepalive reach wireguard-go on the next reconcile; ListenPort is the identity and never changes in place. */
  reconfigure(config: BackendConfig): void {
    const refusal = this.inPlaceRefusal(config);
    if (refusal) throw new Error(refusal);
    this.settings = wireguardSettings(config);
  }

  async stop(): Promise<void> {
    this.stopWatchingHandshakes();
    this.engine.detach();
    this.v6Engine.detach();
  }

  async teardown(): Promise<void> {
    this.stopWatchingHandshakes();
    await this.v6Engine.destroy();
    await this.engine.destroy();
  }

  /** flanneld's figure for both devices: 80 covers an IPv6 outer header. */
  private mtu(local: LocalNode): number {
    return local.extIface.mtu - WIREGUARD_OVERHEAD;
  }

  /** Says whether the kernel has WireGuard; either way wireguard-go is the engine here. */
  private async noteKernelWireguard(): Promise<void> {
    if (await this.nl.getLink(WIREGUARD_DEVICE)) return; // running already: nothing to learn
    try {
      await this.nl.createWireguard(PROBE_DEVICE);
    } catch (err) {
      if (isUnsupportedLinkKind(err)) {
        this.log.info('wireguard: the kernel has no WireGuard; using wireguard-go');
        return;
      }
      this.log.warn('wireguard: cannot tell whether the kernel has WireGuard; using wireguard-go', { error: (err as Error).message });
      return;
    }
    await this.nl.deleteLink(PROBE_DEVICE).catch(() => undefined);
    this.log.warn('wireguard: the kernel has WireGuard, but this build of twill configures WireGuard only through wireguard-go (kernel configuration over generic netlink is not built); using wireguard-go');
  }
}
