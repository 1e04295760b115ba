/**
 * twilld (the real process, alloc backend, root namespace) against a real
 * etcd, fed bad input while it runs: leases from "other nodes" that are not
 * JSON, of the wrong types, oversized, outside the network, of the wrong
 * length, under a key that is no lease key, two keys claiming one subnet,
 * and a lease written over this node's own key — and, at start, a garbled
 * subnet.env. It must keep running, say once per bad entry what is wrong
 * with it (not once per retry or re-list), and go on taking good leases.
 *
 * The alloc backend programs nothing, so what the lease watcher made of each
 * entry is read from twilld's log (JSON lines): `lease added` and the like
 * from the agent, `skipping lease "<key>": <fault>` from the watcher.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Etcd3 } from 'etcd3';
import type { EtcdServer } from '../harness/etcd';
import { withEtcd } from '../harness/etcd-hooks';
import { startDaemon, type DaemonProcess } from '../harness/daemon';
import { waitFor, sleep } from '../harness/wait';

const PREFIX = '/coreos.com/network';
const SUBNETS = `${PREFIX}/subnets/`;
const CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}';
const PUBLIC_IP = '198.18.0.3';

/** A lease value as another node would write it. */
const leaseOf = (publicIP: string) => JSON.stringify({ PublicIP: publicIP, PublicIPv6: null });

interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly [meta: string]: unknown;
}

/** twilld's log so far, one object per JSON line (anything else it printed is left out). */
function logOf(d: DaemonProcess): LogLine[] {
  return d.output().split('\n').flatMap((line) => {
    try {
      const entry = JSON.parse(line) as LogLine;
      return typeof entry?.message === 'string' ? [entry] : [];
    } catch {
      return [];
    }
  });
}

/** The watcher's warnings about one key. */
function skipsOf(d: DaemonProcess, key: string): LogLine[] {
  return logOf(d).filter((l) => l.level === 'warn' && l.message.startsWith(`skipping lease ${JSON.stringify(key)}: `));
}

/** The agent's `lease <type>` lines for one subnet. */
function leaseEvents(d: DaemonProcess, type: 'added' | 'changed' | 'removed', subnet: string): LogLine[] {
  return logOf(d).filter((l) => l.message === `lease ${type}` && l.subnet === subnet);
}

/** Remembers when the process ends, so a test can say it is still running. */
function watchExit(d: DaemonProcess): () => boolean {
  let ended = false;
  void d.exited().then(() => (ended = true));
  return () => ended;
}

function expectHealthy(d: DaemonProcess, ended: () => boolean): void {
  expect(ended(), `twilld exited:\n${d.output().slice(-2000)}`).to.equal(false);
  expect(d.output()).to.not.match(/TypeError|RangeError|unhandled|panic/i);
}

