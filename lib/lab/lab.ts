/**
 * `twill lab`: a whole twill cluster on one machine, for trying twill out.
 * `up` builds the namespaces, starts a local etcd and one real twilld per
 * node, attaches one pod per node and prints the connectivity matrix;
 * `down` removes everything (also after a lab whose processes were killed);
 * `status` re-checks; `exec` runs a command in a node or pod.
 * Processes are detached and recorded in the state file; they are stopped
 * by PID, never by name.
 */
import { spawn } from 'child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'fs';
import * as net from 'net';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { Etcd3 } from 'etcd3';
import { LAB_DIR, LabState, clearState, readState, writeState } from './state';
import { BRIDGE_IP, PREFIX, createNode, createPod, createUnderlay, killQuietly, names, removeLabObjects, findLabObjects } from './topology';
import { Pod, allOk, formatMatrix, measureMatrix } from './matrix';
import { inNs, run } from './run';
import { parseSubnetFile } from '../subnet/subnet-file';
import { running as alive } from '../process-state';
import { EtcdRegistry } from '../subnet/etcd-registry';

const TWILLD = path.resolve(__dirname, '../../cmd/twilld.js');

export interface UpOptions {
  readonly nodes: number;
  readonly backend: string;
  readonly say: (line: string) => void;
}

export class LabError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabError';
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function detached(argv: readonly string[], log: string): number {
  const fd = openSync(log, 'a');
  try {
    const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', fd, fd] });
    if (child.pid === undefined) throw new LabError(`cannot start ${argv[0]}`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new LabError(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function subnetFile(state: Pick<LabState, 'id'>, n: number): string {
  return path.join(LAB_DIR, `node${n}.env`);
}

/**
 * The lease a running twilld wrote to its subnet.env, as a network ("10.244.1.0/24",
 * the file holds its first address) and MTU; undefined until the file is complete.
 * The integration harness reads its agents' files with this too.
 */
export function readSubnetEnv(file: string): { subnet: string; mtu: number } | undefined {
  if (!existsSync(file)) return undefined;
  const env = parseSubnetFile(readFileSync(file, 'utf8'));
  if (!env.subnet || env.mtu === undefined) return undefined;
  return { subnet: env.subnet.toString(), mtu: env.mtu };
}

export async function labUp(opts: UpOptions): Promise<boolean> {
  if (process.getuid?.() !== 0) throw new LabError('twill lab needs root (it creates network namespaces)');
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 50) throw new LabError(`--nodes must be 1..50, not ${opts.nodes}`);
  if (readState() || (await findLabObjects()).namespaces.length) {
    throw new LabError('a lab is already up (or left over): run "twill lab down" first');
  }
  const id = randomBytes(2).toString('hex');
  const N = names(id);
  mkdirSync(LAB_DIR, { recursive: true });
  const say = opts.say;
  const step = (i: number, total: number, what: string) => say(`[${i}/${total}] ${what}`);
  const total = 5;
  const state: { -readonly [K in keyof LabState]: LabState[K] } = {
    id, nodes: opts.nodes, backend: opts.backend, etcd: { pid: 0, port: 0, endpoint: '', dataDir: path.join(LAB_DIR, 'etcd') }, agents: [], createdAt: new Date().toISOString(),
  };
  try {
    step(1, total, `underlay bridge ${N.bridge} and ${opts.nodes} node namespaces`);
    await createUnderlay(id);
    for (let n = 0; n < opts.nodes; n++) await createNode(id, n);

    step(2, total, 'etcd');
    const port = await freePort();
    const peer = await freePort();
    state.etcd = {
      pid: detached(['etcd', '--name', 'twill-lab', '--data-dir', state.etcd.dataDir,
        '--listen-client-urls', `http://127.0.0.1:${port},http://${BRIDGE_IP}:${port}`, '--advertise-client-urls', `http://${BRIDGE_IP}:${port}`,
        '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
        '--initial-cluster', `twill-lab=http://127.0.0.1:${peer}`, '--log-level', 'error'], path.join(LAB_DIR, 'etcd.log')),
      port, endpoint: `http://${BRIDGE_IP}:${port}`, dataDir: state.etcd.dataDir,
    };
    writeState(state);
    const client = new Etcd3({ hosts: `http://127.0.0.1:${port}`, dialTimeout: 1000 });
    const registry = new EtcdRegistry(client, '/coreos.com/network'); // twilld's default --etcd-prefix: the lab passes none
    try {
      const config = JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: opts.backend } });
      await waitFor('etcd', () => registry.putConfig(config).then(() => true, () => undefined), 20_000);
    } finally {
      client.close();
    }

    step(3, total, `twilld on every node (backend ${opts.backend})`);
    for (let n = 0; n < opts.nodes; n++) {
      const log = path.join(LAB_DIR, `node${n}.log`);
      const pid = detached(['ip', 'netns', 'exec', N.node(n), process.execPath, TWILLD, '--etcd-endpoints', state.etcd.endpoint,
        '--subnet-file', subnetFile(state, n), '--iface', 'eth0',
        // The lab's nodes share one filesystem: each needs its own WireGuard key.
        '--wireguard-key-file', path.join(LAB_DIR, `node${n}.wgkey`)], log);
      state.agents.push({ node: n, pid, log, subnetFile: subnetFile(state, n) });
      writeState(state);
    }
    const leases = [];
    for (let n = 0; n < opts.nodes; n++) {
      const agent = state.agents[n];
      leases.push(await waitFor(`twilld on node ${n} (log: ${agent.log})`, () => {
        if (!alive(agent.pid)) throw new LabError(`twilld on node ${n} exited; see ${agent.log}:\n${tail(agent.log)}`);
        return readSubnetEnv(agent.subnetFile);
      }, 30_000));
      say(`      node${n} ${N.node(n)}: subnet ${leases[n].subnet}, MTU ${leases[n].mtu}`);
    }

    step(4, total, 'one pod per node');
    const pods: Pod[] = [];
    for (let n = 0; n < opts.nodes; n++) pods.push({ node: n, ns: N.pod(n), ip: await createPod(id, n, leases[n].subnet, leases[n].mtu) });

    step(5, total, 'connectivity matrix (every pod pings every other pod)');
    const cells = await waitForMatrix(pods);
    say('');
    say(formatMatrix(pods, cells));
    say('');
    say(`lab ${id} is up: "twill lab exec node0 -- ip route", "twill lab status", "twill lab down"`);
    return allOk(cells);
  } catch (err) {
    say(`lab up failed: ${(err as Error).message}; removing what was built`);
    await labDown(() => undefined);
    throw err;
  }
}

