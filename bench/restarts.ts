/**
 * Start-up of twilld, restart by restart (issue 13: exec → subnet.env). In
 * one 2-node cluster, node 1 runs throughout and node 0's twilld is started
 * and stopped again and again, alternating between the builds given
 * (checkouts with `npm run build` done, this one by default), each with a
 * code cache of its own written by a first, unmeasured start. Per start:
 *  - exec → subnet.env: from spawning twilld to its subnet file's mtime;
 *  - CPU at running: the process's CPU (every thread's, from
 *    /proc/<pid>/task/<tid>/schedstat, in ns) when it has logged
 *    "twilld running", Node's own start included;
 *  - CPU and RSS 2.5 s later, when it has settled (routes its peer and has
 *    written its code cache, if it had none).
 * Reported as the median and range per build: one start varies by ±50 ms
 * between runs of one build, so a difference of tens of ms needs many
 * alternated starts, which a whole cluster per start (bench/footprint.ts)
 * makes slow.
 * Usage: node dist/bench/restarts.js [--backend vxlan] [--rounds 10] [--builds /path/a,/path/b]
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { TwillCluster } from '../test/harness/twill-cluster';
import { BENCH_BACKENDS, arg, rssMb } from './measure';
import { sleep } from '../test/harness/wait';

/** When CPU and RSS are read again after the start. */
const LATER_MS = 2500;

interface Start {
  envMs: number;
  cpuMs: number;
  cpuLaterMs: number;
  rssMb: number;
}

/** CPU ms of every thread of `pid` so far. */
function cpuMs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  return ns / 1e6;
}

/** Starts `build`'s twilld on node 0, measures it, and stops it with SIGTERM. */
async function startOnce(tc: TwillCluster, build: string, cacheDir: string): Promise<Start> {
  const t0 = Date.now();
  const agent = await tc.startAgent(0, [], {
    waitRunning: false,
    twilld: path.join(build, 'dist', 'cmd', 'twilld.js'),
    env: { TWILL_CODE_CACHE_DIR: cacheDir },
  });
  try {
    // Polled every 2 ms, not through waitRunning's 50: the CPU read here is the figure.
    const deadline = t0 + 20_000;
    while (!(agent.stdout + agent.stderr).includes('twilld running')) {
      if (agent.exitedWith || Date.now() > deadline) throw new Error(`twilld from ${build} did not run: ${agent.stdout}${agent.stderr}`);
      await sleep(2);
    }
    const cpu = cpuMs(agent.pid);
    const envMs = statSync(tc.subnetFile(0)).mtimeMs - t0;
    await sleep(LATER_MS);
    return { envMs, cpuMs: cpu, cpuLaterMs: cpuMs(agent.pid), rssMb: rssMb(agent.pid) };
  } finally {
    await tc.stopAgent(0);
  }
}

function summary(values: number[], digits: number): string {
  const sorted = [...values].sort((a, b) => a - b);
  const f = (v: number) => v.toFixed(digits);
  return `${f(sorted[Math.floor(sorted.length / 2)])} (${f(sorted[0])}–${f(sorted[sorted.length - 1])})`;
}

async function main(): Promise<void> {
  const backend = arg('backend', 'vxlan');
  const config = BENCH_BACKENDS[backend];
  if (!config) throw new Error(`--backend: unknown ${JSON.stringify(backend)}; choose from ${Object.keys(BENCH_BACKENDS).join(', ')}`);
  const rounds = Number(arg('rounds', '10'));
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds: ${JSON.stringify(arg('rounds', ''))} is not a whole number ≥ 1`);
  const builds = arg('builds', path.resolve(__dirname, '../..')).split(',').map((b) => path.resolve(b));
  const caches = mkdtempSync(path.join(tmpdir(), 'twill-restarts-'));
  const starts = new Map<string, Start[]>(builds.map((b) => [b, []]));
  const tc = await TwillCluster.create({ nodes: 2, config: { Network: '10.244.0.0/16', Backend: config }, start: false });
  try {
    await tc.startAgent(1);
    const cacheOf = new Map(builds.map((b, i) => [b, path.join(caches, String(i))]));
    for (const b of builds) await startOnce(tc, b, cacheOf.get(b)!); // writes its code cache
    for (let r = 0; r < rounds; r++) {
      for (const b of r % 2 ? [...builds].reverse() : builds) starts.get(b)!.push(await startOnce(tc, b, cacheOf.get(b)!));
    }
  } finally {
    await tc.destroy();
    rmSync(caches, { recursive: true, force: true });
  }
  console.log(`| backend | build | starts | exec→subnet.env ms | CPU ms at running | CPU ms ${LATER_MS / 1000} s later | RSS MB ${LATER_MS / 1000} s later |`);
  console.log('|---|---|---|---|---|---|---|');
  for (const [b, s] of starts) {
    console.log(`| ${backend} | ${b} | ${s.length} | ${summary(s.map((x) => x.envMs), 0)} | ${summary(s.map((x) => x.cpuMs), 0)} | ${summary(s.map((x) => x.cpuLaterMs), 0)} | ${summary(s.map((x) => x.rssMb), 1)} |`);
  }
}

if (require.main === module) {
  main().catch((err: Error) => {
    console.error(err.stack ?? err.message);
    process.exitCode = 1;
  });
}