describe('twilld given bad input (real etcd, alloc backend)', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let admin: Etcd3;
  let dir: string;
  const daemons: DaemonProcess[] = [];

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'twill-bad-input-'));
  });

  /** Stops every twilld still running, so that none outlives its test and touches the next one's leases. */
  async function stopAll(): Promise<void> {
    for (const d of daemons.splice(0)) await d.stop('SIGTERM');
  }

  // Declared before withEtcd's hooks, so every twilld stops before etcd does.
  after(async () => {
    await stopAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  withEtcd((server, client) => {
    etcd = server;
    admin = client;
  });

  function run(subnetFile: string): DaemonProcess {
    // The root namespace: loopback only, and hands off the host's forwarding rules.
    const d = startDaemon([
      '--etcd-endpoints', etcd.endpoint, '--iface', 'lo', '--public-ip', PUBLIC_IP, '--iptables-forward-rules=false',
      '--subnet-file', subnetFile, '--log-format', 'json', '--repair-interval', '1',
    ]);
    daemons.push(d);
    return d;
  }

  async function running(d: DaemonProcess): Promise<LogLine> {
    return (await waitFor('twilld running', () => logOf(d).find((l) => l.message === 'twilld running'), 15_000))!;
  }

  describe('a garbled subnet.env left by a previous run', () => {
    after(stopAll);

    it('is reported with one warning naming the file, and twilld starts and writes a good one', async () => {
      await admin.delete().prefix(PREFIX);
      await admin.put(`${PREFIX}/config`).value(CONFIG);
      const file = path.join(dir, 'garbled', 'subnet.env');
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, Buffer.concat([Buffer.from('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/99\n'), Buffer.from([0, 0xff, 0xfe])]));
      const d = run(file);
      const ended = watchExit(d);
      const started = await running(d);

      const warnings = logOf(d).filter((l) => l.level === 'warn' && l.message.includes(file));
      expect(warnings.map((w) => w.message)).to.deep.equal([
        `the previous subnet file ${file} holds an unreadable subnet "10.244.7.1/99"; ignoring it`,
      ]);
      const firstAddress = String(started.subnet).replace('.0/24', '.1/24');
      expect(readFileSync(file, 'utf8')).to.contain(`FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=${firstAddress}\n`);
      expectHealthy(d, ended);
      expect(await d.stop('SIGTERM')).to.equal(0);
    });
  });

  describe('bad leases from other nodes while it runs', () => {
    let d: DaemonProcess;
    let ended: () => boolean;
    let subnetFile: string;
    let own: { key: string; subnet: string };

    const big = JSON.stringify({ PublicIP: '198.18.0.40', PublicIPv6: null, Pad: 'x'.repeat(100 * 1024) });
    /** Each bad entry, and what the warning about it must say. */
    const bad: { key: string; value: string; says: string }[] = [
      { key: '10.244.200.0-24', value: '{"PublicIP":"198.18.0.20",', says: 'lease value is not JSON' },
      { key: '10.244.201.0-24', value: '{"PublicIP":42,"PublicIPv6":null}', says: 'lease PublicIP must be a string, got number 42' },
      { key: '10.244.202.0-24', value: '{"PublicIP":"198.18.0.22","BackendType":["vxlan"]}', says: 'lease BackendType must be a string, got a list' },
      { key: '10.244.203.0-24', value: big, says: `lease value is ${Buffer.byteLength(big)} bytes, more than the 65536 allowed` },
      { key: '10.99.1.0-24', value: leaseOf('198.18.0.24'), says: 'subnet 10.99.1.0/24 is outside the network 10.244.0.0/16' },
      { key: '10.244.204.0-25', value: leaseOf('198.18.0.25'), says: 'subnet 10.244.204.0/25 is a /25, but SubnetLen is 24' },
      { key: 'node-7', value: leaseOf('198.18.0.26'), says: 'lease key "node-7" is not of the form a.b.c.d-len[&ipv6-len]' },
    ];
    /** Two keys for one subnet: the plain key is written first, so the dual-stack one is the younger. */
    const older = { key: '10.244.210.0-24', value: leaseOf('198.18.0.30') };
    const younger = { key: '10.244.210.0-24&fc00:0:0:d2::-64', value: leaseOf('198.18.0.31') };

    before(async () => {
      await admin.delete().prefix(PREFIX);
      await admin.put(`${PREFIX}/config`).value(CONFIG);
      subnetFile = path.join(dir, 'running', 'subnet.env');
      d = run(subnetFile);
      ended = watchExit(d);
      const subnet = String((await running(d)).subnet);
      own = { subnet, key: subnet.replace('/', '-') };
      expect(await admin.get(SUBNETS + own.key).string()).to.equal(leaseOf(PUBLIC_IP));
    });

    it('skips each bad lease with one warning naming its key and what is wrong', async () => {
      for (const b of bad) await admin.put(SUBNETS + b.key).value(b.value);
      await waitFor('a warning about every bad lease', () => bad.every((b) => skipsOf(d, b.key).length > 0), 10_000);
      for (const b of bad) {
        const skips = skipsOf(d, b.key).map((l) => l.message);
        expect(skips, b.key).to.have.length(1);
        expect(skips[0].startsWith(`skipping lease ${JSON.stringify(b.key)}: ${b.says}`), skips[0]).to.equal(true);
        expect(logOf(d).filter((l) => l.message.startsWith('lease ') && String(l.subnet ?? '').startsWith(b.key.split('-')[0] + '/')), b.key)
          .to.deep.equal([]);
      }
      expectHealthy(d, ended);
    });

    it('gives a subnet claimed by two keys (plain and dual-stack) to the older key, warning once about the younger', async () => {
      await admin.put(SUBNETS + older.key).value(older.value);
      await waitFor('the older lease added', () => leaseEvents(d, 'added', '10.244.210.0/24').length > 0);
      await admin.put(SUBNETS + younger.key).value(younger.value);
      await waitFor('a warning about the younger key', () => skipsOf(d, younger.key).length > 0);
      expect(skipsOf(d, younger.key).map((l) => l.message)).to.deep.equal([
        `skipping lease ${JSON.stringify(younger.key)}: its subnet is already claimed by the older lease ${JSON.stringify(older.key)}`,
      ]);
      expect(leaseEvents(d, 'added', '10.244.210.0/24').map((l) => l.publicIP)).to.deep.equal(['198.18.0.30']);
      expect(skipsOf(d, older.key)).to.deep.equal([]);
    });

    it('does not warn again when it re-lists the leases after etcd comes back', async () => {
      const before = logOf(d).length;
      await etcd.stop();
      await waitFor('twilld notices etcd is gone', () => logOf(d).slice(before).some((l) => l.message.startsWith('lost contact with etcd')), 15_000);
      await etcd.start();
      await waitFor('the leases re-listed', () => logOf(d).slice(before).some((l) => l.message.startsWith('etcd reachable again')), 20_000);
      await sleep(2500); // a few repair intervals, each of which reconciles
      for (const b of [...bad, younger]) expect(skipsOf(d, b.key), b.key).to.have.length(1);
      expectHealthy(d, ended);
    });

    it('still takes a good lease put afterwards, and a bad one once it is fixed', async () => {
      await admin.put(SUBNETS + '10.244.230.0-24').value(leaseOf('198.18.0.50'));
      await waitFor('the good lease added', () => leaseEvents(d, 'added', '10.244.230.0/24').length > 0);
      expect(leaseEvents(d, 'added', '10.244.230.0/24').map((l) => l.publicIP)).to.deep.equal(['198.18.0.50']);

      await admin.put(SUBNETS + bad[0].key).value(leaseOf('198.18.0.20'));
      await waitFor('the fixed lease added', () => leaseEvents(d, 'added', '10.244.200.0/24').length > 0);
      expect(skipsOf(d, bad[0].key), 'no new warning for the fixed lease').to.have.length(1);
      expectHealthy(d, ended);
    });

    it('moves to a new subnet, saying so loudly, when another node writes over its own lease', async () => {
      await admin.put(SUBNETS + own.key).value(leaseOf('198.18.0.99'));

      const moved = (await waitFor('the move to a new subnet', () =>
        logOf(d).find((l) => l.level === 'error' && l.message.startsWith('own subnet was taken by another node; moved to a new subnet')), 15_000))!;
      const lost = logOf(d).filter((l) => l.message === 'own subnet lease lost; acquiring it again');
      expect(lost.map((l) => [l.level, l.subnet, l.reason])).to.deep.equal([
        ['warn', own.subnet, 'another node (198.18.0.99) wrote over the lease'],
      ]);
      expect(moved.message).to.contain('pods on the old subnet must be restarted');
      expect(moved.old).to.equal(own.subnet);
      const fresh = String(moved.new);
      expect(fresh).to.not.equal(own.subnet);
      expect(fresh).to.match(/^10\.244\.\d+\.0\/24$/);
      // Not one of the subnets other keys hold, valid or not.
      const held = ['10.244.200.0/24', '10.244.201.0/24', '10.244.202.0/24', '10.244.203.0/24', '10.244.210.0/24', '10.244.230.0/24'];
      expect(held).to.not.include(fresh);

      // The new lease is published, subnet.env follows it, and the other node keeps the old subnet.
      expect(await admin.get(SUBNETS + fresh.replace('/', '-')).string()).to.equal(leaseOf(PUBLIC_IP));
      expect(await admin.get(SUBNETS + own.key).string()).to.equal(leaseOf('198.18.0.99'));
      await waitFor('subnet.env with the new subnet', () =>
        existsSync(subnetFile) && readFileSync(subnetFile, 'utf8').includes(`FLANNEL_SUBNET=${fresh.replace('.0/24', '.1/24')}\n`));
      expect(leaseEvents(d, 'changed', own.subnet).map((l) => l.publicIP)).to.deep.equal(['198.18.0.99']);
      await sleep(1500);
      expect(logOf(d).filter((l) => l.message.startsWith('own subnet was taken')), 'said once').to.have.length(1);
      expectHealthy(d, ended);
    });
  });
});
