/**
 * Datapath faults (reliability issue, faults 5 and 6), on one node running
 * the vxlan backend with thousands of fake peer leases:
 *  5. twilld killed with SIGKILL half way through programming 5000 peers,
 *     then restarted: the kernel ends up exactly as the leases say, and
 *     nothing that was already right is deleted on the way.
 *  6. 1000 peer leases put, changed and deleted by concurrent writers for a
 *     minute: within 2 s of the last write the kernel equals etcd exactly.
 * "Exactly" means both ways, for each of routes (`<subnet> via <subnet IP>
 * dev flannel.1 onlink`, protocol 117), FDB entries (`<VtepMAC> dst
 * <PublicIP> self permanent`) and permanent ARP entries (`<subnet IP>
 * lladdr <VtepMAC>`) on flannel.1. Figures are printed for bench/README.md.
 */
import { expect } from 'chai';
import { Etcd3 } from 'etcd3';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { run, nsArgv, netnsPids, NsProcess } from '../harness/netns';
import { waitFor, sleep } from '../harness/wait';

const SUBNETS = `${PREFIX}/subnets/`;
const VXLAN_PROTOCOL = '117';
const DEVICE = 'flannel.1';
const CONFIG = { Network: '10.0.0.0/8', SubnetLen: 24, Backend: { Type: 'vxlan' } };
const CHURN_SECONDS = Number(process.env.TWILL_CHURN_SECONDS ?? 60);
const CHURN_WRITERS = 4;
const CHURN_LEASES = 1000;
/** How long after the last write the kernel must equal etcd. */
const CONVERGE_LIMIT_MS = 2000;

/** One fake peer, as its lease says. */
interface Peer {
  /** "10.1.2.0/24" */
  readonly subnet: string;
  readonly publicIP: string;
  readonly mac: string;
}

/** Peer number i's subnet: 10.1.0.0/24, 10.1.1.0/24, … (outside the node's own 10.0.x.0/24 candidates). */
function peerSubnet(i: number): string {
  return `10.${1 + (i >> 8)}.${i & 0xff}.0/24`;
}

function hex(byte: number): string {
  return (byte & 0xff).toString(16).padStart(2, '0');
}

/**
 * Peer i of the 5000: public IPs 198.18.1.1 … 198.18.20.250 (the node is
 * 198.18.0.1), MACs 0e:fa:00:00:xx:xx — a prefix no node's derived VTEP MAC
 * (0e:01:<IPv4>) can take.
 */
function fixedPeer(i: number): Peer {
  return { subnet: peerSubnet(i), publicIP: `198.18.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`, mac: `0e:fa:00:00:${hex(i >> 8)}:${hex(i)}` };
}

function leaseKey(subnet: string): string {
  return SUBNETS + subnet.replace('/', '-');
}

function leaseValue(p: Peer): string {
  return JSON.stringify({ PublicIP: p.publicIP, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: p.mac } });
}

/** The kernel entries of the vxlan datapath, each written as one comparable line. */
interface KernelState {
  readonly routes: Set<string>;
  readonly fdb: Set<string>;
  readonly arp: Set<string>;
}
type Kind = keyof KernelState;
const KINDS: readonly Kind[] = ['routes', 'fdb', 'arp'];

function subnetIP(subnet: string): string {
  return subnet.split('/')[0];
}

/** What the leases of `peers` call for on this node. */
function wantedState(peers: Iterable<Peer>): KernelState {
  const s: KernelState = { routes: new Set(), fdb: new Set(), arp: new Set() };
  for (const p of peers) {
    const gw = subnetIP(p.subnet);
    s.routes.add(`${p.subnet} via ${gw} dev ${DEVICE} onlink`);
    s.fdb.add(`${p.mac} dst ${p.publicIP} self permanent`);
    s.arp.add(`${gw} lladdr ${p.mac} PERMANENT`);
  }
  return s;
}

async function json<T>(ns: string, argv: string[]): Promise<T[]> {
  const out = (await run(nsArgv(ns, argv), { timeoutMs: 30_000 })).stdout.trim();
  return out ? (JSON.parse(out) as T[]) : [];
}

/**
 * What the kernel holds: every protocol-117 route, every FDB entry of
 * flannel.1 (whatever its kind, so that a stray one shows) and every
 * permanent ARP entry of flannel.1.
 */
