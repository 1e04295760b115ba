/**
 * Reliability issue, fault 7: hundreds of agents racing for subnets.
 * Each racer is a separate process running the real EtcdSubnetManager
 * (test/harness/subnet-racer.ts, no datapath) against one etcd on
 * 127.0.0.1. The network 10.20.0.0/16 in /24s has 255 allocatable subnets
 * (SubnetMin 10.20.1.0 .. SubnetMax 10.20.255.0, flanneld's defaults).
 * Every racer is killed by PID in `after`, whatever happened.
 * Figures (wall times, memory) are printed for bench/README.md.
 */
import { expect } from 'chai';
import { ChildProcess, spawn } from 'child_process';
import { readFileSync } from 'fs';
import type { Etcd3 } from 'etcd3';
import { parseNetworkConfig } from '../../lib/config/parse';
import { allocationRange, describeRange, freeSubnets } from '../../lib/subnet/allocator';
import type { EtcdServer } from '../harness/etcd';
import { withEtcd } from '../harness/etcd-hooks';
import { DEFAULT_RACER_CONFIG, RacerResult } from '../harness/subnet-racer';
import { bundleRacer } from '../harness/racer-bundle';
import { waitFor, sleep } from '../harness/wait';

const SUBNETS = '/coreos.com/network/subnets/';
const TTL_SECONDS = 600;

const RANGE = allocationRange(parseNetworkConfig(JSON.stringify(DEFAULT_RACER_CONFIG), ['udp']));
/** Every allocatable subnet, "10.20.1.0/24" … "10.20.255.0/24". */
const ALLOCATABLE = freeSubnets(RANGE, new Set(), Number.MAX_SAFE_INTEGER).map((k) => k.subnet.toString());

/** A distinct fake public IP per racer number (198.19.0.0/16, never sent to). */
function publicIP(n: number): string {
  return `198.19.${Math.floor(n / 250)}.${1 + (n % 250)}`;
}

function keyOf(subnet: string): string {
  return subnet.replace('/', '-');
}

interface Racer {
  readonly pid: number;
  readonly publicIP: string;
  readonly child: ChildProcess;
  /** Resolves with the racer's JSON line once it has exited. */
  readonly result: Promise<RacerResult>;
  /** True once a --go-on-stdin racer is loaded, connected and waiting for "go". */
  ready: boolean;
  /** True once a --retry racer has seen the network full. */
  waiting: boolean;
  done: boolean;
}

interface StartOptions {
  /** Retry OutOfSubnetsError every 500 ms (--retry). */
  readonly retry?: boolean;
  /** Load and connect, then wait for `go()` (--go-on-stdin). */
  readonly holdAtStart?: boolean;
}

/** Every racer process the tests start, so `after` can kill them all by PID. */
class RacerPool {
  private readonly live = new Set<Racer>();

  /** `racer`: the racer's script (its bundle, test/harness/racer-bundle.ts). */
  constructor(private readonly endpoint: string, private readonly racer: string) {}

  /** Spawns one racer per public IP, all in one go (no waiting between spawns). */
  start(publicIPs: readonly string[], opts: StartOptions = {}): Racer[] {
    return publicIPs.map((ip) => this.startOne(ip, opts));
  }

  /** Releases racers held at start, all in the same tick. */
  go(racers: readonly Racer[]): void {
    for (const r of racers) r.child.stdin?.end('go\n');
  }

  running(): Racer[] {
    return [...this.live];
  }

