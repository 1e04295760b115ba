/**
 * The subnet manager for `--kube-subnet-mgr`: Kubernetes Nodes instead of
 * etcd, compatible with flanneld's (docs/flanneld-kube-mode.md).
 *
 * - The node's name: $NODE_NAME, else the Pod $POD_NAMESPACE/$POD_NAME's
 *   spec.nodeName.
 * - The network config: the `--net-config-path` file, watched (flanneld
 *   reads it once) so that a changed ConfigMap migrates live.
 * - The lease: the own Node's podCIDR (it must lie inside Network), and the
 *   lease attributes as flanneld's annotations, written by a strategic
 *   merge patch of nodes/<name>/status holding only what differs, and only
 *   when something does. While the Node has no podCIDR the manager waits
 *   (one log line) where flanneld fails.
 * - The leases: every Node, listed and watched (kube-lease-watcher.ts).
 *
 * A Kubernetes "lease" never expires: it lives as long as the Node.
 */
import { setTimeout as sleep } from 'timers/promises';
import type { NetworkConfig } from '../config';
import type { IPNet } from '../ip';
import type { Log } from '../observe/logger';
import type { FlannelAnnotations, KubeClient, KubeNode } from '../kube';
import { isAbortError } from '../kube';
import type { Lease, LeaseAttrs } from './lease';
import type { LeaseView, LeaseWatcherHooks } from './lease-watcher';
import type { NetworkConfigWatch, NetworkConfigWatchHooks, SubnetManager } from './manager';
import type { PreviousSubnets } from './subnet-file';
import { formatSubnetKey } from './lease-codec';
import { annotationDiff, leaseAnnotations, nodeSubnets, outsideNetworkMessage, PodCidrOutsideNetworkError } from './kube-lease';
import { KubeLeaseWatcher } from './kube-lease-watcher';
import { NetConfFile } from './net-conf-file';

/** How the agent names its Node, as flanneld reads it from the environment. */
export type NodeIdentity = { readonly nodeName: string } | { readonly podName: string; readonly podNamespace: string };

export interface KubeManagerOptions {
  readonly client: KubeClient;
  readonly annotations: FlannelAnnotations;
  readonly identity: NodeIdentity;
  readonly netConfPath: string;
  readonly log: Log;
  /** How often a Node without a podCIDR is looked at again (default 2 s). */
  readonly podCidrPollMs?: number;
  /**
   * flanneld's --set-node-network-unavailable (default true): once the
   * node runs, set its NetworkUnavailable condition to False, which lifts
   * the node.kubernetes.io/network-unavailable taint some cloud providers
   * put on new Nodes.
   */
  readonly setNodeNetworkUnavailable?: boolean;
  /** The own Node came back with another podCIDR (deleted and registered again): the agent publishes the new subnet. */
  readonly onOwnLeaseChanged?: (lease: Lease, previous: Lease) => void;
}

/** A configuration fault that waiting cannot cure (the agent exits with it). */
export class KubeSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KubeSetupError';
  }
}

export class KubeSubnetManager implements SubnetManager {
  readonly store = 'the Kubernetes API';
  private readonly netConf: NetConfFile;
  private readonly abort = new AbortController();
  private nodeName?: string;
  private own?: Lease;
  /** The attributes to publish: ahead of `own.attrs` while a patch is on its way or failed (own.attrs is what the agent compares with). */
  private desired?: LeaseAttrs;
  /** The own Node as last seen by the watch. */
  private ownNode?: KubeNode;
  /** Patches of the own Node, one at a time, so an older one never lands after a newer one. */
  private publishing: Promise<unknown> = Promise.resolve();
  private saidDeleted = false;
  private watcher?: KubeLeaseWatcher;
  private readonly configWatches = new Set<NetworkConfigWatch>();

  constructor(private readonly opts: KubeManagerOptions) {
    this.netConf = new NetConfFile(opts.netConfPath);
  }

  get configSource(): string {
    return this.opts.netConfPath;
  }

  readNetworkConfig(): Promise<{ text: string; revision: bigint } | undefined> {
    return this.netConf.read();
  }

  ownLease(): Lease | undefined {
    return this.own;
  }

  /** Never: the lease lasts as long as the Node. */
  leaseExpiry(): Date | undefined {
    return undefined;
  }