async function readKernel(ns: string): Promise<KernelState> {
  const [routes, fdb, arp] = await Promise.all([
    json<{ dst: string; gateway?: string; dev?: string; flags?: string[] }>(ns, ['ip', '-j', '-4', 'route', 'show', 'proto', VXLAN_PROTOCOL]),
    json<{ mac: string; dst?: string; flags?: string[]; state?: string }>(ns, ['bridge', '-j', 'fdb', 'show', 'dev', DEVICE]),
    json<{ dst: string; lladdr?: string; state?: string[] }>(ns, ['ip', '-j', '-4', 'neigh', 'show', 'dev', DEVICE, 'nud', 'permanent']),
  ]);
  return {
    routes: new Set(routes.map((r) => `${r.dst} via ${r.gateway ?? '-'} dev ${r.dev ?? '-'} ${(r.flags ?? []).join(' ')}`.trim())),
    fdb: new Set(fdb.map((e) => `${e.mac} dst ${e.dst ?? '-'} ${(e.flags ?? []).join(' ')} ${e.state ?? ''}`.trim())),
    arp: new Set(arp.map((n) => `${n.dst} lladdr ${n.lladdr ?? '-'} ${(n.state ?? []).join(' ')}`)),
  };
}

interface StateDiff {
  readonly equal: boolean;
  readonly missing: Record<Kind, string[]>;
  readonly extra: Record<Kind, string[]>;
}

function diffState(want: KernelState, have: KernelState): StateDiff {
  const missing = { routes: [], fdb: [], arp: [] } as Record<Kind, string[]>;
  const extra = { routes: [], fdb: [], arp: [] } as Record<Kind, string[]>;
  for (const k of KINDS) {
    for (const e of want[k]) if (!have[k].has(e)) missing[k].push(e);
    for (const e of have[k]) if (!want[k].has(e)) extra[k].push(e);
  }
  return { equal: KINDS.every((k) => missing[k].length === 0 && extra[k].length === 0), missing, extra };
}

function describeDiff(d: StateDiff): string {
  return KINDS.map((k) => `${k}: ${d.missing[k].length} missing ${JSON.stringify(d.missing[k].slice(0, 3))}, ` +
    `${d.extra[k].length} extra ${JSON.stringify(d.extra[k].slice(0, 3))}`).join('; ');
}

function counts(s: KernelState): string {
  return `${s.routes.size} routes, ${s.fdb.size} FDB, ${s.arp.size} ARP`;
}

/**
 * Reads the kernel until it equals `want` or `limitMs` has passed since
 * `since`; resolves with the time from `since` to the first equal reading
 * (undefined if none) and the last difference seen.
 */
async function untilKernelEquals(ns: string, want: KernelState, since: number, limitMs: number): Promise<{ ms?: number; last: StateDiff }> {
  for (;;) {
    const last = diffState(want, await readKernel(ns));
    const ms = Date.now() - since;
    if (last.equal) return { ms, last };
    if (ms > limitMs) return { last };
    await sleep(20);
  }
}

async function putAll(admin: Etcd3, peers: readonly Peer[]): Promise<void> {
  for (let start = 0; start < peers.length; start += 500) {
    await Promise.all(peers.slice(start, start + 500).map((p) => admin.put(leaseKey(p.subnet)).value(leaseValue(p))));
  }
}

async function routeCount(ns: string): Promise<number> {
  const out = (await run(nsArgv(ns, ['ip', '-4', 'route', 'show', 'proto', VXLAN_PROTOCOL]), { timeoutMs: 30_000 })).stdout;
  return out.split('\n').filter((l) => l.trim()).length;
}

async function vxlanLink(ns: string): Promise<{ ifindex: number; address: string }> {
  const [link] = await json<{ ifindex: number; address: string }>(ns, ['ip', '-j', 'link', 'show', DEVICE]);
  return { ifindex: link.ifindex, address: link.address };
}

/** Removes what twilld programmed, so that the next start programs everything anew. */
async function clearDatapath(ns: string): Promise<void> {
  await run(nsArgv(ns, ['ip', 'route', 'flush', 'proto', VXLAN_PROTOCOL]));
  await run(nsArgv(ns, ['ip', 'link', 'del', DEVICE])).catch(() => undefined);
}

/**
 * `ip -o monitor route neigh` in the node, started only once it provably
 * listens (a marker route added and deleted must show up). Lines go to
 * `lines`; the monitor's own output buffer is bounded and would drop the
 * start of a long run.
 */
