/**
 * Footprint benchmark (issue: one lean process per node). Per backend, a
 * 3-node cluster in namespaces; nodes 1 and 2 start first, then node 0 is
 * measured:
 *  - exec → subnet.env: from spawning twilld to its subnet file's mtime;
 *    beside it, a bare `node -e 0` spawned the same way, exec → exit: the
 *    floor on this machine, from the same run;
 *  - exec → first pod ping: node 0's pod is made as soon as subnet.env is
 *    there (as a kubelet would, here with `ip`: its own time is reported
 *    beside), then pings node 1's pod every 5 ms until the first reply;
 *  - CPU exec → settled: CPU seconds of twilld and all its descendants from
 *    exec until node 0 routes both peers;
 *  - memory settled: summed RSS and PSS (/proc/<pid>/smaps_rollup) of twilld
 *    and every descendant, 3 s after settling, and its RSS again
 *    STEADY_AFTER_S later (V8 gives back the young generation start-up grew
 *    only once allocation has been low for a while: the figure a node
 *    shows for the rest of its life);
 *  - lease put → route: a new peer lease put into etcd until node 0 routes it;
 *  - for vxlan and host-gw: 5000 fake peer leases (as bench/scale.ts puts
 *    them) put while it runs; RSS/PSS once all 5000 are in the kernel.
 *    Then 40 s with nothing changing: the agent's CPU (its repair timer and
 *    GC) and its RSS at the end and at its peak, sampled every second.
 *  - twilld starts from its code cache (lib/code-cache.ts), written by
 *    nodes 1 and 2, as every start after a node's first does; with
 *    --code-cache cold no agent has one (TWILL_CODE_CACHE_DIR=off), as at
 *    the first start after an install or upgrade.
 *  - with --kube: the same cluster in Kubernetes mode (--kube-subnet-mgr,
 *    Nodes in a real kube-apiserver; no etcd client loaded): exec →
 *    subnet.env, CPU and memory settled (no fake peers: they would be Nodes).
 * Usage: node dist/bench/footprint.js [--backends vxlan,host-gw,udp,ipip-userspace] [--peers 5000] [--kube] [--code-cache warm|cold]
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import type { Etcd3 } from 'etcd3';
import { TwillCluster, PREFIX } from '../test/harness/twill-cluster';
import { run, nsArgv } from '../test/harness/netns';
import { cpuSeconds, fmt, BENCH_BACKENDS, arg } from './measure';
import { findKubeApiserver } from '../test/harness/kube-apiserver';
import { sleep } from '../test/harness/wait';
import { isCodeCacheFileName } from '../lib/code-cache';

const SCALE_BACKENDS = new Set(['vxlan', 'host-gw']);
const PROTOCOL: Record<string, number> = { vxlan: 117, 'host-gw': 118 };
/** /29s: 8192 subnets in 10.244.0.0/16, enough for 5000 fake peers at 10.244.64.0 and up, above the nodes' own. */
const NETWORK = { Network: '10.244.0.0/16', SubnetLen: 29 };
/** How long after `settled` the steady RSS is read. */
const STEADY_AFTER_S = 30;

interface Memory {
  processes: number;
  nodeProcesses: number;
  rssMb: number;
  pssMb: number;
  /** twilld's own RSS, without its descendants. */
  agentRssMb: number;
}

interface Row {
  backend: string;
  execToEnvMs: number;
  /** The floor on this machine: a bare `node -e 0` spawned the same way in node 0's namespace, exec → exit (median of BARE_NODE_RUNS). */
  bareNodeMs: number;
  /** From exec until node 0's new pod gets its first reply from node 1's pod, and how long making that pod took. */
  firstPing: { ms: number; podSetupMs: number };
  cpuToSettledS: number;
  settled: Memory;
  /** The summed RSS STEADY_AFTER_S after `settled`. */
  steadyRssMb: number;
  leaseToRouteMs: number | null;
  atScale: Memory | null;
  scaleProgramMs: number | null;
  /** CPU seconds of the tree from exec until all N peers are programmed. */
  cpuAtScaleS: number | null;
  /** With N peers and nothing changing: the agent's CPU over IDLE_WINDOW_S (repairs, GC), and its RSS at the end and at most. */
  idleAtScale: { cpuPercent: number; rssEndMb: number; rssPeakMb: number } | null;
}

