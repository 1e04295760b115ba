/**
 * The bgp backend's BIRD engine on two network namespaces joined by a veth
 * (198.18.200.1/24 and .2/24), each announcing a /24 of 10.244.0.0/16 over
 * iBGP to the other. Each engine runs in its namespace (bird-driver.ts);
 * this process checks the kernel with `ip -n` and signals BIRD only by PID.
 * Needs root and bird (BIRD 2); skipped with one line without bird.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'child_process';
import { randomBytes } from 'crypto';
import { existsSync, readFileSync, rmSync } from 'fs';
import * as path from 'path';
import * as readline from 'readline';
import { birdConfig, peerProtocolName } from '../../backends/bgp/bird-config';
import type { BirdSession } from '../../backends/bgp/bird-control';
import { birdMissing, type DestroyResult } from '../../backends/bgp/bird-engine';
import { addNetns, deleteNetns, ipIn, isAlive, killNetnsProcesses, killPid } from '../harness/netns';
import { waitFor } from '../harness/wait';
import type { BirdDriverError, BirdDriverReply } from './bird-driver';

const DRIVER = path.join(__dirname, 'bird-driver.js');
const ASN = 64512;

class DriverCallError extends Error {
  constructor(readonly error: BirdDriverError) {
    super(`${error.name}: ${error.message}`);
  }
}

/** A BirdEngine in a namespace. */
class Node {
  readonly reconciles: string[] = [];
  readonly logs: string[] = [];
  private readonly calls = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private nextId = 1;
  private stderr = '';
  private readonly exited: Promise<void>;

