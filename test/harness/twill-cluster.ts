/**
 * A twill cluster for integration tests: the namespaces cluster, a real
 * etcd listening on the underlay bridge, the network config, one real
 * `twilld` process per node and one pod per node on the node's leased
 * subnet. `destroy()` removes all of it (processes by PID).
 */
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as net from 'net';
import * as path from 'path';
import type { Etcd3 } from 'etcd3';
import { readSubnetEnv } from '../../lib/lab/lab';
import { parseSubnetFile } from '../../lib/subnet/subnet-file';
import { createCluster, Cluster, UNDERLAY } from './cluster';
import { startEtcd, EtcdServer } from './etcd';
import { NsProcess } from './netns';
import { TWILLD } from './daemon';
import { waitFor } from './wait';
import { startKubeApiserver, type KubeApiServer } from './kube-apiserver';

export const PREFIX = '/coreos.com/network';

export interface TwillClusterOptions {
  readonly nodes: number;
  /** The network config JSON stored at <prefix>/config. */
  readonly config: object;
  /** Extra twilld flags for every node. */
  readonly agentArgs?: readonly string[];
  /** Extra twilld flags for one node (after agentArgs, so they win). */
  readonly agentArgsFor?: (node: number) => readonly string[];
  /** etcd endpoints the agents use instead of the cluster's own etcd (e.g. a proxy or a 3-member cluster). */
  readonly etcdEndpoints?: (node: number) => string;
  /** Start agents and pods at once (default true). */
  readonly start?: boolean;
  /** Nodes placed on 198.18.1.0/24 behind a router (cluster.ts `farNodes`); they reach etcd through it. */
  readonly farNodes?: readonly number[];
  /** The near nodes' eth0 prefix length (cluster.ts `nearPrefixLen`): 23 puts the far subnet inside it. */
  readonly nearPrefixLen?: 23 | 24;
  /**
   * A dual-stack underlay (cluster.ts `ipv6Underlay`: node i's eth0 also
   * holds fd00:198:18::<i+1>/64); pods then get an IPv6 address too when
   * their node's subnet.env carries FLANNEL_IPV6_SUBNET.
   */
  readonly ipv6?: boolean;
  /**
   * An IPv6-only underlay (cluster.ts `ipv4Underlay: false`): node i's eth0
   * holds only fd00:198:18::<i+1>/64, pods get only an IPv6 address (from
   * FLANNEL_IPV6_SUBNET), and the agents reach etcd through a relay: a TCP
   * listener on 127.0.0.1:ETCD_RELAY_PORT in each node namespace passing
   * connections to a unix socket that the test process passes on to etcd
   * (nothing of the ULA underlay reaches the root namespace).
   */
  readonly ipv6Only?: boolean;
  /**
   * Kubernetes mode: a real kube-apiserver listening on the underlay bridge
   * (the agents run in node namespaces, where the host's 127.0.0.1 is not
   * theirs), one Node object per node, and agents started with
   * --kube-subnet-mgr, NODE_NAME, the admin kubeconfig and a net-conf file
   * holding `config`.
   */
  readonly kube?: KubeModeOptions;
}

export interface KubeModeOptions {
  /** The kube-apiserver binary (findKubeApiserver). */
  readonly binary: string;
  /**
   * The Node objects made at start, by node index, with their podCIDR, or
   * their podCIDRs in dual stack (undefined: none yet). Default: every
   * node, node i with 10.244.<i+1>.0/24.
   */
  readonly nodes?: ReadonlyMap<number, string | readonly string[] | undefined>;
}

export interface NodeLease {
  readonly subnet: string;
  readonly mtu: number;
  /** FLANNEL_IPV6_SUBNET as a network (fd00:10:244:1::/64), when the file has it. */
  readonly ipv6Subnet?: string;
}

/** Where the agents of an `ipv6Only` cluster find etcd, inside their node namespace. */
export const ETCD_RELAY_PORT = 12379;