/** `pid` and all its descendants (children of each thread, recursively). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        for (const c of readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').split(/\s+/)) if (c) out.push(Number(c));
      } catch {
        // thread or process gone
      }
    }
  }
  return out;
}

function kb(file: string, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(file, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function isNode(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'node';
  } catch {
    return false;
  }
}

/** Summed RSS and PSS of a process tree. */
export function treeMemory(pid: number): Memory {
  const pids = processTree(pid);
  return {
    processes: pids.length,
    nodeProcesses: pids.filter(isNode).length,
    rssMb: pids.reduce((s, p) => s + kb(`/proc/${p}/status`, 'VmRSS'), 0) / 1024,
    pssMb: pids.reduce((s, p) => s + kb(`/proc/${p}/smaps_rollup`, 'Pss'), 0) / 1024,
    agentRssMb: kb(`/proc/${pid}/status`, 'VmRSS') / 1024,
  };
}

/**
 * How long an agent with N peers is watched while nothing changes: several
 * repair intervals (5 s), long enough for V8 to let garbage pile up and
 * collect it, which is what an operator's memory limit must allow for.
 */
const IDLE_WINDOW_S = 40;

/** Starts at once (beside the 3 s settle before the memory reading): CPU over the window, RSS sampled each second. */
async function watchIdle(pid: number): Promise<{ cpuPercent: number; rssEndMb: number; rssPeakMb: number }> {
  const from = treeCpu(pid);
  let peak = 0;
  let last = 0;
  for (let s = 0; s < IDLE_WINDOW_S; s++) {
    await sleep(1000);
    last = treeMemory(pid).rssMb;
    peak = Math.max(peak, last);
  }
  return { cpuPercent: ((treeCpu(pid) - from) / IDLE_WINDOW_S) * 100, rssEndMb: last, rssPeakMb: peak };
}

function treeCpu(pid: number): number {
  return processTree(pid).reduce((s, p) => s + cpuSeconds(p), 0);
}

async function routes(ns: string): Promise<string> {
  return (await run(nsArgv(ns, ['ip', '-4', 'route', 'show']), { timeoutMs: 30_000 })).stdout;
}

async function countLines(ns: string, argv: string[]): Promise<number> {
  const r = await run(nsArgv(ns, argv), { timeoutMs: 30_000 });
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}

/** Whether node 0 carries every peer: their routes (udp: the one network route on flannel0). */
async function settled(tc: TwillCluster, backend: string): Promise<boolean> {
  const r = await routes(tc.nodeNs(0));
  if (backend === 'udp') return /10\.244\.0\.0\/16 dev flannel0/.test(r);
  return [1, 2].every((n) => r.includes(`${tc.lease(n).subnet} `));
}

