/**
 * Watching the network config (DESIGN §5, "Config is watched"): the real
 * EtcdSubnetManager against a real etcd on 127.0.0.1. A change reaches the
 * listener within a second; a deletion is reported as undefined; a watch
 * whose revision was compacted reads the key once and carries on; an etcd
 * outage or a cut connection ends with the value that was written meanwhile;
 * stop() leaves neither a watch in etcd nor anything that keeps Node alive.
 */
import { expect } from 'chai';
import { spawn } from 'child_process';
import * as path from 'path';
import type { Etcd3 } from 'etcd3';
import { type NetworkConfigWatch } from '../../lib/subnet';
import { EtcdRegistry, EtcdSubnetManager, createEtcdClient } from '../../lib/subnet/etcd';
import { freePort, type EtcdServer } from '../harness/etcd';
import { withEtcd } from '../harness/etcd-hooks';
import { startTcpProxy, type TcpProxy } from '../harness/tcp-proxy';
import { MemoryLog } from '../harness/memory-log';
import { waitFor, sleep } from '../harness/wait';

const PREFIX = '/coreos.com/network';
const CONFIG_KEY = `${PREFIX}/config`;

const configText = (n: number) => JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan', VNI: n } });

interface Seen {
  readonly at: number;
  readonly found: { text: string; revision: bigint } | undefined;
}

/** What a watch reported, with the time of each report. */
class Recorder {
  readonly changes: Seen[] = [];
  readonly warnings: string[] = [];
  readonly hooks = {
    onChange: (found: { text: string; revision: bigint } | undefined) => this.changes.push({ at: Date.now(), found }),
    onWarning: (message: string) => this.warnings.push(message),
  };

  last(): Seen | undefined {
    return this.changes[this.changes.length - 1];
  }

  /** Waits for the report of `text` (undefined: of the deletion) after the first `after` reports. */
  async waitFor(text: string | undefined, after: number, timeoutMs: number): Promise<Seen> {
    const seen = await waitFor(`the watch to report ${text ?? 'the deletion'}`, () =>
      this.changes.slice(after).find((c) => (text === undefined ? c.found === undefined : c.found?.text === text)), timeoutMs, 10);
    if (!seen) throw new Error('waitFor returned without a value');
    return seen;
  }
}

