/**
 * A real kube-apiserver for tests, on 127.0.0.1 (or `bindAddress`) with its own temporary etcd
 * (etcd.ts), RBAC authorization and three identities, each with a
 * kubeconfig file:
 *
 *   admin       static token, group system:masters (everything)
 *   restricted  static token, group twill:node-readers: get, list, watch nodes, nothing else
 *   cert        client certificate (CN twill-node), bound like `restricted`
 *
 * The server's certificate comes from the test PKI (pki.ts), so clients
 * verify it. Ready when /readyz answers ok (about 3 s). `destroy()` stops
 * the API server and etcd by PID and removes every temporary directory.
 *
 * The binary: `$KUBE_APISERVER`, else `../shared/k8s/kube-apiserver` beside
 * the repository (see findKubeApiserver); tests skip when neither exists.
 */
import { ChildProcess, spawn } from 'child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { freePort, startEtcd, EtcdServer } from './etcd';
import { createTestPki, TestPki } from './pki';
import { run } from './netns';
import { waitFor } from './wait';
import { KubeClient, KubeNode, loadKubeConfig } from '../../lib/kube';
import { toKubeNode } from '../../lib/kube/node';

/** The repository root (this file runs from dist/test/harness/). */
const REPO_ROOT = path.resolve(__dirname, '../../..');

export const RESTRICTED_GROUP = 'twill:node-readers';

/** The binary /work/shared/k8s/README.md describes, beside the repository. */
export const SHARED_KUBE_APISERVER = path.join(REPO_ROOT, '..', 'shared', 'k8s', 'kube-apiserver');

/** Where the kube-apiserver binary is, or undefined with the places looked at. */
export function findKubeApiserver(env: NodeJS.ProcessEnv = process.env, shared = SHARED_KUBE_APISERVER): { binary?: string; looked: string[] } {
  const looked: string[] = [];
  if (env.KUBE_APISERVER) {
    looked.push(`$KUBE_APISERVER=${env.KUBE_APISERVER}`);
    if (existsSync(env.KUBE_APISERVER)) return { binary: env.KUBE_APISERVER, looked };
  } else {
    looked.push('$KUBE_APISERVER (unset)');
  }
  looked.push(shared);
  return existsSync(shared) ? { binary: shared, looked } : { looked };
}

/**
 * The kube-apiserver binary for a `before` hook; where there is none, one
 * line saying where it looked, and the suite is skipped (`ctx.skip()` throws).
 */
export function kubeApiserverOrSkip(ctx: Mocha.Context): string {
  const found = findKubeApiserver();
  if (found.binary) return found.binary;
  console.log(`      skipped: no kube-apiserver binary (looked at ${found.looked.join(' and ')})`);
  return ctx.skip();
}

export interface NodeSpecInput {
  readonly podCIDR?: string;
  readonly podCIDRs?: readonly string[];
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface KubeApiServer {
  /** https://<bindAddress>:<port> */
  readonly url: string;
  readonly adminKubeconfig: string;
  readonly restrictedKubeconfig: string;
  readonly certKubeconfig: string;
  readonly etcd: EtcdServer;
  /** An admin client, closed by destroy(). */
  readonly admin: KubeClient;
  /** A client for one of the identities (closed by destroy()). */
  client(who: 'admin' | 'restricted' | 'cert'): KubeClient;
  createNode(name: string, spec?: NodeSpecInput): Promise<KubeNode>;
  deleteNode(name: string): Promise<void>;
  /** The API server's output so far, for assertion messages. */
  logs(): string;
  /** Stops the API server (an outage); its etcd, port and credentials stay for start(). */
  stop(): Promise<void>;
  /** Starts it again after stop(), on the same address; resolves when it is ready. */
  start(): Promise<void>;
  destroy(): Promise<void>;
}

export interface KubeApiserverOptions {
  /**
   * false: serve Node watches and lists straight from etcd
   * (`--watch-cache-sizes=nodes#0`), so that an etcd compaction makes a
   * watch from an older resourceVersion fail with 410 at once. With the
   * cache (the default, as in real clusters) it fails only once the cache
   * has dropped the events, which takes many events and over 75 s.
   */
  readonly nodeWatchCache?: boolean;
  /**
   * The address to listen on (default 127.0.0.1). Agents in node namespaces
   * cannot reach the host's 127.0.0.1: give them the underlay bridge's
   * address, as TwillCluster does for etcd. The server certificate and the
   * kubeconfig files follow it.
   */
  readonly bindAddress?: string;
}

export async function startKubeApiserver(binary: string, opts: KubeApiserverOptions = {}): Promise<KubeApiServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-kube-'));
  const clients: KubeClient[] = [];
  let etcd: EtcdServer | undefined;
  let pki: TestPki | undefined;
  let proc: ChildProcess | undefined;
  let output = '';