/** Fake peer i's public IP: 198.18.1.1 and up, on node 0's link for host-gw. */
function fakePeerIP(i: number): string {
  return `198.18.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
}

/**
 * The fake peers answer no ARP, and this kernel's neighbour table holds
 * gc_thresh3 (1024) resolving entries: host-gw would see some of them fail
 * and rightly leave them out, at random. Real peers answer; a permanent
 * entry per fake peer (not counted against gc_thresh3) stands for that
 * answer. They go with node 0's namespace.
 */
async function answerForFakePeers(ns: string, peers: number): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'twill-footprint-'));
  try {
    const file = path.join(dir, 'neighbours.batch');
    const hex = (n: number) => n.toString(16).padStart(2, '0');
    writeFileSync(file, Array.from({ length: peers }, (_, i) => `neigh replace ${fakePeerIP(i)} lladdr 02:fa:00:00:${hex(i >> 8)}:${hex(i & 0xff)} nud permanent dev eth0\n`).join(''));
    await run(nsArgv(ns, ['ip', '-batch', file]), { timeoutMs: 60_000 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function peerLease(type: string, i: number): { key: string; value: string } {
  const subnet = `10.244.${64 + (i >> 5)}.${(i & 31) * 8}`;
  const publicIP = fakePeerIP(i);
  const mac = `0e:fa:c6:12:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
  const value = type === 'vxlan'
    ? { PublicIP: publicIP, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } }
    : type === 'udp' ? { PublicIP: publicIP, PublicIPv6: null }
      // Any 32 bytes make a WireGuard public key; a lease without one is skipped.
      : type === 'wireguard' ? { PublicIP: publicIP, PublicIPv6: null, BackendType: type, BackendData: { PublicKey: Buffer.alloc(32, i & 0xff).toString('base64') } }
        : { PublicIP: publicIP, PublicIPv6: null, BackendType: type };
  return { key: `${PREFIX}/subnets/${subnet}-29`, value: JSON.stringify(value) };
}

async function putLeases(admin: Etcd3, type: string, from: number, n: number): Promise<void> {
  const chunk = 500;
  for (let start = from; start < from + n; start += chunk) {
    await Promise.all(Array.from({ length: Math.min(chunk, from + n - start) }, (_, j) => {
      const l = peerLease(type, start + j);
      return admin.put(l.key).value(l.value);
    }));
  }
}

/** TwillCluster.create, waiting while other processes (tests, other benchmarks) hold the underlay. */
async function createWaiting(opts: Parameters<typeof TwillCluster.create>[0]): Promise<TwillCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await TwillCluster.create(opts);
    } catch (err) {
      if ((err as Error).name !== 'UnderlayInUseError' && !/UnderlayInUse|in use by another process/.test(String(err)) || attempt >= 40) throw err;
      console.error(`underlay busy; waiting (attempt ${attempt})`);
      await sleep(2000);
    }
  }
}

/** The kube-apiserver for --kube, or an error saying where it was looked for. */
function kubeBinary(): string {
  const found = findKubeApiserver();
  if (!found.binary) throw new Error(`--kube: no kube-apiserver binary (looked at ${found.looked.join(' and ')})`);
  return found.binary;
}

/** From `t0` (exec) until node `0`'s first pod, made once subnet.env is there, gets a reply from node 1's pod. */
async function firstPodPing(tc: TwillCluster, t0: number): Promise<Row['firstPing']> {
  while (!tc.readSubnetFile(0)) {
    if (Date.now() - t0 > 20_000) throw new Error(`node 0 wrote no subnet file within 20 s: ${tc.logs(0)}`);
    await sleep(2);
  }
  const podStart = Date.now();
  await tc.addPod(0);
  const podSetupMs = Date.now() - podStart;
  // -D stamps each reply; with -w, -c 1 means "until one reply".
  const { stdout } = await run(nsArgv(tc.podNs(0), ['ping', '-n', '-D', '-c', '1', '-i', '0.005', '-w', '10', tc.podIp(1)]), { timeoutMs: 15_000 });
  const reply = /^\[(\d+\.\d+)\] \d+ bytes from/m.exec(stdout);
  if (!reply) throw new Error(`node 0's pod got no reply from node 1's pod: ${stdout}`);
  return { ms: Number(reply[1]) * 1000 - t0, podSetupMs };
}

/** Until nodes 1 and 2 have written the code cache node 0 is to start from. */
async function waitForCodeCache(dir: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!readdirSync(dir).some(isCodeCacheFileName)) {
    if (Date.now() > deadline) throw new Error(`no code cache appeared in ${dir} within 20 s`);
    await sleep(100);
  }
}

