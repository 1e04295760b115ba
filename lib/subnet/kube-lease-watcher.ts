/**
 * Every Node that is a peer, as leases (kube-lease.ts), kept current by a
 * list and a watch of all Nodes, as flanneld's informer does (no selector).
 *
 * The agent reads the whole state through `leases()` on every reconcile
 * (level-triggered), so this only has to be exact, not clever: a listing
 * replaces what is known (a Node gone from it is removed), a watch event
 * updates one Node. The watch is opened again from the last resourceVersion
 * when the server ends it; a 410 (the version is too old) or a dropped
 * connection makes it list again, with backoff while the API server is out
 * of reach. Losing and regaining contact is reported once each through
 * `onConnectivity`, never once per retry.
 *
 * A Node that cannot be a peer is warned about once per Node and reason
 * (kubelets update Nodes every few seconds; the warning is not repeated for
 * each update). A "changed" event is emitted only when the lease differs,
 * not on each heartbeat.
 */
import { setTimeout as sleep } from 'timers/promises';
import type { NetworkConfig } from '../config';
import { GoneError, type FlannelAnnotations, type KubeClient, type KubeNode, type NodeWatchEvent } from '../kube';
import type { Lease, LeaseEvent } from './lease';
import type { LeaseView, LeaseWatcherHooks } from './lease-watcher';
import { encodeLeaseAttrs } from './lease-codec';
import { NodeSkip, nodeToLease } from './kube-lease';
import { Backoff } from './backoff';
import { callListener } from './listeners';

/** A watch the server ends sooner than this after it opened counts as a failure (backoff), so a server that closes at once is not hammered. */
const SHORT_WATCH_MS = 1000;

/** The calls the watcher makes (a KubeClient; tests give a scripted one). */
export type NodeSource = Pick<KubeClient, 'listNodes' | 'watchNodes'>;

export class KubeLeaseWatcher implements LeaseView {
  private readonly byNode = new Map<string, Lease>();
  private readonly byKey = new Map<string, Lease>();
  /** Lease key → the Node holding it. */
  private readonly keyOwner = new Map<string, string>();
  /** Nodes skipped because another Node holds their podCIDR: looked at again when it frees it. */
  private readonly collided = new Map<string, KubeNode>();
  /** Node → the reason last warned about. */
  private readonly warned = new Map<string, string>();
  private readonly abort = new AbortController();
  private running?: Promise<void>;
  private connected = true;

  constructor(
    private readonly client: NodeSource,
    private readonly names: FlannelAnnotations,
    private readonly config: NetworkConfig,
    private readonly hooks: LeaseWatcherHooks,
    private readonly backoff = new Backoff(500, 30_000),
    /** This node's own Node, handed over as each version of it arrives (undefined: deleted or not listed). */
    private readonly own?: { readonly name: string; onNode(node: KubeNode | undefined): void },
  ) {}

