/**
 * wireguard (flanneld-compatible): device `flannel-wg` holding
 * `<subnet IP>/32`, MTU external − 80, and per peer a WireGuard peer with
 * endpoint `PublicIP:ListenPort`, allowed IPs = its subnet, the configured
 * PSK and keepalive. This node's public key goes in its lease as
 * `BackendData: {"PublicKey": "<base64>"}`, as flanneld publishes it.
 *
 * Routes differ from flanneld's on purpose: one route per carried peer,
 * `<subnet> dev flannel-wg` with protocol 125, instead of one route for the
 * whole Network. It is the same datapath (WireGuard drops what no peer's
 * allowed IPs cover), and it lets a peer move to or from another backend by
 * an atomic route replace (live migration).
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
import type { KernelState } from '../kernel-state';
import { BACKEND_ROUTE_PROTOCOL } from '../route-protocols';
import { WireguardEngine, engineMissing } from './engine';
import { DEFAULT_KEY_FILE, KeyFileError, decodeKey, loadOrCreateKey, type KeyPair } from './keys';
import { configLines, greetingRequests, newPeers } from './peer-config';
import { wireguardSettings, type WireguardSettings } from './settings';
import type { DevicePeer } from './uapi';

export const WIREGUARD_DEVICE = 'flannel-wg';
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

export function portOfWireguardAlias(alias: string | undefined): number | undefined {
  const m = /^twill wireguard ListenPort=(\d{1,5})$/.exec(alias ?? '');
  return m ? Number(m[1]) : undefined;
}

/** The public key a peer publishes in its BackendData; a string saying what is wrong when it has none usable. */
export function peerPublicKey(data: unknown): { key: string } | { problem: string } {
  const v = data !== null && typeof data === 'object' ? (data as Record<string, unknown>).PublicKey : undefined;
  if (v === undefined) return { problem: 'its lease has no BackendData.PublicKey' };
  if (typeof v !== 'string') return { problem: `its lease's BackendData.PublicKey is ${JSON.stringify(v)}, not a string` };
  try {
    decodeKey(v);
  } catch (err) {
    return { problem: `its lease's BackendData.PublicKey ${(err as Error).message}` };
  }
  return { key: v.trim() };
}

export class WireguardBackend implements Backend {
  readonly type = 'wireguard';
  readonly mode = 'userspace';
  readonly routeProtocol = BACKEND_ROUTE_PROTOCOL.wireguard;
  readonly usesReach = false;
  private readonly nl: Netlink;
  private readonly log: Log;
  private readonly engine: WireguardEngine;
  private keys?: KeyPair;
  private local?: LocalNode;
  /** New peers (hex key) awaiting their first handshake → until when to look. */
  private readonly awaitingHandshake = new Map<string, number>();
  private handshakeTimer?: NodeJS.Timeout;

  constructor(private settings: WireguardSettings, private readonly ctx: BackendContext) {
    this.nl = ctx.netlink;
    this.log = ctx.log;
    this.engine = new WireguardEngine({ device: WIREGUARD_DEVICE, log: ctx.log, requestReconcile: ctx.requestReconcile });
  }

  /** The UAPI socket of this node's wireguard-go. */
  get socketPath(): string {
    return this.engine.socketPath;
  }

  async start(local: LocalNode): Promise<BackendStart> {
    const file = this.ctx.wireguardKeyFile ?? DEFAULT_KEY_FILE;
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
    return { backendData: { PublicKey: this.keys.publicKey }, mtu: this.mtu(local) };
  }

  async prepare(): Promise<LinkInfo> {
    await this.engine.ensure();
    const link = await this.nl.getLink(WIREGUARD_DEVICE);
    if (!link) throw new Error(`${WIREGUARD_DEVICE} is missing although wireguard-go runs; it is restarted on the next reconcile`);
    const mtu = this.mtu(this.local!);
    if (link.mtu !== mtu) await this.nl.setMtu(link.index, mtu);
    const alias = wireguardAlias(this.settings.listenPort);
    if (link.alias !== alias) await this.nl.setAlias(link.index, alias);
    if (!link.up) await this.nl.setLinkUp(link.index);
    return link;
  }

