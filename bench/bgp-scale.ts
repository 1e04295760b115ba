/**
 * bgp at scale: one node runs twilld with `{"Type": "bgp", "Mesh": false,
 * "Peers": [<node 1>]}`; N fake bgp leases are in etcd, and node 1 runs a
 * plain BIRD that announces those N subnets over one iBGP session (a route
 * reflector's view of a big cluster). Times from that BIRD's start until
 * node 0's kernel holds all N of BIRD's routes and until twilld carries all
 * N over bgp (twill_peers{backend="bgp"}), then from its stop (a Cease to
 * node 0) until all N are gone again. twilld's CPU and RSS and BIRD's RSS.
 * Usage: node dist/bench/bgp-scale.js [--sizes 1000]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Etcd3 } from 'etcd3';
import { TwillCluster, PREFIX } from '../test/harness/twill-cluster';
import { NsProcess, run, nsArgv } from '../test/harness/netns';
import { httpBody } from '../test/harness/checks';
import { cpuSeconds, childPids, rssMb, fmt, arg } from './measure';

const HEALTH_PORT = 9456;

function fakeSubnet(i: number): string {
  return `10.${1 + (i >> 8)}.${i & 0xff}.0/24`;
}

async function putLeases(admin: Etcd3, subnets: readonly string[]): Promise<void> {
  for (let start = 0; start < subnets.length; start += 500) {
    await Promise.all(subnets.slice(start, start + 500).map((s, j) => admin.put(`${PREFIX}/subnets/${s.replace('/', '-')}`).value(JSON.stringify({
      PublicIP: `198.18.${2 + Math.floor((start + j) / 250)}.${1 + ((start + j) % 250)}`, PublicIPv6: null, BackendType: 'bgp', BackendData: { ASN: 64512 },
    }))));
  }
}

async function birdRoutes(ns: string): Promise<number> {
  const r = await run(nsArgv(ns, ['ip', '-4', 'route', 'show', 'proto', 'bird']), { timeoutMs: 30_000 });
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}

async function carried(): Promise<number> {
  const m = /^twill_peers\{backend="bgp"\} (\d+)$/m.exec(await httpBody('198.18.0.1', HEALTH_PORT, '/metrics'));
  return m ? Number(m[1]) : 0;
}

async function until(what: string, ok: () => Promise<boolean>, timeoutMs = 120_000): Promise<number> {
  const start = Date.now();
  while (!(await ok())) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now();
}

interface Row {
  n: number;
  kernelMs: number;
  carriedMs: number;
  withdrawnMs: number;
  uncarriedMs: number;
  cpuS: number;
  twilldMb: number;
  birdMb: number;
}

async function benchSize(n: number): Promise<Row> {
  const tc = await TwillCluster.create({
    nodes: 2,
    config: { Network: '10.0.0.0/8', SubnetLen: 24, Backend: { Type: 'bgp', Mesh: false, Peers: [{ IP: '198.18.0.2' }] } },
    agentArgs: ['--healthz-port', String(HEALTH_PORT), '--healthz-ip', '198.18.0.1'],
    start: false,
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-bgp-scale-'));
  let speaker: NsProcess | undefined;
  try {
    const agent = await tc.startAgent(0);
    const own = tc.lease(0).subnet;
    const subnets: string[] = [];
    for (let i = 0; subnets.length < n; i++) if (fakeSubnet(i) !== own) subnets.push(fakeSubnet(i));
    await putLeases(tc.admin, subnets);
    await new Promise((r) => setTimeout(r, 2000)); // twilld has read them (and skipped them: no route yet)
    writeFileSync(path.join(dir, 'bird.conf'), [
      'router id 198.18.0.2;',
      'protocol device { scan time 10; }',
      `protocol static { ipv4; ${subnets.map((s) => `route ${s} blackhole;`).join(' ')} }`,
      'protocol bgp speaker { local as 64512; neighbor 198.18.0.1 as 64512; direct; connect delay time 0; ipv4 { import none; export all; next hop self; }; }',
      '',
    ].join('\n'));
    const cpu0 = cpuSeconds(agent.pid);
    const started = Date.now();
    speaker = await NsProcess.spawn(tc.nodeNs(1), ['bird', '-f', '-c', path.join(dir, 'bird.conf'), '-s', path.join(dir, 'bird.ctl')]);
    const kernelAt = await until(`${n} BIRD routes in node 0`, async () => (await birdRoutes(tc.nodeNs(0))) >= n);
    const carriedAt = await until(`twilld carrying ${n} over bgp`, async () => (await carried()) >= n);
    const cpuS = cpuSeconds(agent.pid) - cpu0;
    const twilldMb = rssMb(agent.pid);
    const birdMb = childPids(agent.pid).reduce((s, p) => s + rssMb(p), 0);
    const stopped = Date.now();
    await speaker.stop();
    speaker = undefined;
    const withdrawnAt = await until('BIRD routes gone', async () => (await birdRoutes(tc.nodeNs(0))) === 0);
    const uncarriedAt = await until('twilld carrying none', async () => (await carried()) === 0);
    return { n, kernelMs: kernelAt - started, carriedMs: carriedAt - started, withdrawnMs: withdrawnAt - stopped, uncarriedMs: uncarriedAt - stopped, cpuS, twilldMb, birdMb };
  } finally {
    await speaker?.stop();
    await tc.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const sizes = arg('sizes', '1000').split(',').map(Number);
  const rows: Row[] = [];
  for (const n of sizes) rows.push(await benchSize(n));
  console.log('\nbgp scale: N routes learned over one iBGP session (a route reflector), one node running twilld; times from the speaker\'s start / stop\n');
  console.log('| N | all N in the kernel (BIRD) ms | all N carried by twilld ms | all N withdrawn after a Cease ms | twilld carries none ms | twilld CPU s | twilld RSS MB | its BIRD RSS MB |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.n} | ${r.kernelMs} | ${r.carriedMs} | ${r.withdrawnMs} | ${r.uncarriedMs} | ${fmt(r.cpuS)} | ${fmt(r.twilldMb, 1)} | ${fmt(r.birdMb, 1)} |`);
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exitCode = 1;
});