  /** Ends the API server process (by its PID); etcd and the files stay. */
  const stopProcess = async (): Promise<void> => {
    const child = proc;
    proc = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  };

  const destroy = async (): Promise<void> => {
    for (const c of clients.splice(0)) c.close();
    await stopProcess();
    await etcd?.destroy();
    pki?.destroy();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const bind = opts.bindAddress ?? '127.0.0.1';
    [etcd, pki] = await Promise.all([startEtcd(), createTestPki({ serverIps: [bind] })]);
    const saKey = path.join(dir, 'sa.key');
    const saPub = path.join(dir, 'sa.pub');
    await run(['openssl', 'ecparam', '-genkey', '-name', 'prime256v1', '-noout', '-out', saKey], { timeoutMs: 20_000 });
    await run(['openssl', 'ec', '-in', saKey, '-pubout', '-out', saPub], { timeoutMs: 20_000 });

    const adminToken = randomBytes(24).toString('hex');
    const restrictedToken = randomBytes(24).toString('hex');
    const tokens = path.join(dir, 'tokens.csv');
    writeFileSync(tokens, `${adminToken},twill-admin,twill-admin,system:masters\n${restrictedToken},twill-restricted,twill-restricted,${RESTRICTED_GROUP}\n`, { mode: 0o600 });

    const port = await freePort();
    const url = `https://${bind}:${port}`;
    const args = [
      `--etcd-servers=${etcd.endpoint}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${saPub}`, `--service-account-signing-key-file=${saKey}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      `--secure-port=${port}`, `--bind-address=${bind}`,
      `--tls-cert-file=${pki.server.cert}`, `--tls-private-key-file=${pki.server.key}`,
      `--client-ca-file=${pki.caCert}`,
      `--cert-dir=${path.join(dir, 'certs')}`,
      '--authorization-mode=RBAC', `--token-auth-file=${tokens}`,
      // Nothing here needs priority-and-fairness or the anonymous user; both only slow start-up.
      '--enable-priority-and-fairness=false', '--anonymous-auth=false',
      '--profiling=false', '--v=1',
      ...(opts.nodeWatchCache === false ? ['--watch-cache-sizes=nodes#0'] : []),
    ];
    const keep = (d: Buffer): void => {
      output = (output + d.toString()).slice(-20_000);
    };
    const launch = (): ChildProcess => {
      const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      proc = child;
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      child.on('error', (err) => keep(Buffer.from(`spawn failed: ${err.message}\n`)));
      return child;
    };
    const child = launch();

    const adminKubeconfig = writeKubeconfig(dir, 'admin', url, pki.caCert, { token: adminToken });
    const restrictedKubeconfig = writeKubeconfig(dir, 'restricted', url, pki.caCert, { token: restrictedToken });
    const certKubeconfig = writeKubeconfig(dir, 'cert', url, pki.caCert, { cert: pki.client.cert, key: pki.client.key });
    const files = { admin: adminKubeconfig, restricted: restrictedKubeconfig, cert: certKubeconfig };
    const client = (who: 'admin' | 'restricted' | 'cert'): KubeClient => {
      const c = new KubeClient(loadKubeConfig({ kubeconfigFile: files[who] }), { requestTimeoutMs: 10_000 });
      clients.push(c);
      return c;
    };
    const admin = client('admin');
    await waitReady(admin, child, () => output);
    await grantNodeReading(admin);
    // RBAC's authorizer learns of the new binding through its own watch: wait until it has.
    const reader = client('restricted');
    await waitFor('RBAC to let the restricted identity list nodes', () => reader.listNodes().then(() => true), 10_000, 100);

    const server: KubeApiServer = {
      url, adminKubeconfig, restrictedKubeconfig, certKubeconfig, etcd, admin, client,
      async createNode(name, spec = {}) {
        const raw = await admin.transport.request({
          method: 'POST', path: '/api/v1/nodes', target: { verb: 'create', resource: 'nodes', name },
          body: {
            apiVersion: 'v1', kind: 'Node',
            metadata: { name, annotations: spec.annotations ?? {} },
            spec: { ...(spec.podCIDR ? { podCIDR: spec.podCIDR } : {}), ...(spec.podCIDRs ? { podCIDRs: spec.podCIDRs } : {}) },
          },
        });
        return toKubeNode(raw);
      },
      async deleteNode(name) {
        await admin.transport.request({
          method: 'DELETE', path: `/api/v1/nodes/${encodeURIComponent(name)}`, target: { verb: 'delete', resource: 'nodes', name },
        });
      },
      logs: () => output,
      stop: stopProcess,
      async start() {
        if (proc) return;
        await waitReady(admin, launch(), () => output);
      },
      destroy,
    };
    return server;
  } catch (err) {
    const logs = output;
    await destroy().catch(() => undefined);
    if (err instanceof Error && logs) err.message += `\nkube-apiserver output (end):\n${logs.slice(-3000)}`;
    throw err;
  }
}

function writeKubeconfig(dir: string, who: string, server: string, ca: string, user: { token?: string; cert?: string; key?: string }): string {
  const file = path.join(dir, `${who}.kubeconfig`);
  // The layout kubectl writes: lists at their key's indentation, files by path.
  const userLines = user.token ? [`    token: ${user.token}`] : [`    client-certificate: ${user.cert}`, `    client-key: ${user.key}`];
  writeFileSync(file, [
    'apiVersion: v1',
    'clusters:',
    '- cluster:',
    `    certificate-authority: ${ca}`,
    `    server: ${server}`,
    '  name: test',
    'contexts:',
    '- context:',
    '    cluster: test',
    `    user: ${who}`,
    `  name: ${who}@test`,
    `current-context: ${who}@test`,
    'kind: Config',
    'preferences: {}',
    'users:',
    `- name: ${who}`,
    '  user:',
    ...userLines,
    '',
  ].join('\n'), { mode: 0o600 });
  return file;
}

async function waitReady(admin: KubeClient, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`kube-apiserver exited (${child.exitCode ?? child.signalCode})`);
    try {
      const text = await admin.transport.requestText({ method: 'GET', path: '/readyz', target: { verb: 'get', resource: 'readyz' }, timeoutMs: 2000 });
      if (text.trim() === 'ok') return;
      last = text.slice(0, 200);
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`kube-apiserver was not ready within 30 s (last: ${last}); output: ${output().slice(-2000)}`);
}

/** RBAC for `restricted` and `cert`: read Nodes, nothing more. */
async function grantNodeReading(admin: KubeClient): Promise<void> {
  const t = admin.transport;
  await t.request({
    method: 'POST', path: '/apis/rbac.authorization.k8s.io/v1/clusterroles', target: { verb: 'create', resource: 'clusterroles' },
    body: {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'twill-test-node-reader' },
      rules: [{ apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] }],
    },
  });
  await t.request({
    method: 'POST', path: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', target: { verb: 'create', resource: 'clusterrolebindings' },
    body: {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'twill-test-node-reader' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'twill-test-node-reader' },
      subjects: [
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: RESTRICTED_GROUP },
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'twill-node' },
      ],
    },
  });
}