  desired(input: PlanInput, peers: AssignedPeers): KernelState {
    const link = input.device;
    if (!link) throw new Error('the wireguard backend planned without its device');
    const skipped: string[] = [];
    const keyed = (p: Peer, report: boolean): string | undefined => {
      const k = peerPublicKey(p.data);
      // WireGuard ignores a peer holding its own key: nodes that share one key file would black-hole each other silently.
      const problem = 'problem' in k ? k.problem
        : k.key === this.keys?.publicKey ? 'its lease publishes this node\'s own WireGuard public key (do the nodes share one key file? see --wireguard-key-file)'
          : undefined;
      if ('key' in k && problem === undefined) return k.key;
      if (report) skipped.push(`peer ${p.subnet.toString()} (${p.publicIP}): ${problem}; not carried over wireguard`);
      return undefined;
    };
    const routes = peers.carried.filter((p) => keyed(p, true) !== undefined)
      .map((p) => ({ dst: p.subnet.toString(), dev: link.name, ifindex: link.index, onlink: false, peer: p.key }));
    // Carried, leaving (their route stays until another backend's replaces it) and every node that terminates wireguard.
    const table = new Map<string, EnginePeer>();
    const byKey = new Set<string>();
    for (const p of [...peers.carried, ...peers.leaving, ...(peers.terminating ?? [])]) {
      const publicKey = keyed(p, false);
      const subnet = p.subnet.toString();
      if (!publicKey || table.has(subnet) || p.publicIP === input.own.attrs.publicIP) continue;
      if (byKey.has(publicKey)) {
        skipped.push(`peer ${subnet} (${p.publicIP}) publishes the public key of another peer; not carried over wireguard`);
        continue;
      }
      byKey.add(publicKey);
      table.set(subnet, { subnet, publicIP: p.publicIP, port: this.settings.listenPort, publicKey });
    }
    return {
      protocol: this.routeProtocol,
      routes,
      devices: [{ name: link.name, ifindex: link.index, addresses: [`${input.own.subnet.ip.toString()}/32`] }],
      keepRoutes: peers.leaving.map((p) => p.subnet.toString()),
      engine: [...table.values()],
      skipped,
    };
  }

  /** Gives wireguard-go the planned key, port and peers: only what differs from what it holds. */
  async setEnginePeers(peers: readonly EnginePeer[]): Promise<void> {
    if (!this.keys) throw new Error('wireguard backend used before start()');
    const want = {
      privateKey: this.keys.privateKey,
      listenPort: this.settings.listenPort,
      keepalive: this.settings.keepalive,
      ...(this.settings.psk ? { psk: this.settings.psk } : {}),
      peers: peers.map((p) => ({ publicKey: p.publicKey!, endpoint: `${p.publicIP}:${p.port ?? this.settings.listenPort}`, allowedIPs: [p.subnet] })),
    };
    const have = await this.engine.state();
    const added = newPeers(want, have);
    const [greet, settle] = greetingRequests(added, want.keepalive);
    const lines = configLines(want, have);
    if (lines.length) await this.engine.configure(lines);
    if (greet.length) {
      await this.engine.configure(greet);
      await this.engine.configure(settle);
    }
    this.watchHandshakes(added);
  }

  /** The subnets of the peers wireguard-go has completed a handshake with. */
  async establishedPeers(): Promise<ReadonlySet<string>> {
    return new Set((await this.devicePeers()).filter((p) => p.lastHandshakeSec > 0).flatMap((p) => p.allowedIPs));
  }

  /**
   * Asks for a reconcile as soon as a new peer's first handshake completes:
   * the assignment keeps such a peer on another backend until then, and the
   * periodic repair alone would leave it there for a whole interval.
   */
  private watchHandshakes(keys: readonly string[]): void {
    const until = Date.now() + HANDSHAKE_WATCH_MS;
    for (const k of keys) this.awaitingHandshake.set(k, until);
    if (this.awaitingHandshake.size > 0 && !this.handshakeTimer) {
      this.handshakeTimer = setTimeout(() => void this.checkHandshakes(), HANDSHAKE_POLL_MS);
    }
  }

  private async checkHandshakes(): Promise<void> {
    let completed = 0;
    try {
      for (const p of (await this.engine.state()).peers) {
        if (p.lastHandshakeSec > 0 && this.awaitingHandshake.delete(p.publicKey)) completed++;
      }
    } catch {
      // wireguard-go restarting: its next start greets the peers again
    }
    const now = Date.now();
    for (const [k, until] of this.awaitingHandshake) if (until <= now) this.awaitingHandshake.delete(k);
    this.handshakeTimer = undefined;
    if (completed > 0) this.ctx.requestReconcile?.(`WireGuard handshake completed with ${completed} new peer(s)`);
    this.watchHandshakes([]);
  }

  private stopWatchingHandshakes(): void {
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    this.awaitingHandshake.clear();
  }

  /** wireguard-go's peers as it reports them: handshakes and bytes. */
  async devicePeers(): Promise<readonly DevicePeer[]> {
    return (await this.engine.state()).peers;
  }

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

  /** PSK and keepalive reach wireguard-go on the next reconcile; ListenPort is the identity and never changes in place. */
  reconfigure(config: BackendConfig): void {
    this.settings = wireguardSettings(config);
  }

  async stop(): Promise<void> {
    this.stopWatchingHandshakes();
    this.engine.detach();
  }

  async teardown(): Promise<void> {
    this.stopWatchingHandshakes();
    await this.engine.destroy();
  }

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