  /** SIGKILL to every racer still alive, by PID; resolves once all have exited. */
  async killAll(): Promise<void> {
    const racers = [...this.live];
    for (const r of racers) {
      try {
        process.kill(r.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await Promise.all(racers.map((r) => r.result.catch(() => undefined)));
  }

  private startOne(ip: string, opts: StartOptions): Racer {
    const argv = ['--max-old-space-size=64', this.racer, '--etcd', this.endpoint, '--public-ip', ip, '--ttl', String(TTL_SECONDS)];
    if (opts.retry) argv.push('--retry');
    if (opts.holdAtStart) argv.push('--go-on-stdin');
    // Under `nice`: a forked child must run until it execs before spawn()
    // returns, and with hundreds of racers loading on two cores at normal
    // priority that wait grows with every racer started. `nice` execs node
    // at once (same PID), so the spawn loop stays fast and etcd keeps its share.
    const child = spawn('nice', ['-n', '19', process.execPath, ...argv], { stdio: [opts.holdAtStart ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    if (child.pid === undefined) throw new Error('a subnet racer did not start');
    child.stdin?.on('error', () => undefined); // a racer that died cannot be told "go"; its result says why
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const racer: Racer = {
      pid: child.pid,
      publicIP: ip,
      child,
      ready: false,
      waiting: false,
      done: false,
      result: new Promise<RacerResult>((resolve) => {
        child.once('close', (code, signal) => {
          this.live.delete(racer);
          racer.done = true;
          const line = stdout.trim().split('\n').pop() ?? '';
          try {
            resolve(JSON.parse(line) as RacerResult);
          } catch {
            resolve({ error: `no result (exit ${code ?? signal}): ${stderr.slice(-300)}`, name: 'RacerCrashed' });
          }
        });
      }),
    };
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-2000);
      if (stderr.includes('"ready"')) racer.ready = true;
      if (stderr.includes('"waiting"')) racer.waiting = true;
    });
    this.live.add(racer);
    return racer;
  }
}

/** Peak memory of the racers while a phase runs: RSS and PSS summed over live racers, and the machine's lowest MemAvailable. */
class MemorySampler {
  peakRssMb = 0;
  peakPssMb = 0;
  minAvailableMb = Number.POSITIVE_INFINITY;
  private readonly timer: NodeJS.Timeout;

  constructor(pool: RacerPool) {
    this.timer = setInterval(() => this.sample(pool), 500);
    this.sample(pool);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sample(pool: RacerPool): void {
    let rss = 0;
    let pss = 0;
    for (const r of pool.running()) {
      try {
        const text = readFileSync(`/proc/${r.pid}/smaps_rollup`, 'utf8');
        rss += Number(/^Rss:\s+(\d+)/m.exec(text)?.[1] ?? 0);
        pss += Number(/^Pss:\s+(\d+)/m.exec(text)?.[1] ?? 0);
      } catch {
        // exited between listing and reading
      }
    }
    this.peakRssMb = Math.max(this.peakRssMb, rss / 1024);
    this.peakPssMb = Math.max(this.peakPssMb, pss / 1024);
    const available = Number(/^MemAvailable:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1024;
    this.minAvailableMb = Math.min(this.minAvailableMb, available);
  }

  describe(): string {
    return `racers' peak RSS ${Math.round(this.peakRssMb)} MB (PSS ${Math.round(this.peakPssMb)} MB), lowest MemAvailable ${Math.round(this.minAvailableMb)} MB`;
  }
}

interface RaceFigures {
  /** The spawn loop: all processes created. */
  readonly spawnMs: number;
  /** From the first spawn until every racer was loaded, connected and held. */
  readonly readyMs: number;
  /** From "go" until every racer had exited: the race itself. */
  readonly raceMs: number;
  readonly memory: MemorySampler;
}

/**
 * Starts `count` racers at once and holds each once it is loaded and
 * connected; when all are held, releases them in the same tick, so that
 * every acquisition runs concurrently (loading 300 Node processes on two
 * cores takes a minute; without the hold the first would be done before
 * the last started). Returns results in start order.
 */
async function raceAll(pool: RacerPool, firstIp: number, count: number): Promise<{ results: { racer: Racer; result: RacerResult }[]; figures: RaceFigures }> {
  const started = Date.now();
  const racers = pool.start(Array.from({ length: count }, (_, i) => publicIP(firstIp + i)), { holdAtStart: true });
  const spawnMs = Date.now() - started;
  const memory = new MemorySampler(pool);
  try {
    await waitFor(`${count} racers to load and connect`, () => racers.every((r) => r.ready || r.done), 360_000, 100);
    const readyMs = Date.now() - started;
    const goAt = Date.now();
    pool.go(racers);
    const results = await Promise.all(racers.map(async (racer) => ({ racer, result: await racer.result })));
    return { results, figures: { spawnMs, readyMs, raceMs: Date.now() - goAt, memory } };
  } finally {
    memory.stop();
  }
}

function describeRace(count: number, f: RaceFigures, results: readonly { result: RacerResult }[]): string {
  const collisions = results.reduce((n, { result }) => n + ('collisions' in result ? result.collisions : 0), 0);
  const retries = results.reduce((n, { result }) => n + ('collisionRetries' in result ? result.collisionRetries : 0), 0);
  const times = results.flatMap(({ result }) => ('acquireMs' in result ? [result.acquireMs] : [])).sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)] ?? 0;
  return `${count} racers: spawn loop ${f.spawnMs} ms, all loaded and connected ${f.readyMs} ms, race (go → all exited) ${f.raceMs} ms, ` +
    `acquisition median ${median} ms, slowest ${times[times.length - 1] ?? 0} ms; ` +
    `${collisions} collisions, ${retries} collision-limit retries; ${f.memory.describe()}`;
}

/** subnet key → PublicIP of every lease in etcd. */
async function leasesInEtcd(admin: Etcd3): Promise<Map<string, string>> {
  const all = await admin.getAll().prefix(SUBNETS).strings();
  return new Map(Object.entries(all).map(([k, v]) => [k.slice(SUBNETS.length), (JSON.parse(v) as { PublicIP: string }).PublicIP]));
}

function subnetsOf(results: readonly { result: RacerResult }[]): string[] {
  return results.flatMap(({ result }) => ('subnet' in result ? [result.subnet] : []));
}

function errorsOf(results: readonly { result: RacerResult }[]): { error: string; name: string }[] {
  return results.flatMap(({ result }) => ('error' in result ? [result] : []));
}

describe('subnet managers racing for subnets, each in its own process, against one etcd', function () {
  this.timeout(480_000);
  let etcd: EtcdServer;
  let admin: Etcd3;
  let pool: RacerPool;
  let racer: string;

  before(async () => {
    racer = await bundleRacer();
  });
  // Declared before withEtcd's hooks, so the racers are killed before etcd stops.
  after(async () => {
    await pool?.killAll();
  });
  withEtcd((server, client) => {
    etcd = server;
    admin = client;
    pool = new RacerPool(etcd.endpoint, racer);
  });

  it('the allocatable range is SubnetMin 10.20.1.0/24 .. SubnetMax 10.20.255.0/24: 255 subnets, as flanneld computes it', () => {
    expect(describeRange(RANGE)).to.equal('10.20.1.0/24 .. 10.20.255.0/24');
    expect(ALLOCATABLE).to.have.length(255);
  });

  it('200 racers started at once get 200 distinct subnets, each stored in etcd under the winner\'s PublicIP', async () => {
    await admin.delete().prefix(SUBNETS);
    const { results, figures } = await raceAll(pool, 0, 200);
    const errors = errorsOf(results);
    expect(errors, JSON.stringify(errors.slice(0, 5))).to.deep.equal([]);
    const subnets = subnetsOf(results);
    expect(subnets).to.have.length(200);
    expect(new Set(subnets).size, 'duplicate subnets').to.equal(200);
    for (const s of subnets) expect(ALLOCATABLE).to.include(s);
    const stored = await leasesInEtcd(admin);
    expect(stored.size).to.equal(200);
    for (const { racer, result } of results) {
      if ('subnet' in result) expect(stored.get(keyOf(result.subnet)), result.subnet).to.equal(racer.publicIP);
    }
    console.log(`      figures: ${describeRace(200, figures, results)}`);
  });

  it('300 racers for 255 subnets: exactly 255 get distinct subnets, the other 45 fail with OutOfSubnetsError naming the range', async () => {
    await admin.delete().prefix(SUBNETS);
    const { results, figures } = await raceAll(pool, 0, 300);
    const subnets = subnetsOf(results);
    const errors = errorsOf(results);
    const unexpected = errors.filter((e) => e.name !== 'OutOfSubnetsError');
    expect(unexpected, JSON.stringify(unexpected.slice(0, 5))).to.deep.equal([]);
    expect(subnets).to.have.length(ALLOCATABLE.length);
    expect([...subnets].sort()).to.deep.equal([...ALLOCATABLE].sort());
    expect(errors).to.have.length(300 - ALLOCATABLE.length);
    for (const e of errors) {
      expect(e.error).to.contain('out of subnets').and.to.contain('10.20.1.0/24 .. 10.20.255.0/24');
    }
    expect((await leasesInEtcd(admin)).size).to.equal(ALLOCATABLE.length);
    console.log(`      figures: ${describeRace(300, figures, results)}; ${subnets.length} subnets, ${errors.length} OutOfSubnetsError`);
  });

  it('45 racers waiting on a full network get exactly the 10 subnets freed by deleting 10 leases, and the rest keep waiting', async () => {
    // Continues from a full network; fills it if the previous test left it short.
    const held = await leasesInEtcd(admin);
    const filler = String((await admin.leaseClient.leaseGrant({ TTL: TTL_SECONDS })).ID);
    let n = 0;
    for (const s of ALLOCATABLE) {
      if (!held.has(keyOf(s))) await admin.put(SUBNETS + keyOf(s)).value(JSON.stringify({ PublicIP: publicIP(2000 + n++), PublicIPv6: null })).lease(filler);
    }
    const waiters = 300 - ALLOCATABLE.length;
    const started = Date.now();
    const racers = pool.start(Array.from({ length: waiters }, (_, i) => publicIP(1000 + i)), { retry: true });
    await waitFor(`all ${waiters} racers to see the network full`, () => racers.every((r) => r.waiting || r.done), 120_000, 100);
    const early = racers.filter((r) => r.done);
    expect(early.length, 'racers that finished before any lease was freed').to.equal(0);
    const waitingMs = Date.now() - started;

    const all = [...(await leasesInEtcd(admin)).keys()];
    const freed = all.sort(() => Math.random() - 0.5).slice(0, 10);
    const deletedAt = Date.now();
    for (const key of freed) await admin.delete().key(SUBNETS + key);
    await waitFor('10 waiting racers to get a subnet', () => racers.filter((r) => r.done).length >= 10, 30_000, 50);
    const tenthMs = Date.now() - deletedAt;
    await sleep(3000); // six retry periods: nobody else may get one
    const winners = racers.filter((r) => r.done);
    expect(winners).to.have.length(10);
    const results = await Promise.all(winners.map(async (racer) => ({ racer, result: await racer.result })));
    const got = subnetsOf(results);
    expect(errorsOf(results)).to.deep.equal([]);
    expect(got.map(keyOf).sort()).to.deep.equal([...freed].sort());
    const stored = await leasesInEtcd(admin);
    expect(stored.size).to.equal(ALLOCATABLE.length);
    for (const { racer, result } of results) {
      if ('subnet' in result) expect(stored.get(keyOf(result.subnet))).to.equal(racer.publicIP);
    }
    expect(racers.filter((r) => !r.done)).to.have.length(waiters - 10);
    console.log(`      figures: ${waiters} --retry racers all waiting ${waitingMs} ms after spawn; 10 leases deleted → 10th freed subnet taken after ${tenthMs} ms; ` +
      `${waiters - 10} still waiting 3 s later`);
  });
});