  async acquireLease(config: NetworkConfig, attrs: LeaseAttrs, _previous: PreviousSubnets): Promise<Lease> {
    const name = await this.resolveNodeName();
    const node = await this.nodeWithPodCidr(name);
    const { subnet, ipv6Subnet } = nodeSubnets(node);
    if (!subnet) throw new KubeSetupError(`Node "${name}" has no IPv4 podCIDR (${JSON.stringify(node.spec.podCIDRs ?? node.spec.podCIDR)}); twill needs one`);
    if (config.network && !config.network.covers(subnet)) throw new PodCidrOutsideNetworkError(outsideNetworkMessage(name, config, subnet));
    if (ipv6Subnet && config.ipv6Network && !config.ipv6Network.covers(ipv6Subnet)) {
      throw new PodCidrOutsideNetworkError(`subnet "${config.ipv6Network.toString()}" specified in the flannel net config doesn't contain "${ipv6Subnet.toString()}" IPv6 PodCIDR of the "${name}" node`);
    }
    const v6 = ipv6Subnet && config.enableIPv6 ? ipv6Subnet : undefined;
    this.desired = attrs;
    const patched = await this.serially(() => this.publish(name, node, attrs));
    this.own = {
      key: formatSubnetKey({ subnet, ipv6Subnet: v6 }),
      subnet,
      ...(v6 ? { ipv6Subnet: v6 } : {}),
      attrs,
      modRevision: revisionOf(patched),
    };
    return this.own;
  }

  async updateLeaseAttrs(attrs: LeaseAttrs): Promise<void> {
    const own = this.own;
    const name = this.nodeName;
    if (!own || !name) throw new Error('no lease yet: acquireLease first');
    this.desired = attrs;
    const patched = await this.serially(async () => this.publish(name, await this.opts.client.getNode(name, this.abort.signal), attrs));
    this.own = { ...(this.own ?? own), attrs, modRevision: revisionOf(patched) };
  }

  async watchLeases(config: NetworkConfig, hooks: LeaseWatcherHooks): Promise<LeaseView> {
    if (this.abort.signal.aborted) throw new Error('the subnet manager is closed; cannot watch the Nodes');
    const watcher = new KubeLeaseWatcher(this.opts.client, this.opts.annotations, config, hooks, undefined,
      this.nodeName ? { name: this.nodeName, onNode: (node) => this.ownNodeSeen(node, config) } : undefined);
    this.watcher = watcher;
    await watcher.start();
    if (this.opts.setNodeNetworkUnavailable && this.nodeName) await this.markNetworkAvailable(this.nodeName);
    return watcher;
  }

  /** flanneld's CompleteLease: a failure is a warning, as the datapath works without it. */
  private async markNetworkAvailable(name: string): Promise<void> {
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    try {
      await this.opts.client.patchNodeStatus(name, {
        status: {
          conditions: [{
            type: 'NetworkUnavailable', status: 'False', reason: 'FlannelIsUp', message: 'Flannel is running on this node (twill)',
            lastTransitionTime: now, lastHeartbeatTime: now,
          }],
        },
      }, 'strategic', this.abort.signal);
    } catch (err) {
      if (!this.abort.signal.aborted) this.opts.log.warn(`cannot set Node "${name}"'s NetworkUnavailable condition to False: ${(err as Error).message}`);
    }
  }

  async watchNetworkConfig(fromRevision: bigint, hooks: NetworkConfigWatchHooks): Promise<NetworkConfigWatch> {
    if (this.abort.signal.aborted) throw new Error('the subnet manager is closed; cannot watch the network config');
    const w = this.netConf.watch(fromRevision, hooks);
    const watch: NetworkConfigWatch = {
      stop: async () => {
        this.configWatches.delete(watch);
        await w.stop();
      },
    };
    this.configWatches.add(watch);
    return watch;
  }

  isSetupError(err: unknown): boolean {
    return err instanceof KubeSetupError;
  }

  describeError(err: unknown): string {
    return err instanceof Error ? err.message : String(err);
  }