  /** Resolves once the first listing is applied; until then list failures are retried (reported once). Rejects only if stopped first. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.running = this.run(resolve).then(() => reject(new Error('the Node watch was stopped before the first listing')));
    });
  }

  leases(): ReadonlyMap<string, Lease> {
    return this.byKey;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  private async run(listed: () => void): Promise<void> {
    const signal = this.abort.signal;
    let rv: string | undefined;
    let reason = 'start-up';
    while (!signal.aborted) {
      try {
        if (rv === undefined) {
          const list = await this.client.listNodes(signal);
          this.applyListing(list.items);
          rv = list.resourceVersion;
          this.setConnected(true);
          this.hooks.onResync?.(reason);
          listed();
        }
        const opened = Date.now();
        const end = await this.client.watchNodes(rv, (ev) => this.applyEvent(ev), signal);
        rv = end.resourceVersion;
        if (Date.now() - opened < SHORT_WATCH_MS) await sleep(this.backoff.next(), undefined, { signal });
        else this.backoff.reset();
      } catch (err) {
        if (signal.aborted) break;
        rv = undefined;
        if (err instanceof GoneError) {
          reason = 'the watch fell too far behind (410 Gone)';
        } else {
          reason = 'contact with the API server regained';
          this.setConnected(false, err as Error);
        }
        await sleep(this.backoff.next(), undefined, { signal }).catch(() => undefined);
      }
    }
  }

  private setConnected(up: boolean, error?: Error): void {
    if (up === this.connected) return;
    this.connected = up;
    if (up) this.backoff.reset();
    this.call(() => this.hooks.onConnectivity?.(up, error));
  }

  private applyListing(items: readonly KubeNode[]): void {
    const events: LeaseEvent[] = [];
    const listed = new Set(items.map((n) => n.metadata.name));
    for (const name of [...this.byNode.keys()]) if (!listed.has(name)) events.push(...this.forget(name));
    for (const name of [...this.warned.keys()]) if (!listed.has(name)) this.warned.delete(name);
    for (const name of [...this.collided.keys()]) if (!listed.has(name)) this.collided.delete(name);
    for (const node of items) events.push(...this.applyNode(node));
    this.emit(events);
    if (this.own) {
      const own = this.own;
      this.call(() => own.onNode(items.find((n) => n.metadata.name === own.name)));
    }
  }

  /** Never throws: the client would end the watch with it. */
  private applyEvent(ev: NodeWatchEvent): void {
    if (ev.type === 'BOOKMARK') return;
    try {
      this.emit(ev.type === 'DELETED' ? this.forget(ev.node.metadata.name) : this.applyNode(ev.node));
      const own = this.own;
      if (own && ev.node.metadata.name === own.name) this.call(() => own.onNode(ev.type === 'DELETED' ? undefined : ev.node));
    } catch (err) {
      this.call(() => this.hooks.onWarning(`cannot apply a Node ${ev.type} event: ${(err as Error).message}`));
    }
  }

  private applyNode(node: KubeNode): LeaseEvent[] {
    const name = node.metadata.name;
    let lease: Lease | undefined;
    try {
      lease = nodeToLease(node, this.names, this.config);
      const owner = this.keyOwner.get(lease.key);
      if (owner !== undefined && owner !== name) {
        this.collided.set(name, node);
        throw new NodeSkip(name, `its podCIDR ${lease.subnet.toString()} is Node ${JSON.stringify(owner)}'s too`);
      }
      this.collided.delete(name);
      this.warned.delete(name);
    } catch (err) {
      const message = err instanceof NodeSkip ? err.message : `skipping Node ${JSON.stringify(name.slice(0, 80))}: ${(err as Error).message}`;
      if (this.warned.get(name) !== message) {
        this.warned.set(name, message);
        this.call(() => this.hooks.onWarning(message));
      }
      lease = undefined;
    }
    return this.set(name, lease);
  }

  private forget(name: string): LeaseEvent[] {
    this.warned.delete(name);
    this.collided.delete(name);
    return this.set(name, undefined);
  }

  private set(name: string, lease: Lease | undefined): LeaseEvent[] {
    const prev = this.byNode.get(name);
    if (prev) {
      this.byKey.delete(prev.key);
      this.keyOwner.delete(prev.key);
      this.byNode.delete(name);
    }
    if (lease) {
      this.byNode.set(name, lease);
      this.byKey.set(lease.key, lease);
      this.keyOwner.set(lease.key, name);
    }
    const events: LeaseEvent[] = [];
    if (prev && (!lease || prev.key !== lease.key)) events.push({ type: 'removed', lease: prev });
    if (lease && (!prev || prev.key !== lease.key)) events.push({ type: 'added', lease });
    else if (lease && prev && encodeLeaseAttrs(prev.attrs) !== encodeLeaseAttrs(lease.attrs)) events.push({ type: 'changed', lease, previous: prev });
    // A freed podCIDR goes to a Node that was skipped for sharing it.
    if (prev && (!lease || prev.key !== lease.key)) {
      for (const [other, node] of [...this.collided]) {
        if (other !== name) events.push(...this.applyNode(node));
      }
    }
    return events;
  }

  private emit(events: LeaseEvent[]): void {
    if (events.length) this.call(() => this.hooks.onEvents(events));
  }

  private call(listener: () => void): void {
    callListener(listener, 'a listener of the Node watch', (m) => this.hooks.onWarning(m));
  }
}