/** One value from etcd's Prometheus metrics (etcd serves them on the client port). */
async function metric(etcd: EtcdServer, name: string): Promise<number> {
  const text = await (await fetch(`${etcd.endpoint}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`etcd has no metric ${name}`);
  return Number(line.slice(name.length + 1));
}

describe('network config watch (real etcd)', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let admin: Etcd3;
  const cleanups: (() => Promise<void> | void)[] = [];

  withEtcd((server, client) => {
    etcd = server;
    admin = client;
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await admin.delete().key(CONFIG_KEY);
  });

  /** A manager as twilld builds it (createEtcdClient), on `endpoint` (default: etcd itself). */
  function manager(endpoint = etcd.endpoint): EtcdSubnetManager {
    const client = createEtcdClient({ endpoints: [endpoint] });
    cleanups.push(() => client.close());
    const m = new EtcdSubnetManager(new EtcdRegistry(client, PREFIX), { ttlSeconds: 600, renewMarginSeconds: 60, log: new MemoryLog() });
    cleanups.push(() => m.close());
    return m;
  }

  async function put(text: string): Promise<bigint> {
    const res = await admin.put(CONFIG_KEY).value(text);
    return BigInt(res.header.revision);
  }

  /** Writes the first config and starts watching right after it, as the agent will. */
  async function watching(m: EtcdSubnetManager, rec: Recorder): Promise<{ watch: NetworkConfigWatch; revision: bigint }> {
    await put(configText(1));
    const found = await m.readNetworkConfig();
    expect(found?.text).to.equal(configText(1));
    const watch = await m.watchNetworkConfig(found!.revision + 1n, rec.hooks);
    cleanups.push(() => watch.stop());
    return { watch, revision: found!.revision };
  }

  it('delivers a put within a second, with the new text and the revision of the put', async () => {
    const m = manager();
    const rec = new Recorder();
    await watching(m, rec);
    const latencies: number[] = [];
    for (let n = 2; n <= 6; n++) {
      const t0 = Date.now();
      const revision = await put(configText(n));
      const seen = await rec.waitFor(configText(n), 0, 1000);
      latencies.push(seen.at - t0);
      expect(seen.found!.revision).to.equal(revision);
    }
    console.log(`      figures: put → onChange ${latencies.join(', ')} ms`);
    expect(rec.changes.map((c) => c.found?.text)).to.deep.equal([2, 3, 4, 5, 6].map(configText));
    expect(rec.warnings).to.deep.equal([]);
  });

  it('delivers a change made between the caller\'s read and the start of the watch', async () => {
    const m = manager();
    const rec = new Recorder();
    await put(configText(1));
    const found = await m.readNetworkConfig();
    const revision = await put(configText(2));
    const watch = await m.watchNetworkConfig(found!.revision + 1n, rec.hooks);
    cleanups.push(() => watch.stop());
    const seen = await rec.waitFor(configText(2), 0, 1000);
    expect(seen.found!.revision).to.equal(revision);
    await sleep(300);
    expect(rec.changes).to.have.length(1);
  });

  it('reports a deletion as undefined, once, and a re-created key with its new value', async () => {
    const m = manager();
    const rec = new Recorder();
    await watching(m, rec);
    await admin.delete().key(CONFIG_KEY);
    await rec.waitFor(undefined, 0, 1000);
    await admin.delete().key(CONFIG_KEY); // deleting what is not there changes nothing
    const revision = await put(configText(7));
    const seen = await rec.waitFor(configText(7), 0, 1000);
    expect(seen.found!.revision).to.equal(revision);
    expect(rec.changes.map((c) => c.found?.text)).to.deep.equal([undefined, configText(7)]);
  });

  it('after a compaction past the watch\'s revision: one warning, one re-read, the latest value, no loop', async () => {
    const m = manager();
    const rec = new Recorder();
    const first = await put(configText(1));
    for (let n = 2; n <= 5; n++) await put(configText(n));
    const latest = await put(configText(6));
    await admin.kv.compact({ revision: latest.toString(), physical: true });
    const rangesBefore = await metric(etcd, 'etcd_mvcc_range_total');

    const watch = await m.watchNetworkConfig(first + 1n, rec.hooks);
    cleanups.push(() => watch.stop());
    const seen = await rec.waitFor(configText(6), 0, 1000);
    expect(seen.found!.revision).to.equal(latest);
    await sleep(2000); // a loop would show as more reads, warnings or reports
    expect(rec.changes, 'only the latest value, once').to.have.length(1);
    expect(rec.warnings).to.have.length(1);
    expect(rec.warnings[0]).to.contain('compacted');
    expect(await metric(etcd, 'etcd_mvcc_range_total') - rangesBefore, 'reads of the key').to.equal(1);
    expect(await metric(etcd, 'etcd_debugging_mvcc_watcher_total'), 'watches in etcd').to.equal(1);

    // And the new watch works.
    await put(configText(7));
    await rec.waitFor(configText(7), 0, 1000);
  });

  it('when the key is unchanged since long before the compaction, the re-read does not fall into the compacted range again', async () => {
    const m = manager();
    const rec = new Recorder();
    const first = await put(configText(1));
    for (let i = 0; i < 5; i++) await admin.put(`${PREFIX}/other`).value(String(i));
    const rev = (await admin.kv.range({ key: Buffer.from(CONFIG_KEY) })).header.revision;
    await admin.kv.compact({ revision: rev, physical: true });
    const watch = await m.watchNetworkConfig(first + 1n, rec.hooks); // a watch that fell behind
    cleanups.push(() => watch.stop());
    await sleep(1500);
    expect(rec.warnings).to.have.length(1);
    expect(rec.changes, 'the value the caller already holds is not reported again').to.deep.equal([]);
    await put(configText(2));
    await rec.waitFor(configText(2), 0, 1000);
    await admin.delete().key(`${PREFIX}/other`);
  });

  it('across an etcd outage: one warning, no report per retry, and the change written right after etcd returns arrives', async () => {
    const m = manager();
    const rec = new Recorder();
    await watching(m, rec);
    await etcd.stop();
    await sleep(4000);
    expect(rec.warnings, 'one warning for the whole outage').to.have.length(1);
    expect(rec.warnings[0]).to.contain('lost the watch on the network config');
    await etcd.start();
    const restarted = Date.now();
    // Another writer changes the config as soon as etcd is back, racing the watch's return.
    const writer = createEtcdClient({ endpoints: [etcd.endpoint] });
    cleanups.push(() => writer.close());
    const revision = await waitFor('the writer to get through', async () => BigInt((await writer.put(CONFIG_KEY).value(configText(8))).header.revision), 10_000, 100);
    const seen = await rec.waitFor(configText(8), 0, 10_000);
    console.log(`      figures: change written after etcd's return reported ${seen.at - restarted} ms after the restart`);
    expect(seen.found!.revision).to.equal(revision);
    expect(rec.changes, 'nothing but the change').to.have.length(1);
    expect(rec.warnings).to.have.length(1);

    // The watch is live again: the next change takes under a second.
    const t0 = Date.now();
    await put(configText(9));
    const next = await rec.waitFor(configText(9), 0, 1000);
    expect(next.at - t0).to.be.below(1000);
  });

  it('across an outage with no change: nothing reported (the re-read finds the value already held)', async () => {
    const m = manager();
    const rec = new Recorder();
    await watching(m, rec);
    await etcd.stop();
    await sleep(1500);
    await etcd.start();
    await sleep(4000); // long enough for the watch to be back (retries are at most 3 s apart)
    expect(rec.changes).to.deep.equal([]);
    await put(configText(3));
    await rec.waitFor(configText(3), 0, 1000);
  });

  describe('cut off from etcd while others write and compact', () => {
    let proxy: TcpProxy;
    beforeEach(async () => {
      proxy = await startTcpProxy(etcd.port);
    });
    afterEach(async () => {
      await proxy.close();
    });

    it('converges to the value written meanwhile, with one re-read and no loop', async () => {
      const m = manager(proxy.endpoint);
      const rec = new Recorder();
      await watching(m, rec);
      proxy.cut();
      await sleep(1000);
      await put(configText(2));
      await admin.delete().key(CONFIG_KEY);
      const revision = await put(configText(3));
      await admin.kv.compact({ revision: revision.toString(), physical: true });
      const rangesBefore = await metric(etcd, 'etcd_mvcc_range_total');
      proxy.restore();
      const restored = Date.now();
      const seen = await rec.waitFor(configText(3), 0, 10_000);
      console.log(`      figures: converged ${seen.at - restored} ms after the connection came back`);
      expect(seen.found!.revision).to.equal(revision);
      await sleep(3000);
      expect(rec.changes.map((c) => c.found?.text), 'only the net result').to.deep.equal([configText(3)]);
      expect(rec.warnings).to.have.length(1);
      expect(await metric(etcd, 'etcd_mvcc_range_total') - rangesBefore, 'reads of the key').to.equal(1);
    });

    it('a deletion made meanwhile is reported as undefined after the return', async () => {
      const m = manager(proxy.endpoint);
      const rec = new Recorder();
      await watching(m, rec);
      proxy.cut();
      await sleep(1000);
      await admin.delete().key(CONFIG_KEY);
      proxy.restore();
      await rec.waitFor(undefined, 0, 10_000);
      expect(rec.changes).to.have.length(1);
    });
  });

  describe('stop()', () => {
    it('removes the watch from etcd and reports nothing afterwards', async () => {
      const m = manager();
      const rec = new Recorder();
      const { watch } = await watching(m, rec);
      expect(await metric(etcd, 'etcd_debugging_mvcc_watcher_total')).to.equal(1);
      await watch.stop();
      await waitFor('etcd to drop the watch', async () => (await metric(etcd, 'etcd_debugging_mvcc_watcher_total')) === 0, 2000);
      await put(configText(2));
      await sleep(500);
      expect(rec.changes).to.deep.equal([]);
      await watch.stop(); // twice is harmless
    });

    it('the manager\'s close() stops its config watches too', async () => {
      const m = manager();
      const rec = new Recorder();
      await watching(m, rec);
      await m.close();
      await waitFor('etcd to drop the watch', async () => (await metric(etcd, 'etcd_debugging_mvcc_watcher_total')) === 0, 2000);
    });

    /**
     * A separate Node process does what the agent does and then stops;
     * it must end on its own (nothing left that keeps the event loop
     * alive). Resolves with its output; fails if it is still running after
     * `limitMs`.
     */
    async function runChild(script: string, limitMs: number): Promise<{ out: string; ms: number; code: number | null }> {
      const subnet = path.resolve(__dirname, '../../lib/subnet/etcd');
      const child = spawn(process.execPath, ['-e', `const lib = require(${JSON.stringify(subnet)});\n${script}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const t0 = Date.now();
      const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      clearTimeout(timer);
      return { out, ms: Date.now() - t0, code };
    }

    const setup = (endpoint: string) => `
      const client = lib.createEtcdClient({ endpoints: [${JSON.stringify(endpoint)}] });
      const log = { error() {}, warn() {}, info() {}, debug() {} };
      const m = new lib.EtcdSubnetManager(new lib.EtcdRegistry(client, ${JSON.stringify(PREFIX)}), { ttlSeconds: 600, renewMarginSeconds: 60, log });
      const said = (what) => console.log(what);
    `;

    it('a process that watched, got a change and stopped exits by itself', async () => {
      const from = (await put(configText(1))) + 1n;
      const script = `${setup(etcd.endpoint)}
        (async () => {
          let got;
          const seen = new Promise((r) => (got = r));
          const w = await m.watchNetworkConfig(${from}n, { onChange: (f) => got(f && f.text), onWarning: said });
          said('watching');
          said('got ' + (await seen));
          await w.stop();
          await m.close();
          client.close();
          said('stopped');
        })();`;
      const child = runChild(script, 15_000);
      await sleep(1500);
      await put(configText(2));
      const { out, ms, code } = await child;
      expect(out).to.contain(`got ${configText(2)}`).and.to.contain('stopped');
      expect(code, `the process was killed: something kept it alive\n${out}`).to.equal(0);
      console.log(`      figures: the process ended ${ms} ms after it started`);
    });

    it('a process whose watch is waiting to retry (etcd unreachable) exits by itself after close()', async () => {
      const port = await freePort(); // nothing listens there
      const script = `${setup(`http://127.0.0.1:${port}`)}
        (async () => {
          const started = m.watchNetworkConfig(5n, { onChange: () => said('change'), onWarning: (w) => said('warning: ' + w) });
          await new Promise((r) => setTimeout(r, 1500));
          await m.close();
          await started;
          client.close();
          said('closed');
        })();`;
      const { out, code } = await runChild(script, 15_000);
      expect(out).to.contain('closed');
      expect(code, `the process was killed: something kept it alive\n${out}`).to.equal(0);
    });
  });
});