  /** Stops watches and waits; the annotations stay on the Node, so a restart finds them. */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.all([...this.configWatches].map((w) => w.stop()));
    await this.watcher?.stop();
    this.opts.client.close();
  }

  /**
   * The own Node changed. Annotations someone removed or rewrote are put
   * back (peers would otherwise drop this node); a Node deleted and
   * registered again with another podCIDR becomes the new lease, as a lost
   * etcd lease is taken back in etcd mode.
   */
  private ownNodeSeen(node: KubeNode | undefined, config: NetworkConfig): void {
    const own = this.own;
    const name = this.nodeName;
    if (!own || !name || this.abort.signal.aborted) return;
    if (!node) {
      if (!this.saidDeleted) this.opts.log.warn(`Node "${name}" is gone from the API; peers drop this node until it is registered again, and twilld publishes itself then`);
      this.saidDeleted = true;
      return;
    }
    this.saidDeleted = false;
    this.ownNode = node;
    let subnet: IPNet | undefined;
    try {
      subnet = nodeSubnets(node).subnet;
    } catch {
      return;
    }
    if (!subnet) return; // no podCIDR yet: the next version of the Node brings it
    if (!subnet.equals(own.subnet) && config.network?.covers(subnet)) {
      const lease: Lease = { ...own, key: formatSubnetKey({ subnet }), subnet, ipv6Subnet: undefined };
      this.opts.log.warn(`Node "${name}" now has podCIDR ${subnet.toString()} (was ${own.subnet.toString()}); taking it as this node's subnet`);
      this.own = lease;
      this.opts.onOwnLeaseChanged?.(lease, own);
    }
    const desired = this.desired ?? own.attrs;
    if (Object.keys(annotationDiff(leaseAnnotations(desired, this.opts.annotations, node.metadata.annotations), node.metadata.annotations)).length === 0) return;
    void this.serially(async () => {
      const latest = this.ownNode;
      if (!latest || this.abort.signal.aborted) return;
      const diff = annotationDiff(leaseAnnotations(this.desired ?? own.attrs, this.opts.annotations, latest.metadata.annotations), latest.metadata.annotations);
      if (Object.keys(diff).length === 0) return;
      this.opts.log.warn(`Node "${name}" lost annotations twilld publishes (${Object.keys(diff).join(', ')}); writing them back`);
      await this.opts.client.patchNodeStatus(name, { metadata: { annotations: diff } }, 'strategic', this.abort.signal);
    }).catch((err: Error) => {
      if (!this.abort.signal.aborted) this.opts.log.warn(`cannot write back Node "${name}"'s annotations; will try at its next change: ${err.message}`);
    });
  }

  private serially<T>(job: () => Promise<T>): Promise<T> {
    const run = this.publishing.then(job, job);
    this.publishing = run.catch(() => undefined);
    return run;
  }

  private async resolveNodeName(): Promise<string> {
    if (this.nodeName) return this.nodeName;
    const id = this.opts.identity;
    if ('nodeName' in id) {
      this.nodeName = id.nodeName;
      return id.nodeName;
    }
    const pod = await this.opts.client.getPod(id.podNamespace, id.podName, this.abort.signal);
    if (!pod.nodeName) throw new KubeSetupError(`Pod ${id.podNamespace}/${id.podName} has no spec.nodeName; set NODE_NAME instead`);
    this.nodeName = pod.nodeName;
    return pod.nodeName;
  }

  /**
   * The Node, once it has a podCIDR. flanneld fails at once when it has
   * none; the node IPAM controller may simply not have got to it yet, so
   * this waits, saying so once.
   */
  private async nodeWithPodCidr(name: string): Promise<KubeNode> {
    let said = false;
    for (;;) {
      const node = await this.opts.client.getNode(name, this.abort.signal);
      if (node.spec.podCIDR || (node.spec.podCIDRs && node.spec.podCIDRs.length > 0)) {
        if (said) this.opts.log.info(`Node "${name}" has podCIDR ${node.spec.podCIDRs?.join(',') || node.spec.podCIDR}; continuing`);
        return node;
      }
      if (!said) {
        this.opts.log.warn(`waiting for Node "${name}" to be assigned a podCIDR (spec.podCIDR is empty; is kube-controller-manager running with --allocate-node-cidrs?)`);
        said = true;
      }
      try {
        await sleep(this.opts.podCidrPollMs ?? 2000, undefined, { signal: this.abort.signal });
      } catch (err) {
        if (isAbortError(err)) throw new Error('the subnet manager was closed while waiting for a podCIDR');
        throw err;
      }
    }
  }

  /** Writes the annotations that differ (none: no API call), as flanneld does; returns the Node as it is now. */
  private async publish(name: string, node: KubeNode, attrs: LeaseAttrs): Promise<KubeNode> {
    const diff = annotationDiff(leaseAnnotations(attrs, this.opts.annotations, node.metadata.annotations), node.metadata.annotations);
    if (Object.keys(diff).length === 0) return node;
    return this.opts.client.patchNodeStatus(name, { metadata: { annotations: diff } }, 'strategic', this.abort.signal);
  }
}

function revisionOf(node: KubeNode): bigint {
  return /^\d{1,19}$/.test(node.metadata.resourceVersion) ? BigInt(node.metadata.resourceVersion) : 0n;
}