/** The datapath converges within a repair interval: retry a few times before reporting failure. */
async function waitForMatrix(pods: Pod[]): Promise<ReturnType<typeof measureMatrix> extends Promise<infer T> ? T : never> {
  let cells = await measureMatrix(pods);
  for (let i = 0; i < 5 && !allOk(cells); i++) {
    await new Promise((r) => setTimeout(r, 1000));
    cells = await measureMatrix(pods);
  }
  return cells;
}

export async function labDown(say: (line: string) => void): Promise<void> {
  const state = readState();
  const pids = state ? [...state.agents.map((a) => a.pid), state.etcd.pid].filter((p) => p > 0) : [];
  for (const pid of pids) killQuietly(pid, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids.filter(alive)) killQuietly(pid, 'SIGKILL');
  const before = await findLabObjects();
  await removeLabObjects();
  clearState();
  say(state || before.namespaces.length || before.links.length
    ? `lab ${state?.id ?? '(left over)'} removed: ${pids.length} processes, ${before.namespaces.length} namespaces, ${before.links.length} links`
    : 'no lab to remove');
}

export async function labStatus(say: (line: string) => void): Promise<boolean> {
  const state = readState();
  if (!state) {
    say('no lab is up ("twill lab up" starts one)');
    return false;
  }
  const N = names(state.id);
  say(`lab ${state.id}: ${state.nodes} nodes, backend ${state.backend}, etcd ${state.etcd.endpoint} (pid ${state.etcd.pid} ${alive(state.etcd.pid) ? 'running' : 'DEAD'})`);
  const pods: Pod[] = [];
  for (const a of state.agents) {
    const lease = readSubnetEnv(a.subnetFile);
    say(`  node${a.node} ${N.node(a.node)}: twilld pid ${a.pid} ${alive(a.pid) ? 'running' : 'DEAD'}, subnet ${lease?.subnet ?? '?'}`);
    if (lease) {
      const p = lease.subnet.split('/')[0].split('.').map(Number);
      pods.push({ node: a.node, ns: N.pod(a.node), ip: `${p[0]}.${p[1]}.${p[2]}.${p[3] + 2}` });
    }
  }
  const cells = await measureMatrix(pods);
  say('');
  say(formatMatrix(pods, cells));
  return allOk(cells) && state.agents.every((a) => alive(a.pid));
}

/** Runs argv in `node<N>` or `pod<N>` of the lab, with the terminal attached. */
export async function labExec(target: string, argv: readonly string[]): Promise<number> {
  const state = readState();
  if (!state) throw new LabError('no lab is up');
  const m = /^(node|pod)(\d+)$/.exec(target);
  if (!m || Number(m[2]) >= state.nodes) throw new LabError(`no ${target} in this lab: use node0..node${state.nodes - 1} or pod0..pod${state.nodes - 1}`);
  if (argv.length === 0) throw new LabError('give a command after --, e.g. twill lab exec node0 -- ip route');
  const N = names(state.id);
  const ns = m[1] === 'node' ? N.node(Number(m[2])) : N.pod(Number(m[2]));
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: 'inherit' });
    child.on('exit', (code) => resolve(code ?? 1));
    child.on('error', () => resolve(127));
  });
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-10).join('\n');
  } catch {
    return '';
  }
}

export { PREFIX, inNs, run };