async function startMonitor(tc: TwillCluster): Promise<{ proc: NsProcess; lines: string[] }> {
  const proc = await tc.net.spawn(0, ['ip', '-o', 'monitor', 'route', 'neigh']);
  const lines: string[] = [];
  proc.onLine((line, stream) => {
    if (stream === 'stdout') lines.push(line);
  });
  const marker = '198.18.250.0/24';
  await tc.net.ip(0, ['route', 'add', marker, 'dev', 'eth0', 'proto', 'static']);
  await tc.net.ip(0, ['route', 'del', marker, 'dev', 'eth0']);
  await waitFor('ip monitor to report the marker route', () => lines.some((l) => l.startsWith(`Deleted ${marker}`)), 5000, 20);
  lines.length = 0;
  return { proc, lines };
}

/** An entry a monitor line is about: which kind, and the key that identifies it. */
interface MonitorEntry {
  readonly kind: Kind;
  /** routes: dst; fdb: "mac dst"; arp: IP. */
  readonly id: string;
  readonly deleted: boolean;
}

/**
 * Parses `ip -o monitor route neigh` lines about flannel.1 / protocol 117:
 *   [Deleted ]10.1.2.0/24 via 10.1.2.0 dev flannel.1 proto 117 onlink
 *   [Deleted ]10.1.2.0 dev flannel.1 lladdr 0e:fa:… PERMANENT          (ARP)
 *   [Deleted ]198.18.1.3 dev flannel.1 lladdr 0e:fa:… PERMANENT        (FDB)
 * `ip monitor neigh` prints FDB entries (AF_BRIDGE) as "<dst> … lladdr
 * <mac>", like ARP entries; here they are told apart by address: subnet
 * gateways lie in 10.0.0.0/8, VTEPs in 198.18.0.0/15.
 */
function parseMonitorLine(line: string): MonitorEntry | undefined {
  const deleted = line.startsWith('Deleted ');
  const body = deleted ? line.slice('Deleted '.length) : line;
  const route = /^(\S+\/\d+) via \S+ dev \S+ .*proto 117\b/.exec(body);
  if (route) return { kind: 'routes', id: route[1], deleted };
  const neigh = new RegExp(`^(\\S+) dev ${DEVICE.replace('.', '\\.')} lladdr (\\S+)`).exec(body);
  if (neigh) return neigh[1].startsWith('10.') ? { kind: 'arp', id: neigh[1], deleted } : { kind: 'fdb', id: `${neigh[2]} ${neigh[1]}`, deleted };
  // Anything else about the device (an unresolved neighbour, say) still counts, by its address.
  if (new RegExp(`dev ${DEVICE.replace('.', '\\.')}\\b|proto 117\\b`).test(body)) {
    const id = body.split(' ')[0];
    return { kind: id.includes('/') ? 'routes' : id.startsWith('10.') ? 'arp' : 'fdb', id, deleted };
  }
  return undefined;
}

/** The monitor id of a KernelState line (see parseMonitorLine). */
function monitorId(kind: Kind, entry: string): string {
  const f = entry.split(' ');
  if (kind === 'routes') return f[0];
  if (kind === 'fdb') return `${f[0]} ${f[2]}`;
  return f[0];
}

