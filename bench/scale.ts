/**
 * Scale benchmark (issue: kernel datapath). One node runs twilld; N fake
 * peer leases are put into etcd as fast as possible, while it runs and
 * before it starts; we time until the kernel holds all N (every route, and
 * for vxlan every FDB and ARP entry — all N, not most), then delete them
 * all and time until every entry is gone. Agent CPU and RSS are reported.
 * Usage: node dist/bench/scale.js [--sizes 100,1000,5000] [--backends vxlan,host-gw]
 */
import type { Etcd3 } from 'etcd3';
import { TwillCluster, PREFIX } from '../test/harness/twill-cluster';
import { run, nsArgv } from '../test/harness/netns';
import { rssMb, cpuSeconds, childPids, fmt, arg } from './measure';

const PROTOCOL: Record<string, number> = { vxlan: 117, 'host-gw': 118 };

interface Result {
  backend: string;
  n: number;
  scenario: string;
  programMs: number;
  deleteMs: number;
  cpuS: number;
  rssMb: number;
  relayRssMb: number;
}

function fakeLease(i: number, backend: string): { key: string; value: string } {
  const subnet = `10.${1 + (i >> 8)}.${i & 0xff}.0`;
  const publicIP = `198.18.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
  const mac = `0e:fa:c6:12:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
  const value = backend === 'vxlan'
    ? { PublicIP: publicIP, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } }
    : { PublicIP: publicIP, PublicIPv6: null, BackendType: backend };
  return { key: `${PREFIX}/subnets/${subnet}-24`, value: JSON.stringify(value) };
}

async function putAll(admin: Etcd3, n: number, backend: string): Promise<void> {
  const chunk = 500;
  for (let start = 0; start < n; start += chunk) {
    await Promise.all(Array.from({ length: Math.min(chunk, n - start) }, (_, j) => {
      const l = fakeLease(start + j, backend);
      return admin.put(l.key).value(l.value);
    }));
  }
}

async function deleteAll(admin: Etcd3, n: number, backend: string): Promise<void> {
  const chunk = 500;
  for (let start = 0; start < n; start += chunk) {
    await Promise.all(Array.from({ length: Math.min(chunk, n - start) }, (_, j) => admin.delete().key(fakeLease(start + j, backend).key)));
  }
}

async function lines(ns: string, argv: string[]): Promise<number> {
  const r = await run(nsArgv(ns, argv), { timeoutMs: 30_000 });
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}

/** How many of the fake peers' entries the kernel holds (the minimum over routes, FDB, ARP). */
async function programmed(ns: string, backend: string): Promise<number> {
  const routes = await lines(ns, ['ip', '-4', 'route', 'show', 'proto', String(PROTOCOL[backend])]);
  if (backend !== 'vxlan') return routes;
  const fdb = await lines(ns, ['bridge', 'fdb', 'show', 'dev', 'flannel.1']).then((c) => c);
  const neigh = await lines(ns, ['ip', '-4', 'neigh', 'show', 'dev', 'flannel.1', 'nud', 'permanent']);
  return Math.min(routes, fdb, neigh);
}

async function waitCount(ns: string, backend: string, want: (c: number) => boolean, timeoutMs: number): Promise<number> {
  const start = Date.now();
  for (;;) {
    const c = await programmed(ns, backend);
    if (want(c)) return Date.now();
    if (Date.now() - start > timeoutMs) throw new Error(`timed out with ${c} entries`);
  }
}

async function flushKernel(tc: TwillCluster, backend: string): Promise<void> {
  const ns = tc.nodeNs(0);
  await run(nsArgv(ns, ['ip', 'route', 'flush', 'proto', String(PROTOCOL[backend])]));
  if (backend === 'vxlan') await run(nsArgv(ns, ['ip', 'link', 'del', 'flannel.1'])).catch(() => undefined);
}

async function benchSize(tc: TwillCluster, backend: string, n: number): Promise<Result[]> {
  const ns = tc.nodeNs(0);
  const results: Result[] = [];

  // 1. Leases arrive while twilld runs.
  let agent = tc.agents.get(0)!;
  let cpu0 = cpuSeconds(agent.pid);
  await putAll(tc.admin, n, backend);
  const lastPut = Date.now();
  const programmedAt = await waitCount(ns, backend, (c) => c >= n, 120_000);
  const rss = rssMb(agent.pid);
  const relay = childPids(agent.pid).reduce((s, p) => s + rssMb(p), 0);
  await deleteAll(tc.admin, n, backend);
  const lastDelete = Date.now();
  const goneAt = await waitCount(ns, backend, (c) => c === 0, 120_000);
  results.push({ backend, n, scenario: 'arrive while running', programMs: programmedAt - lastPut, deleteMs: goneAt - lastDelete, cpuS: cpuSeconds(agent.pid) - cpu0, rssMb: rss, relayRssMb: relay });

  // 2. Leases present before twilld starts (on a clean kernel).
  await tc.stopAgent(0);
  await flushKernel(tc, backend);
  await putAll(tc.admin, n, backend);
  const started = Date.now();
  agent = await tc.startAgent(0);
  cpu0 = 0;
  const programmedAt2 = await waitCount(ns, backend, (c) => c >= n, 120_000);
  const rss2 = rssMb(agent.pid);
  const relay2 = childPids(agent.pid).reduce((s, p) => s + rssMb(p), 0);
  await deleteAll(tc.admin, n, backend);
  const lastDelete2 = Date.now();
  const goneAt2 = await waitCount(ns, backend, (c) => c === 0, 120_000);
  results.push({ backend, n, scenario: 'present at start', programMs: programmedAt2 - started, deleteMs: goneAt2 - lastDelete2, cpuS: cpuSeconds(agent.pid) - cpu0, rssMb: rss2, relayRssMb: relay2 });
  return results;
}

async function main(): Promise<void> {
  const sizes = arg('sizes', '100,1000,5000').split(',').map(Number);
  const backends = arg('backends', 'vxlan,host-gw').split(',');
  const all: Result[] = [];
  for (const backend of backends) {
    const tc = await TwillCluster.create({ nodes: 1, config: { Network: '10.0.0.0/8', SubnetLen: 24, Backend: { Type: backend } }, start: false });
    try {
      // The fake peers' public IPs (198.18.1.0 – 198.18.21.0) must be on-link for host-gw routes.
      await run(nsArgv(tc.nodeNs(0), ['ip', 'route', 'add', '198.18.0.0/15', 'dev', 'eth0', 'scope', 'link']));
      await tc.startAgent(0);
      for (const n of sizes) all.push(...(await benchSize(tc, backend, n)));
    } finally {
      await tc.destroy();
    }
  }
  console.log('\nScale benchmark: N fake peer leases, one node, times from the last etcd write (or from twilld start)\n');
  console.log('| backend | N | leases | all N programmed (ms) | all N removed after last delete (ms) | agent CPU s | agent RSS MB (+event relay) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of all) {
    console.log(`| ${r.backend} | ${r.n} | ${r.scenario} | ${r.programMs} | ${r.deleteMs} | ${fmt(r.cpuS)} | ${fmt(r.rssMb, 1)} (+${fmt(r.relayRssMb, 1)}) |`);
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exitCode = 1;
});