async function benchBackend(backend: string, peers: number, kube: boolean, warm: boolean): Promise<Row> {
  const config = BENCH_BACKENDS[backend];
  if (!config) throw new Error(`--backends: unknown ${JSON.stringify(backend)}; choose from ${Object.keys(BENCH_BACKENDS).join(', ')}`);
  const cacheDir = mkdtempSync(path.join(tmpdir(), 'twill-footprint-cache-'));
  process.env.TWILL_CODE_CACHE_DIR = warm ? cacheDir : 'off';
  const tc = await createWaiting({
    nodes: 3, config: { ...NETWORK, Backend: config }, start: false,
    ...(kube ? { kube: { binary: kubeBinary() } } : {}),
  });
  try {
    const ns = tc.nodeNs(0);
    // The fake peers' public IPs (198.18.1.0 – 198.18.21.0) must be on-link for host-gw routes.
    await run(nsArgv(ns, ['ip', 'route', 'add', '198.18.0.0/15', 'dev', 'eth0', 'scope', 'link']));
    await tc.startAgent(1);
    await tc.startAgent(2);
    if (warm) await waitForCodeCache(cacheDir);
    await tc.addPod(1);
    const bareNodeMs = await bareNodeStart(ns);

    const t0 = Date.now();
    await tc.startAgent(0, [], { waitRunning: false });
    const firstPing = await firstPodPing(tc, t0);
    await tc.waitRunning(0);
    const execToEnvMs = statSync(tc.subnetFile(0)).mtimeMs - t0;
    const pid = tc.agents.get(0)!.pid;
    const deadline = Date.now() + 30_000;
    while (!(await settled(tc, backend))) {
      if (Date.now() > deadline) throw new Error(`${backend}: node 0 did not settle: ${tc.logs(0)}`);
    }
    const cpuToSettledS = treeCpu(pid);
    await sleep(3000);
    const settledMemory = treeMemory(pid);
    await sleep(STEADY_AFTER_S * 1000);
    const steadyRssMb = treeMemory(pid).rssMb;

    let leaseToRouteMs: number | null = null;
    // bgp: a lease alone brings no route (a BGP session does); bench/datapath.ts times a real node joining.
    if (backend !== 'udp' && config.Type !== 'bgp' && !kube) {
      const l = peerLease(config.Type, 4999);
      const dst = l.key.split('/').pop()!.replace('-', '/').split('/')[0];
      const put = Date.now();
      await tc.admin.put(l.key).value(l.value);
      while (!(await routes(ns)).includes(`${dst}/29`)) {
        if (Date.now() - put > 10_000) throw new Error('route never appeared');
      }
      leaseToRouteMs = Date.now() - put;
      await tc.admin.delete().key(l.key);
    }

    let atScale: Memory | null = null;
    let scaleProgramMs: number | null = null;
    let cpuAtScaleS: number | null = null;
    let idleAtScale: Row['idleAtScale'] = null;
    if (SCALE_BACKENDS.has(backend) && peers > 0 && !kube) {
      if (config.Type === 'host-gw') await answerForFakePeers(ns, peers);
      const started = Date.now();
      await putLeases(tc.admin, config.Type, 0, peers);
      const proto = String(PROTOCOL[backend]);
      const scaleDeadline = Date.now() + 120_000;
      let have = 0;
      while ((have = await countLines(ns, ['ip', '-4', 'route', 'show', 'proto', proto])) < peers + 2) {
        if (Date.now() > scaleDeadline) throw new Error(`${backend}: ${peers} peers never all programmed (${have} routes of ${peers + 2}); twilld's log ends: ${tc.logs(0).slice(-3000)}`);
        await sleep(100);
      }
      scaleProgramMs = Date.now() - started;
      cpuAtScaleS = treeCpu(pid);
      const idle = await watchIdle(pid);
      await sleep(3000);
      atScale = treeMemory(pid);
      idleAtScale = await idle;
    }
    return { backend: kube ? `${backend} (kube mode)` : backend, execToEnvMs, bareNodeMs, firstPing, cpuToSettledS, settled: settledMemory, steadyRssMb, leaseToRouteMs, atScale, scaleProgramMs, cpuAtScaleS, idleAtScale };
  } finally {
    await tc.destroy();
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

/** How many bare Node starts `bareNodeStart` takes the median of. */
const BARE_NODE_RUNS = 5;

/**
 * A bare Node's start and exit in `ns`, spawned as twilld is (the same
 * binary, through `ip netns exec`, the harness's environment): the floor
 * exec → subnet.env is measured against, from the same run. flanneld is not
 * on this machine; Node's own start varies by ×2 between machines (58 ms on
 * one, 68 on another, 125 where the shell's NODE_EXTRA_CA_CERTS applies).
 */
async function bareNodeStart(ns: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < BARE_NODE_RUNS; i++) {
    const t0 = performance.now();
    await run(nsArgv(ns, [process.execPath, '-e', '0']));
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

async function main(): Promise<void> {
  const backends = arg('backends', 'vxlan,host-gw,udp,ipip-userspace').split(',');
  const peers = Number(arg('peers', '5000'));
  const kube = process.argv.includes('--kube');
  const codeCache = arg('code-cache', 'warm');
  if (codeCache !== 'warm' && codeCache !== 'cold') throw new Error(`--code-cache: ${JSON.stringify(codeCache)}; choose warm or cold`);
  const rows: Row[] = [];
  for (const b of backends) {
    rows.push(await benchBackend(b, peers, kube, codeCache === 'warm'));
    const r = rows[rows.length - 1];
    console.error(`${b}: ${JSON.stringify(r)}`);
  }
  console.log(`| backend | processes (Node) settled | RSS MB settled (twilld alone) | RSS MB ${STEADY_AFTER_S} s later | PSS MB settled | exec→subnet.env ms (bare Node exec→exit) | exec→first pod ping ms (pod set-up) | CPU exec→settled s | lease put→route ms | ${peers} peers: put → all programmed ms | CPU exec→all programmed s | RSS MB at ${peers} peers | PSS MB at ${peers} peers | idle ${IDLE_WINDOW_S} s at ${peers} peers: CPU % | RSS MB at its end (peak) |`);
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.backend} | ${r.settled.processes} (${r.settled.nodeProcesses}) | ${fmt(r.settled.rssMb, 1)} (${fmt(r.settled.agentRssMb, 1)}) | ${fmt(r.steadyRssMb, 1)} | ${fmt(r.settled.pssMb, 1)} | ${fmt(r.execToEnvMs, 0)} (${fmt(r.bareNodeMs, 0)}) | ${fmt(r.firstPing.ms, 0)} (${fmt(r.firstPing.podSetupMs, 0)}) | ${fmt(r.cpuToSettledS, 2)} | ${r.leaseToRouteMs ?? (r.backend === 'udp' ? 'n/a (one network route)' : 'n/a (bench/datapath.ts: a node joining)')} | ${r.scaleProgramMs ?? 'n/a'} | ${r.cpuAtScaleS === null ? 'n/a' : fmt(r.cpuAtScaleS, 2)} | ${r.atScale ? fmt(r.atScale.rssMb, 1) : 'n/a'} | ${r.atScale ? fmt(r.atScale.pssMb, 1) : 'n/a'} | ${r.idleAtScale ? fmt(r.idleAtScale.cpuPercent, 1) : 'n/a'} | ${r.idleAtScale ? `${fmt(r.idleAtScale.rssEndMb, 1)} (${fmt(r.idleAtScale.rssPeakMb, 1)})` : 'n/a'} |`);
  }
  console.log(`\ntwilld started ${codeCache === 'warm' ? 'from the code cache nodes 1 and 2 wrote' : 'without a code cache (TWILL_CODE_CACHE_DIR=off)'}`);
  const flags = process.env.TWILL_AGENT_NODE_FLAGS;
  if (flags) console.log(`\ntwilld ran with Node flags: ${flags}`);
  console.log('| flanneld (reference, from the issue; not measured here) | 1 | 33 | — | — | 35–48 | 73–78 | — | — | — | — | — | — | — | — |');
}

if (require.main === module) {
  main().catch((err: Error) => {
    console.error(err.stack ?? err.message);
    process.exitCode = 1;
  });
}