  constructor(readonly ns: string, readonly index: 1 | 2, private readonly child: ChildProcess) {
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    child.stdin?.on('error', () => undefined);
    readline.createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(line));
    this.exited = new Promise((resolve) =>
      child.on('exit', () => {
        for (const c of this.calls.values()) c.reject(new Error(`driver in ${ns} exited: ${this.stderr}`));
        this.calls.clear();
        resolve();
      }),
    );
  }

  static start(ns: string, index: 1 | 2): Node {
    return new Node(ns, index, spawn('ip', ['netns', 'exec', ns, process.execPath, DRIVER], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  get ip(): string {
    return `198.18.200.${this.index}`;
  }

  get subnet(): string {
    return `10.244.${this.index}.0/24`;
  }

  config(peer?: Node): string {
    return birdConfig({
      routerId: this.ip,
      asn: ASN,
      ownSubnet: this.subnet,
      network: '10.244.0.0/16',
      peers: peer ? [{ name: peerProtocolName('mesh', peer.ip), ip: peer.ip, asn: ASN, password: 'twill-test' }] : [],
      gracefulRestart: true,
      kernelMetric: 32,
    });
  }

  call<T>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin!.write(`${JSON.stringify({ id, method, args })}\n`);
    });
  }

  async failure(method: string, ...args: unknown[]): Promise<BirdDriverError> {
    try {
      await this.call(method, ...args);
    } catch (err) {
      if (err instanceof DriverCallError) return err.error;
      throw err;
    }
    throw new Error(`${method} succeeded in ${this.ns}, expected it to fail`);
  }

  async session(): Promise<BirdSession | undefined> {
    return (await this.call<BirdSession[]>('sessions'))[0];
  }

  /** `ip route show proto bird` in the namespace, one line per route. */
  async birdRoutes(): Promise<string[]> {
    return (await ipIn(this.ns, ['route', 'show', 'proto', 'bird'])).split('\n').map((l) => l.trim()).filter(Boolean);
  }

  async stop(): Promise<void> {
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.pid !== undefined && process.kill(this.child.pid, 'SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }

  private onLine(line: string): void {
    const reply = JSON.parse(line) as BirdDriverReply;
    if ('reconcile' in reply) {
      this.reconciles.push(reply.reconcile);
      return;
    }
    if ('log' in reply) {
      this.logs.push(`${reply.log.level} ${reply.log.message} ${JSON.stringify(reply.log.meta ?? {})}`);
      return;
    }
    const call = this.calls.get(reply.id);
    if (!call) return;
    this.calls.delete(reply.id);
    if ('error' in reply) call.reject(new DriverCallError(reply.error));
    else call.resolve(reply.result);
  }
}

describe('bgp backend: the BIRD engine on two namespaces', function () {
  this.timeout(60_000);
  const id = randomBytes(3).toString('hex');
  const nsA = `twtest-bird-${id}-a`;
  const nsB = `twtest-bird-${id}-b`;
  let a: Node;
  let b: Node;
  /** Run directories the engines used, removed in `after` whatever happened. */
  const runDirs: string[] = [];

  before(async function () {
    const missing = birdMissing();
    if (missing) {
      console.log(`      skipped: ${missing}`);
      this.skip();
    }
    await addNetns(nsA);
    await addNetns(nsB);
    // Created straight into the namespaces: nothing of the test ever sits in the root namespace.
    await ipIn(nsA, ['link', 'add', 'bgp0', 'type', 'veth', 'peer', 'name', 'bgp0', 'netns', nsB]);
    for (const [ns, addr] of [[nsA, '198.18.200.1/24'], [nsB, '198.18.200.2/24']]) {
      await ipIn(ns, ['addr', 'add', addr, 'dev', 'bgp0']);
      await ipIn(ns, ['link', 'set', 'bgp0', 'up']);
    }
    a = Node.start(nsA, 1);
    b = Node.start(nsB, 2);
    for (const n of [a, b]) runDirs.push((await n.call<{ dir: string }>('info')).dir);
  });

  after(async function () {
    this.timeout(30_000);
    for (const n of [a, b]) {
      if (!n) continue;
      await n.call('destroy').catch(() => undefined);
      await n.stop();
    }
    // Whatever a failed test left running in them (a BIRD included) is ended by PID.
    for (const ns of [nsA, nsB]) {
      await killNetnsProcesses(ns);
      await deleteNetns(ns);
    }
    for (const dir of runDirs) rmSync(dir, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') {
      for (const n of [a, b]) if (n) console.log(`      ${n.ns} engine log:\n        ${n.logs.join('\n        ')}`);
    }
  });

  it('starts no BIRD for a configuration BIRD cannot read, and says which line', async function () {
    const bad = a.config(b).replace('merge paths off;', 'merge paths sometimes;');
    const err = await a.failure('ensure', bad);
    expect(err.name).to.equal('BirdConfigFileError');
    expect(err.line).to.equal(bad.split('\n').findIndex((l) => l.includes('merge paths')) + 1);
    expect(await a.call('pid')).to.equal(null);
  });

  it('starts BIRD in each namespace; the session reaches Established and each kernel gets the peer\'s /24 via the peer, proto bird, metric 32', async function () {
    expect(await Promise.all([a.call('ensure', a.config(b)), b.call('ensure', b.config(a))])).to.deep.equal(['started', 'started']);
    for (const n of [a, b]) {
      const s = await waitFor(`an Established session in ${n.ns}`, async () => {
        const s = await n.session();
        return s?.info.startsWith('Established') ? s : undefined;
      }, 15_000, 200);
      const peer = n === a ? b : a;
      expect(s).to.include({ name: peerProtocolName('mesh', peer.ip), proto: 'BGP', state: 'up', neighbor: peer.ip, neighborAs: ASN });
      expect(s?.since).to.match(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    }
    for (const [n, peer] of [[a, b], [b, a]] as const) {
      const routes = await waitFor(`${peer.subnet} in ${n.ns}'s kernel`, async () => ((await n.birdRoutes()).length ? n.birdRoutes() : undefined), 10_000, 100);
      expect(routes).to.deep.equal([`${peer.subnet} via ${peer.ip} dev bgp0 metric 32`]);
      const s = await n.session();
      expect(s).to.include({ routesImported: 1, routesExported: 1 });
    }
  });

  it('accepts from a peer only subnets inside the network that are not this node\'s, nor the network itself', async function () {
    // b announces, besides its own subnet, a part of a's, the whole network, a subnet outside it and a legitimate third one.
    const noisy = b.config(a)
      .replace('if proto = "twill_own" then accept;', 'if proto = "twill_own" || proto = "extra" then accept;')
      .concat('\nprotocol static extra {\n  ipv4;\n  route 10.244.1.128/25 blackhole;\n  route 10.244.0.0/16 blackhole;\n  route 10.245.0.0/24 blackhole;\n  route 10.244.3.0/24 blackhole;\n}\n');
    expect(await b.call('ensure', noisy)).to.equal('running');
    const want = [`${b.subnet} via ${b.ip} dev bgp0 metric 32`, `10.244.3.0/24 via ${b.ip} dev bgp0 metric 32`];
    await waitFor(`only ${b.subnet} and 10.244.3.0/24 in ${nsA}`, async () => JSON.stringify(await a.birdRoutes()) === JSON.stringify(want), 10_000, 100);
    expect(await a.session()).to.include({ routesImported: 2 });
    expect(await b.call('ensure', b.config(a))).to.equal('running');
    await waitFor(`10.244.3.0/24 withdrawn from ${nsA}`, async () => (await a.birdRoutes()).length === 1, 10_000, 100);
  });

  it('refuses a configuration BIRD cannot read, naming the line, and keeps the running one and its session', async function () {
    const before = await a.session();
    const good = a.config(b);
    const bad = good.replace('merge paths off;', 'merge paths sometimes;');
    const err = await a.failure('ensure', bad);
    expect(err.name).to.equal('BirdConfigFileError');
    expect(err.line).to.equal(good.split('\n').findIndex((l) => l.includes('merge paths')) + 1);
    expect(err.message).to.match(/bird\.conf\.new:\d+:\d+ syntax error/);
    const { configFile } = await a.call<{ configFile: string }>('info');
    expect(readFileSync(configFile, 'utf8')).to.equal(good);
    expect(await a.session()).to.deep.include({ info: before?.info, since: before?.since });
    expect(await a.call('ensure', good)).to.equal('running');
  });

  it('withdraws the routes both ways when the peer is taken out of the configuration, and brings them back when it returns', async function () {
    expect(await a.call('ensure', a.config())).to.equal('running');
    expect(await a.call<BirdSession[]>('sessions')).to.deep.equal([]);
    await waitFor(`${a.subnet} gone from ${nsB}`, async () => (await b.birdRoutes()).length === 0, 10_000, 100);
    expect(await a.birdRoutes()).to.deep.equal([]);
    expect(await a.call('ensure', a.config(b))).to.equal('running');
    await waitFor(`${a.subnet} back in ${nsB}`, async () => (await b.birdRoutes()).length === 1, 15_000, 100);
    await waitFor(`${b.subnet} back in ${nsA}`, async () => (await a.birdRoutes()).length === 1, 15_000, 100);
  });

  it('adopts the running BIRD from a new engine (a restarted twilld): same PID, the session never dropped', async function () {
    const pid = await a.call<number>('pid');
    const before = await a.session();
    await a.call('renew');
    expect(await a.call('ensure', a.config(b))).to.equal('adopted');
    expect(await a.call<number>('pid')).to.equal(pid);
    expect(await a.session()).to.deep.include({ info: before?.info, since: before?.since });
    expect(a.logs.some((l) => l.includes('BIRD adopted'))).to.equal(true);
  });

  it('after BIRD is killed, asks for a reconcile once and starts a new one in graceful restart recovery that keeps the routes', async function () {
    const pid = await b.call<number>('pid');
    const reconciles = b.reconciles.length;
    process.kill(pid, 'SIGKILL');
    await waitFor('a reconcile asked for', () => b.reconciles.length > reconciles, 5000, 20);
    expect(b.reconciles.slice(reconciles)).to.deep.equal(['BIRD exited']);
    expect(await b.birdRoutes(), 'routes left by the killed BIRD').to.have.length(1);
    expect(await b.call('ensure', b.config(a))).to.equal('started');
    const fresh = await b.call<number>('pid');
    expect(fresh).to.not.equal(pid);
    expect(b.logs.some((l) => l.includes('BIRD started') && l.includes('"recovery":true'))).to.equal(true);
    // The route stays through the recovery; a BIRD started without it would flush it until the session was back.
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      expect(await b.birdRoutes(), 'b\'s route to a during the recovery').to.deep.equal([`${a.subnet} via ${a.ip} dev bgp0 metric 32`]);
      await new Promise((r) => setTimeout(r, 100));
    }
    await waitFor(`the session in ${nsB} Established again`, async () => (await b.session())?.info.startsWith('Established'), 15_000, 200);
    expect(b.reconciles.slice(reconciles)).to.deep.equal(['BIRD exited']);
  });

  it('destroy ends BIRD by its PID: its routes go, the peer withdraws its subnet, its directory is removed', async function () {
    const pid = await b.call<number>('pid');
    const result = await b.call<DestroyResult>('destroy');
    // What BIRD itself removed on SIGTERM or, if its kernel protocol had not synced yet, the engine after it.
    expect(result).to.include({ pid, killed: false });
    console.log(`      destroy after a graceful restart recovery: ${result.routesRemoved} route(s) BIRD left were removed by the engine`);
    expect(await isAlive(pid)).to.equal(false);
    expect(await b.birdRoutes()).to.deep.equal([]);
    await waitFor(`${b.subnet} gone from ${nsA}`, async () => (await a.birdRoutes()).length === 0, 5000, 50);
    expect(existsSync(runDirs[1])).to.equal(false);
    expect(b.reconciles.filter((r) => r === 'BIRD exited')).to.have.length(1);
  });

  it('replaces a BIRD whose process lives but does not answer on its socket', async function () {
    const pid = await a.call<number>('pid');
    process.kill(pid, 'SIGSTOP');
    try {
      expect(await a.call('ensure', a.config(b))).to.equal('started');
    } finally {
      await killPid(pid, 100);
    }
    expect(await isAlive(pid)).to.equal(false);
    expect(await a.call<number>('pid')).to.be.a('number').and.not.equal(pid);
    expect(a.logs.some((l) => l.includes('BIRD does not answer on its control socket; killing it'))).to.equal(true);
    expect(await a.call('ensure', a.config(b))).to.equal('running');
  });

  it('destroy of a BIRD that does not answer kills it and deletes the routes it left', async function () {
    const pid = await a.call<number>('pid');
    // A stopped BIRD keeps its routes and its socket but answers nothing, like a hung one.
    await ipIn(nsA, ['route', 'add', '10.244.9.0/24', 'via', '198.18.200.2', 'proto', 'bird', 'metric', '32']);
    process.kill(pid, 'SIGSTOP');
    try {
      const result = await a.call<DestroyResult>('destroy');
      expect(result).to.deep.equal({ pid, killed: true, routesRemoved: 1 });
    } finally {
      await killPid(pid, 100);
    }
    expect(await a.birdRoutes()).to.deep.equal([]);
  });
});