describe('datapath faults: twilld killed mid-programming, and peers changing under load (vxlan, one node)', function () {
  this.timeout(Math.max(300_000, (CHURN_SECONDS + 240) * 1000));
  let tc: TwillCluster;
  let ns: string;
  const writers: Etcd3[] = [];
  const monitors: NsProcess[] = [];

  before(async () => {
    tc = await TwillCluster.create({ nodes: 1, config: CONFIG, start: false });
    ns = tc.nodeNs(0);
    // The fake peers' public IPs (198.18.1.1 – 198.18.20.250) are on-link, as in bench/scale.ts.
    await run(nsArgv(ns, ['ip', 'route', 'add', '198.18.0.0/15', 'dev', 'eth0', 'scope', 'link']));
  });
  after(async () => {
    for (const w of writers.splice(0)) w.close();
    for (const m of monitors.splice(0)) await m.stop(1000);
    await tc?.destroy();
  });
  afterEach(async () => {
    for (const m of monitors.splice(0)) await m.stop(1000);
    if (!tc) return;
    await tc.stopAgent(0, 'SIGKILL');
    await tc.admin.delete().prefix(SUBNETS);
    await clearDatapath(ns);
  });

  it('after a kill -9 half way through programming 5000 peers, a restart converges to exactly the leases, deletes nothing that was right and keeps the VTEP MAC', async () => {
    const peers = Array.from({ length: 5000 }, (_, i) => fixedPeer(i));
    await putAll(tc.admin, peers);
    const want = wantedState(peers);

    // Start twilld and kill it once a few hundred routes exist. Routes come
    // last in its first batch (after FDB and ARP), so they show progress.
    let atKill = 0;
    for (let attempt = 1; ; attempt++) {
      const starting = tc.startAgent(0).catch(() => undefined); // rejects when killed before it logs "running"
      let seen = 0;
      await waitFor('twilld to program the first routes', async () => (seen = await routeCount(ns)) >= 300, 60_000, 5);
      await waitFor('twilld to be registered', () => tc.agents.has(0), 5000, 5);
      await tc.stopAgent(0, 'SIGKILL');
      await starting;
      atKill = await routeCount(ns);
      if (atKill < peers.length) break;
      expect(attempt, `twilld had programmed all routes (${seen} seen) before the kill in ${attempt} attempts`).to.be.below(3);
      await clearDatapath(ns);
    }
    // Nothing of the agent may survive it (its netlink event relay exits when its parent's IPC channel closes).
    await waitFor('every process of the killed twilld to be gone', async () => (await netnsPids(ns)).length === 0, 5000, 50)
      .catch(async () => expect.fail(`processes left in the node after kill -9: ${JSON.stringify(await netnsPids(ns))}`));

    const before = await readKernel(ns);
    const linkBefore = await vxlanLink(ns);
    const rightBefore: Record<Kind, Set<string>> = { routes: new Set(), fdb: new Set(), arp: new Set() };
    for (const k of KINDS) for (const e of before[k]) if (want[k].has(e)) rightBefore[k].add(monitorId(k, e));
    const wrongBefore = diffState(want, before);
    expect(KINDS.every((k) => wrongBefore.extra[k].length === 0), `the kernel held entries no lease asks for: ${describeDiff(wrongBefore)}`).to.equal(true);

    const monitor = await startMonitor(tc);
    monitors.push(monitor.proc);
    const restartedAt = Date.now();
    await tc.startAgent(0);
    const converged = await untilKernelEquals(ns, want, restartedAt, 60_000);
    expect(converged.ms, `not converged 60 s after the restart: ${describeDiff(converged.last)}`).to.not.equal(undefined);
    // Past one repair interval (5 s): a later reconcile must not remove anything either.
    await sleep(6000);
    const after = diffState(want, await readKernel(ns));
    expect(after.equal, `the kernel drifted after converging: ${describeDiff(after)}`).to.equal(true);
    await monitor.proc.stop(1000);

    const entries = monitor.lines.map(parseMonitorLine).filter((e): e is MonitorEntry => e !== undefined);
    const deletions = entries.filter((e) => e.deleted);
    const rightDeleted = deletions.filter((e) => rightBefore[e.kind].has(e.id));
    const rewritten = entries.filter((e) => !e.deleted && rightBefore[e.kind].has(e.id));
    expect(rightDeleted.map((e) => `${e.kind} ${e.id}`), 'entries that were right before the restart and were deleted').to.deep.equal([]);
    expect(deletions.map((e) => `${e.kind} ${e.id}`), 'deletions of any kind (nothing was wrong before the restart)').to.deep.equal([]);
    expect(await vxlanLink(ns), 'flannel.1 (ifindex, MAC) after the restart').to.deep.equal(linkBefore);

    console.log(`      figures: killed with ${counts(before)} of 5000 programmed (${atKill} routes when the agent had exited); ` +
      `restart → exactly 5000 of each in ${converged.ms} ms; deletions seen ${deletions.length}; ` +
      `right entries re-written ${rewritten.length}; VTEP MAC ${linkBefore.address} kept`);
  });

  it(`within ${CONVERGE_LIMIT_MS / 1000} s of the last of ${CHURN_SECONDS} s of concurrent puts, changes and deletes of ${CHURN_LEASES} peer leases, routes, FDB and ARP equal etcd exactly`, async () => {
    await tc.startAgent(0);
    const ownKey = leaseKey(tc.lease(0).subnet);

    // Start from all 1000 leases, then churn them: writer w owns peers i with i % CHURN_WRITERS === w.
    const current = new Map<number, { mac: string; publicIP: string }>();
    let macSerial = 0;
    const newMac = (w: number): string => {
      const n = ++macSerial;
      return `0e:${hex(0xf0 + w)}:${hex(n >> 24)}:${hex(n >> 16)}:${hex(n >> 8)}:${hex(n)}`;
    };
    const newPublicIP = (): string => `198.18.${1 + Math.floor(Math.random() * 20)}.${1 + Math.floor(Math.random() * 250)}`;
    const initial: Peer[] = [];
    for (let i = 0; i < CHURN_LEASES; i++) {
      const v = { mac: newMac(i % CHURN_WRITERS), publicIP: newPublicIP() };
      current.set(i, v);
      initial.push({ subnet: peerSubnet(i), ...v });
    }
    await putAll(tc.admin, initial);

    const done = { create: 0, delete: 0, mac: 0, publicIP: 0, both: 0 };
    let lastWriteAt = 0;
    const endAt = Date.now() + CHURN_SECONDS * 1000;
    const writer = async (w: number): Promise<void> => {
      const client = new Etcd3({ hosts: tc.etcd.endpoint });
      writers.push(client);
      const mine = Array.from({ length: CHURN_LEASES }, (_, i) => i).filter((i) => i % CHURN_WRITERS === w);
      while (Date.now() < endAt) {
        const i = mine[Math.floor(Math.random() * mine.length)];
        const key = leaseKey(peerSubnet(i));
        const cur = current.get(i);
        const r = Math.random();
        if (cur && r < 0.25) {
          await client.delete().key(key);
          current.delete(i);
          done.delete++;
        } else {
          const kind = !cur ? 'create' : r < 0.5 ? 'mac' : r < 0.75 ? 'publicIP' : 'both';
          const next = {
            mac: !cur || kind === 'mac' || kind === 'both' ? newMac(w) : cur.mac,
            publicIP: !cur || kind === 'publicIP' || kind === 'both' ? newPublicIP() : cur.publicIP,
          };
          await client.put(key).value(leaseValue({ subnet: peerSubnet(i), ...next }));
          current.set(i, next);
          done[kind]++;
        }
        lastWriteAt = Date.now();
      }
    };
    const churnStart = Date.now();
    await Promise.all(Array.from({ length: CHURN_WRITERS }, (_, w) => writer(w)));
    const churnMs = lastWriteAt - churnStart;
    for (const c of writers.splice(0)) c.close();

    const listing = await tc.admin.getAll().prefix(SUBNETS).strings();
    const inEtcd: Peer[] = [];
    for (const [key, value] of Object.entries(listing)) {
      if (key === ownKey) continue;
      const v = JSON.parse(value) as { PublicIP: string; BackendData: { VtepMAC: string } };
      inEtcd.push({ subnet: key.slice(SUBNETS.length).replace('-', '/'), publicIP: v.PublicIP, mac: v.BackendData.VtepMAC });
    }
    const want = wantedState(inEtcd);
    const converged = await untilKernelEquals(ns, want, lastWriteAt, 15_000);
    const writes = done.create + done.delete + done.mac + done.publicIP + done.both;
    const agent = tc.agents.get(0);
    expect(agent?.exitedWith ?? null, `twilld exited during the churn: ${tc.logs(0).slice(-2000)}`).to.equal(null);
    const refused = (tc.logs(0).match(/kernel refused a change/g) ?? []).length;
    console.log(`      figures: ${CHURN_SECONDS} s, ${CHURN_WRITERS} writers: ${writes} writes (${Math.round(writes / (churnMs / 1000))}/s: ` +
      `${done.create} creates, ${done.delete} deletes, ${done.mac} VtepMAC changes, ${done.publicIP} PublicIP changes, ${done.both} both); ` +
      `${inEtcd.length} leases at the end; kernel equal to etcd ${converged.ms === undefined ? 'NOT within 15 s' : `${converged.ms} ms`} after the last write; ` +
      `kernel refusals logged ${refused}`);
    expect(converged.ms, `kernel still differs from etcd 15 s after the last write: ${describeDiff(converged.last)}`).to.not.equal(undefined);
    expect(converged.ms!, `kernel equal to etcd only ${converged.ms} ms after the last write`).to.be.at.most(CONVERGE_LIMIT_MS);
  });
});