/** Listens on 127.0.0.1:<port> in a node namespace; each connection is piped to the unix socket <path>. */
const NODE_RELAY = `const net = require('net');
const [sock, port] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect(sock);
  const drop = () => { c.destroy(); u.destroy(); };
  c.on('error', drop).on('close', drop);
  u.on('error', drop).on('close', drop);
  c.pipe(u);
  u.pipe(c);
}).listen(Number(port), '127.0.0.1', () => console.log('relay ready'));`;

export class TwillCluster {
  readonly agents = new Map<number, NsProcess>();
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'twill-cluster-'));
  /** `ipv6Only`: the test process's end of the etcd relay. */
  private relay?: net.Server;
  private readonly relaySockets = new Set<net.Socket>();

  /** Kubernetes mode's API server (opts.kube), else undefined. */
  kube?: KubeApiServer;

  private constructor(readonly net: Cluster, readonly etcd: EtcdServer, readonly admin: Etcd3, private readonly opts: TwillClusterOptions) {}

  static async create(opts: TwillClusterOptions): Promise<TwillCluster> {
    const net = await createCluster({
      nodes: opts.nodes, farNodes: opts.farNodes, nearPrefixLen: opts.nearPrefixLen,
      ipv6Underlay: opts.ipv6 || opts.ipv6Only, ipv4Underlay: !opts.ipv6Only,
    });
    let etcd: EtcdServer | undefined;
    try {
      etcd = await startEtcd({ listenIPs: [UNDERLAY.bridgeIp] });
      const admin = etcd.client();
      await admin.put(`${PREFIX}/config`).value(JSON.stringify(opts.config));
      const tc = new TwillCluster(net, etcd, admin, opts);
      if (opts.ipv6Only) {
        try {
          await tc.startEtcdRelay();
        } catch (err) {
          await tc.destroy();
          throw err;
        }
      }
      if (opts.kube) {
        try {
          tc.kube = await startKubeApiserver(opts.kube.binary, { bindAddress: UNDERLAY.bridgeIp });
          tc.writeNetConf(opts.config);
          const nodes = opts.kube.nodes ?? new Map(Array.from({ length: opts.nodes }, (_, i) => [i, `10.244.${i + 1}.0/24`]));
          for (const [i, cidrs] of nodes) {
            const podCIDRs = typeof cidrs === 'string' ? [cidrs] : cidrs ? [...cidrs] : [];
            await tc.kube.createNode(tc.kubeNodeName(i), podCIDRs.length ? { podCIDR: podCIDRs[0], podCIDRs } : {});
          }
        } catch (err) {
          await tc.destroy();
          throw err;
        }
      }
      if (opts.start !== false) {
        try {
          for (let i = 0; i < opts.nodes; i++) await tc.startAgent(i);
          for (let i = 0; i < opts.nodes; i++) await tc.addPod(i);
        } catch (err) {
          await tc.destroy();
          throw err;
        }
      }
      return tc;
    } catch (err) {
      if (etcd) await etcd.destroy().catch(() => undefined);
      await net.destroy();
      throw err;
    }
  }

  /** `ipv6Only`: the unix socket in the test process, and a relay to it in every node. */
  private async startEtcdRelay(): Promise<void> {
    const sock = path.join(this.dir, 'etcd.sock');
    const port = this.etcd.port;
    const sockets = this.relaySockets;
    this.relay = net.createServer((c) => {
      const u = net.connect(port, '127.0.0.1');
      sockets.add(c).add(u);
      const drop = () => {
        c.destroy();
        u.destroy();
        sockets.delete(c);
        sockets.delete(u);
      };
      c.on('error', drop).on('close', drop);
      u.on('error', drop).on('close', drop);
      c.pipe(u);
      u.pipe(c);
    });
    await new Promise<void>((resolve, reject) => this.relay!.once('error', reject).listen(sock, resolve));
    for (let i = 0; i < this.opts.nodes; i++) {
      const p = await this.net.spawn(i, [process.execPath, '-e', NODE_RELAY, sock, String(ETCD_RELAY_PORT)]);
      await waitFor(`the etcd relay in node ${i}`, () => {
        if (p.exitedWith) throw new Error(`the etcd relay in node ${i} exited: ${p.stderr}`);
        return p.stdout.includes('relay ready');
      }, 10_000);
    }
  }

  /** The etcd endpoint the agent of `node` uses, from inside its namespace (etcd mode). */
  etcdEndpointInNode(node: number): string {
    return this.opts.etcdEndpoints?.(node) ?? (this.opts.ipv6Only ? `http://127.0.0.1:${ETCD_RELAY_PORT}` : this.etcd.endpointOn(UNDERLAY.bridgeIp));
  }

  get size(): number {
    return this.opts.nodes;
  }

  subnetFile(node: number): string {
    return path.join(this.dir, `node${node}.env`);
  }

  /** Each node's own WireGuard key (the default /run/flannel/wgkey would be one key for every node of the machine). */
  wireguardKeyFile(node: number): string {
    return path.join(this.dir, `node${node}.wgkey`);
  }

  /** Kubernetes mode: the Node object of node `node`. */
  kubeNodeName(node: number): string {
    return `node-${node}`;
  }

  /** Kubernetes mode: the net-conf file every agent reads (--net-config-path). */
  get netConfPath(): string {
    return path.join(this.dir, 'net-conf', 'net-conf.json');
  }

  /** Kubernetes mode: replaces the net-conf file in one rename, as a ConfigMap update replaces its files. */
  writeNetConf(config: object): void {
    const tmp = path.join(this.dir, 'net-conf.tmp');
    writeFileSync(tmp, JSON.stringify(config));
    mkdirSync(path.dirname(this.netConfPath), { recursive: true });
    renameSync(tmp, this.netConfPath);
  }

  /**
   * Starts twilld in the node and waits until it has written its subnet
   * file (`waitRunning` false: returns once it is started). `env`:
   * variables added to twilld's environment; `twilld`: another build's
   * launcher (bench/restarts.ts compares builds), this checkout's by default.
   */
  async startAgent(node: number, extraArgs: readonly string[] = [], opts: { waitRunning?: boolean; env?: Readonly<Record<string, string>>; twilld?: string } = {}): Promise<NsProcess> {
    const nodeFlags = (process.env.TWILL_AGENT_NODE_FLAGS ?? '').split(' ').filter(Boolean);
    const kube = this.kube;
    const store = kube
      ? ['--kube-subnet-mgr', '--kubeconfig-file', kube.adminKubeconfig, '--net-config-path', this.netConfPath]
      : ['--etcd-endpoints', this.etcdEndpointInNode(node)];
    const args = [
      process.execPath, ...nodeFlags, opts.twilld ?? TWILLD,
      ...store,
      '--subnet-file', this.subnetFile(node),
      '--wireguard-key-file', this.wireguardKeyFile(node),
      '--iface', 'eth0',
      ...(this.opts.agentArgs ?? []),
      ...(this.opts.agentArgsFor?.(node) ?? []),
      ...extraArgs,
    ];
    const env = { ...(kube ? { NODE_NAME: this.kubeNodeName(node) } : {}), ...opts.env };
    const agent = await this.net.spawn(node, args, Object.keys(env).length ? { env: { ...process.env, ...env } } : undefined);
    this.agents.set(node, agent);
    if (opts.waitRunning === false) return agent;
    await this.waitRunning(node);
    return agent;
  }

  /** Until the node's twilld logs "twilld running" (after it wrote its subnet file); rejects if it exits first. */
  async waitRunning(node: number): Promise<void> {
    const agent = this.agents.get(node);
    if (!agent) throw new Error(`no twilld was started on node ${node}`);
    await waitFor(`twilld on node ${node} to run`, () => {
      if (agent.exitedWith) throw new Error(`twilld on node ${node} exited (${JSON.stringify(agent.exitedWith)}): ${agent.stdout}${agent.stderr}`);
      return (agent.stdout + agent.stderr).includes('twilld running');
    }, 20_000);
  }

  async stopAgent(node: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const agent = this.agents.get(node);
    if (!agent) return null;
    this.agents.delete(node);
    agent.kill(signal);
    const status = await agent.exited;
    return status.code;
  }

  /**
   * Stops the node's twilld with SIGTERM, which must leave the datapath in
   * place, and starts it again; resolves with the exit code of the stop, for
   * the test to check.
   */
  async restartAgent(node: number): Promise<number | null> {
    const code = await this.stopAgent(node, 'SIGTERM');
    await this.startAgent(node);
    return code;
  }

  readSubnetFile(node: number): NodeLease | undefined {
    if (this.opts.ipv6Only) {
      // IPv6 only: the file has no FLANNEL_SUBNET; `subnet` is the IPv6 one.
      let env;
      try {
        env = parseSubnetFile(readFileSync(this.subnetFile(node), 'utf8'));
      } catch {
        return undefined;
      }
      if (!env.ipv6Subnet || env.mtu === undefined) return undefined;
      return { subnet: env.ipv6Subnet.toString(), ipv6Subnet: env.ipv6Subnet.toString(), mtu: env.mtu };
    }
    const l = readSubnetEnv(this.subnetFile(node));
    if (!l || !this.opts.ipv6) return l;
    const v6 = parseSubnetFile(readFileSync(this.subnetFile(node), 'utf8')).ipv6Subnet;
    return v6 ? { ...l, ipv6Subnet: v6.toString() } : l;
  }

  lease(node: number): NodeLease {
    const l = this.readSubnetFile(node);
    if (!l) throw new Error(`node ${node} has no subnet file yet`);
    return l;
  }

  async addPod(node: number): Promise<void> {
    const l = this.lease(node);
    if (this.opts.ipv6Only) {
      await this.net.addPodIpv6Only(node, l.ipv6Subnet!, { mtu: l.mtu });
      return;
    }
    await this.net.addPod(node, l.subnet, { mtu: l.mtu, ...(l.ipv6Subnet ? { ipv6Subnet: l.ipv6Subnet } : {}) });
  }

  podIp(node: number): string {
    return this.net.pod(node).ip;
  }

  /** The pod's IPv6 address (`ipv6` clusters whose node leased an IPv6 subnet). */
  podIpv6(node: number): string {
    const ip = this.net.pod(node).ipv6;
    if (!ip) throw new Error(`the pod of node ${node} has no IPv6 address`);
    return ip;
  }

  podNs(node: number): string {
    return this.net.pod(node).ns;
  }

  nodeNs(node: number): string {
    return this.net.nodeName(node);
  }

  /** Agent output, for assertion messages. */
  logs(node: number): string {
    const a = this.agents.get(node);
    return a ? a.stdout + a.stderr : '';
  }

  /**
   * The run directories twill's daemons keep per network namespace (BIRD's,
   * wireguard-go's: /run/twill/<daemon>-<netns inode>), for this cluster's nodes.
   */
  /** Where node `node`'s wireguard-go keeps its UAPI sockets and PID file (backends/wireguard). */
  wireguardRunDir(node: number): string {
    return `/run/twill/wireguard-${statSync(`/run/netns/${this.nodeNs(node)}`).ino}`;
  }

  daemonRunDirs(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.size; i++) {
      let ino: number;
      try {
        ino = statSync(`/run/netns/${this.nodeNs(i)}`).ino;
      } catch {
        continue;
      }
      out.push(`/run/twill/bird-${ino}`, `/run/twill/wireguard-${ino}`);
    }
    return out;
  }

  async destroy(): Promise<void> {
    const errors: unknown[] = [];
    // Named after the namespaces' inodes, which the kernel reuses: read before the namespaces go.
    const runDirs = this.daemonRunDirs();
    for (const node of [...this.agents.keys()]) await this.stopAgent(node, 'SIGKILL').catch((e) => errors.push(e));
    await this.net.destroy().catch((e) => errors.push(e));
    for (const socket of this.relaySockets) socket.destroy();
    await new Promise<void>((resolve) => (this.relay ? this.relay.close(() => resolve()) : resolve()));
    for (const dir of runDirs) rmSync(dir, { recursive: true, force: true });
    await this.kube?.destroy().catch((e) => errors.push(e));
    await this.etcd.destroy().catch((e) => errors.push(e));
    rmSync(this.dir, { recursive: true, force: true });
    if (errors.length) throw errors[0];
  }
}
