/**
 * `twill status` as an operator runs it: the built CLI as a real process
 * against a real etcd holding flanneld's own lease values, twill's, a
 * reservation and broken entries.
 */
import { expect } from 'chai';
import { ChildProcess, spawn } from 'child_process';
import { readFileSync } from 'fs';
import * as net from 'net';
import * as path from 'path';
import { Etcd3 } from 'etcd3';
import { EtcdRegistry } from '../../lib/subnet/etcd';
import type { LeaseDocument, StatusDocument } from '../../lib/cli/status/json';
import { startEtcd, freePort, EtcdServer } from '../harness/etcd';
import { withEtcd } from '../harness/etcd-hooks';
import { waitFor } from '../harness/wait';
import { envWithoutFlanneld as cleanEnv, runToEnd, type RunToEndResult } from '../harness/run-to-end';

const TWILL = path.resolve(__dirname, '../../cmd/twill.js');
const PREFIX = '/coreos.com/network';
const CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}';

/** The flanneld fixtures (/work/shared/fixtures/flanneld), as test/unit/subnet-file.test.ts finds them. */
function fixture(name: string): string {
  const dir = process.env.TWILL_FIXTURES ?? path.join(__dirname, '../../../..', 'shared/fixtures/flanneld');
  return readFileSync(path.join(dir, name), 'utf8').trim();
}

/** Runs `twill status ARGS` to completion (killed, by PID, after `timeoutMs`). */
function runStatus(args: string[], timeoutMs = 20_000): Promise<RunToEndResult> {
  return runToEnd(process.execPath, [TWILL, 'status', ...args], { timeoutMs });
}

/** The lease table's rows (after the SUBNET header), each split into its cells. */
function tableRows(stdout: string): string[][] {
  const lines = stdout.split('\n');
  const header = lines.findIndex((l) => l.startsWith('SUBNET '));
  expect(header, `no lease table in:\n${stdout}`).to.be.greaterThan(-1);
  const rows: string[][] = [];
  for (const line of lines.slice(header + 1)) {
    if (!line.trim() || line.startsWith('---')) break;
    rows.push(line.split(/ {2,}/));
  }
  return rows;
}

describe('twill status (the CLI against a real etcd)', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let admin: Etcd3;
  let registry: EtcdRegistry;

  withEtcd((server, client) => {
    etcd = server;
    admin = client;
    registry = new EtcdRegistry(admin, PREFIX);
  });
  afterEach(async () => {
    await admin.delete().prefix(`${PREFIX}/`);
  });

  /** `ttl` seconds of etcd lease, or none (a reservation). */
  async function putLease(key: string, value: string, ttl?: number): Promise<void> {
    const leaseId = ttl === undefined ? undefined : await registry.grant(ttl);
    const { created } = await registry.createIfAbsent(key, value, leaseId);
    expect(created, key).to.equal(true);
  }

  /**
   * flanneld's vxlan, host-gw and udp leases (its exact bytes; other public
   * IPs), a twill reservation with its backend list, a value that is not
   * JSON, and a key carrying a terminal escape sequence.
   */
  async function populate(opts: { config?: boolean } = {}): Promise<void> {
    if (opts.config !== false) await admin.put(`${PREFIX}/config`).value(CONFIG);
    await putLease('10.244.1.0-24', fixture('lease-vxlan.json'), 86400);
    await putLease('10.244.10.0-24', fixture('lease-host-gw.json').replace('198.18.0.3', '198.18.0.10'), 5400);
    await putLease('10.244.3.0-24', fixture('lease-udp.json').replace('198.18.0.3', '198.18.0.30'), 86400);
    await putLease('10.244.4.0-24', JSON.stringify({
      PublicIP: '198.18.0.4', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: 'aa:bb:cc:00:00:04' },
      TwillBackends: [{ Type: 'vxlan', Data: { VNI: 1, VtepMAC: 'aa:bb:cc:00:00:04' } }, { Type: 'host-gw' }],
    }));
    await putLease('10.244.5.0-24', '{"PublicIP":"198.18.0.5",', 86400);
    await putLease('evil\x1b[2J-key', '{"PublicIP":"198.18.0.6","PublicIPv6":null}', 86400);
  }

  it('prints the config and one row per lease, sorted by subnet, with broken entries as INVALID rows', async () => {
    await populate();
    const r = await runStatus(['--etcd-endpoints', etcd.endpoint]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.equal('');
    expect(r.stdout).to.match(/^ {2}Network +10\.244\.0\.0\/16$/m);
    expect(r.stdout).to.match(/^ {2}SubnetLen +24$/m);
    expect(r.stdout).to.match(/^ {2}SubnetMin–Max +10\.244\.1\.0 – 10\.244\.255\.0$/m);
    expect(r.stdout).to.match(/^ {2}Backend +vxlan {2}VNI=1$/m);
    expect(r.stdout).to.include('6 leases (1 reservation, 2 invalid)');

    const rows = tableRows(r.stdout);
    // Numeric order: 10.244.10.0 after 10.244.5.0; a key that does not parse last.
    expect(rows.map((c) => c[0])).to.deep.equal([
      '10.244.1.0/24', '10.244.3.0/24', '10.244.4.0/24', '10.244.5.0/24', '10.244.10.0/24', 'evil\\u001b[2J-key',
    ]);
    const [vxlan, udp, reservation, notJson, hostGw, evil] = rows;
    // VIA: what each node uses to its peers, as the agents choose (config: vxlan).
    expect(vxlan.slice(0, 5)).to.deep.equal(['10.244.1.0/24', '198.18.0.3', 'vxlan', 'vxlan×1 none×2', '5e:ec:40:e1:80:98']);
    expect(vxlan[5]).to.match(/^(23h59m|24h00m)$/);
    expect(vxlan).to.have.length(6); // nothing in PROBLEM
    expect(udp.slice(0, 5)).to.deep.equal(['10.244.3.0/24', '198.18.0.30', 'udp', 'none×3', '-']);
    // host-gw to 10.244.10.0: not configured, but both terminate it and 198.18.0.4 and .10 share a /24.
    expect(reservation).to.deep.equal(['10.244.4.0/24', '198.18.0.4', 'vxlan (twill: vxlan, host-gw)', 'host-gw×1 vxlan×1 none×1', 'aa:bb:cc:00:00:04', 'reservation']);
    expect(notJson.slice(0, 5)).to.deep.equal(['10.244.5.0/24', '-', '-', '-', '-']);
    expect(notJson[6]).to.match(/^INVALID: lease value is not JSON/);
    expect(hostGw.slice(0, 5)).to.deep.equal(['10.244.10.0/24', '198.18.0.10', 'host-gw', 'host-gw×1 none×2', '-']);
    expect(hostGw[5]).to.match(/^1h(29|30)m$/);
    expect(evil.slice(1, 5), 'no VIA: no node talks to an invalid entry').to.deep.equal(['198.18.0.6', 'udp', '-', '-']);
    expect(evil[6]).to.match(/^INVALID: lease key "evil\\u001b\[2J-key" is not of the form/);
    // Text from etcd never reaches the terminal raw; off a terminal there is no colour either.
    expect(r.stdout).not.to.include('\x1b');
  });

  it('--json prints one document with the same leases, in the same order, for scripts', async () => {
    await populate();
    const r = await runStatus(['--etcd-endpoints', etcd.endpoint, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const doc: StatusDocument = JSON.parse(r.stdout);
    expect(doc.etcd).to.deep.include({ endpoints: [etcd.endpoint], prefix: PREFIX });
    expect(doc.config).to.deep.include({
      state: 'valid', network: '10.244.0.0/16', subnetLen: 24, subnetMin: '10.244.1.0', subnetMax: '10.244.255.0',
      backend: { type: 'vxlan', settings: { VNI: 1 } },
    });
    const leases = doc.leases;
    expect(leases.map((l) => l.key)).to.deep.equal(['10.244.1.0-24', '10.244.3.0-24', '10.244.4.0-24', '10.244.5.0-24', '10.244.10.0-24', 'evil\x1b[2J-key']);
    const byKey = new Map(leases.map((l) => [l.key, l]));
    const lease = (key: string): LeaseDocument => {
      const l = byKey.get(key);
      if (!l) throw new Error(`no lease ${key} in ${r.stdout}`);
      return l;
    };
    const vxlan = lease('10.244.1.0-24');
    expect(vxlan).to.deep.include({
      subnet: '10.244.1.0/24', publicIP: '198.18.0.3', publicIPv6: null, backendType: 'vxlan', twillBackends: null,
      vtepMAC: '5e:ec:40:e1:80:98', reservation: false, valid: true, invalidReason: null, health: null,
    });
    expect(vxlan.expirySeconds).to.be.a('number').within(86300, 86400);
    expect(vxlan.etcdLeaseId).to.be.a('string');
    expect(lease('10.244.3.0-24')).to.deep.include({ backendType: 'udp', vtepMAC: null, valid: true });
    expect(lease('10.244.10.0-24').expirySeconds).to.be.within(5300, 5400);
    expect(lease('10.244.4.0-24')).to.deep.include({
      reservation: true, expirySeconds: null, etcdLeaseId: null, twillBackends: ['vxlan', 'host-gw'], vtepMAC: 'aa:bb:cc:00:00:04', valid: true,
    });
    const notJson = lease('10.244.5.0-24');
    expect(notJson).to.deep.include({ subnet: '10.244.5.0/24', publicIP: null, valid: false, reservation: false });
    expect(notJson.invalidReason).to.match(/^lease value is not JSON/);
    expect(lease('evil\x1b[2J-key')).to.deep.include({ subnet: null, valid: false });
    // Per peer, the backend the node's agent uses (null: none shared); invalid entries are nobody's peers.
    expect(vxlan.peers).to.deep.equal([
      { subnet: '10.244.3.0/24', backend: null, encrypted: false },
      { subnet: '10.244.4.0/24', backend: 'vxlan', encrypted: false },
      { subnet: '10.244.10.0/24', backend: null, encrypted: false },
    ]);
    expect(lease('10.244.4.0-24').peers).to.deep.equal([
      { subnet: '10.244.1.0/24', backend: 'vxlan', encrypted: false },
      { subnet: '10.244.3.0/24', backend: null, encrypted: false },
      { subnet: '10.244.10.0/24', backend: 'host-gw', encrypted: false },
    ]);
    expect(notJson.peers).to.equal(null);
  });

  /** A twill node's lease: BackendType the first of `types` (none for udp, as flanneld), TwillBackends all of them when more than one. */
  function twillLease(publicIP: string, types: readonly string[], n: number): string {
    const data = (type: string) => (type === 'vxlan' ? { VNI: 1, VtepMAC: `aa:bb:cc:00:00:0${n}` } : undefined);
    return JSON.stringify({
      PublicIP: publicIP,
      PublicIPv6: null,
      ...(types[0] === 'udp' ? {} : { BackendType: types[0], BackendData: data(types[0]) ?? null }),
      ...(types.length > 1 ? { TwillBackends: types.map((t) => (data(t) ? { Type: t, Data: data(t) } : { Type: t })) } : {}),
    });
  }

  /** VIA of each row, by subnet. */
  function viaColumn(stdout: string): Record<string, string> {
    return Object.fromEntries(tableRows(stdout).map((c) => [c[0], c[3]]));
  }

  it('host-gw with Fallback vxlan: host-gw between the nodes on one /24, vxlan to the node behind a router', async () => {
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw","Fallback":"vxlan"}}');
    await putLease('10.244.1.0-24', twillLease('198.18.0.1', ['host-gw', 'vxlan'], 1), 86400);
    await putLease('10.244.2.0-24', twillLease('198.18.0.2', ['host-gw', 'vxlan'], 2), 86400);
    await putLease('10.244.3.0-24', twillLease('198.18.1.3', ['host-gw', 'vxlan'], 3), 86400);

    const r = await runStatus(['--etcd-endpoints', etcd.endpoint]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^ {2}Backend +host-gw {2}Fallback="vxlan"$/m);
    expect(tableRows(r.stdout)[0].slice(0, 4)).to.deep.equal(['10.244.1.0/24', '198.18.0.1', 'host-gw (twill: host-gw, vxlan)', 'host-gw×1 vxlan×1']);
    expect(viaColumn(r.stdout)).to.deep.equal({
      '10.244.1.0/24': 'host-gw×1 vxlan×1',
      '10.244.2.0/24': 'host-gw×1 vxlan×1',
      '10.244.3.0/24': 'vxlan×2',
    });

    const doc: StatusDocument = JSON.parse((await runStatus(['--etcd-endpoints', etcd.endpoint, '--json'])).stdout);
    expect(Object.fromEntries(doc.leases.map((l) => [l.subnet, l.peers]))).to.deep.equal({
      '10.244.1.0/24': [{ subnet: '10.244.2.0/24', backend: 'host-gw', encrypted: false }, { subnet: '10.244.3.0/24', backend: 'vxlan', encrypted: false }],
      '10.244.2.0/24': [{ subnet: '10.244.1.0/24', backend: 'host-gw', encrypted: false }, { subnet: '10.244.3.0/24', backend: 'vxlan', encrypted: false }],
      '10.244.3.0/24': [{ subnet: '10.244.1.0/24', backend: 'vxlan', encrypted: false }, { subnet: '10.244.2.0/24', backend: 'vxlan', encrypted: false }],
    });
  });

  it('during a migration the configured type wins between nodes terminating both, whatever their leases ask for', async () => {
    // Two nodes still publishing udp (no BackendType) but also terminating vxlan, one vxlan only.
    await putLease('10.244.1.0-24', twillLease('198.18.0.1', ['udp', 'vxlan'], 1), 86400);
    await putLease('10.244.2.0-24', twillLease('198.18.0.2', ['udp', 'vxlan'], 2), 86400);
    await putLease('10.244.3.0-24', twillLease('198.18.0.3', ['vxlan'], 3), 86400);

    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    const toVxlan = await runStatus(['--etcd-endpoints', etcd.endpoint]);
    expect(toVxlan.code, toVxlan.stderr).to.equal(0);
    expect(tableRows(toVxlan.stdout)[0].slice(0, 3)).to.deep.equal(['10.244.1.0/24', '198.18.0.1', 'udp (twill: udp, vxlan)']);
    // Both udp leases, yet vxlan between them: the config says vxlan.
    expect(viaColumn(toVxlan.stdout)).to.deep.equal({ '10.244.1.0/24': 'vxlan×2', '10.244.2.0/24': 'vxlan×2', '10.244.3.0/24': 'vxlan×2' });
    const doc: StatusDocument = JSON.parse((await runStatus(['--etcd-endpoints', etcd.endpoint, '--json'])).stdout);
    expect(doc.leases[0].peers).to.deep.equal([{ subnet: '10.244.2.0/24', backend: 'vxlan', encrypted: false }, { subnet: '10.244.3.0/24', backend: 'vxlan', encrypted: false }]);

    // The other way round (back to udp): udp where both terminate it, vxlan to the node that has only vxlan.
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}');
    const toUdp = await runStatus(['--etcd-endpoints', etcd.endpoint]);
    expect(toUdp.code, toUdp.stderr).to.equal(0);
    expect(viaColumn(toUdp.stdout)).to.deep.equal({ '10.244.1.0/24': 'udp×1 vxlan×1', '10.244.2.0/24': 'udp×1 vxlan×1', '10.244.3.0/24': 'vxlan×2' });
  });

  it('leaves VIA out with a single lease, and shows no peers in --json', async () => {
    await admin.put(`${PREFIX}/config`).value(CONFIG);
    await putLease('10.244.1.0-24', fixture('lease-vxlan.json'), 86400);
    const r = await runStatus(['--etcd-endpoints', etcd.endpoint]);
    expect(r.stdout).to.match(/^SUBNET +PUBLIC IP +BACKENDS +VTEP MAC +EXPIRES +PROBLEM$/m);
    const doc: StatusDocument = JSON.parse((await runStatus(['--etcd-endpoints', etcd.endpoint, '--json'])).stdout);
    expect(doc.leases[0].peers).to.deep.equal([]);
  });

  it('says clearly when the network config is missing, and still lists the leases', async () => {
    await populate({ config: false });
    const r = await runStatus(['--etcd-endpoints', etcd.endpoint]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include(`MISSING: no key ${PREFIX}/config in etcd`);
    expect(tableRows(r.stdout).map((c) => c[0])).to.include.members(['10.244.1.0/24', '10.244.4.0/24', '10.244.10.0/24']);
    const doc: StatusDocument = JSON.parse((await runStatus(['--etcd-endpoints', etcd.endpoint, '--json'])).stdout);
    expect(doc.config).to.deep.include({ state: 'missing', network: null, backend: null });
    expect(doc.leases).to.have.length(6);
  });

  it('says why a config is invalid, naming the field', async () => {
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/33"}');
    const r = await runStatus(['--etcd-endpoints', etcd.endpoint]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/Config +INVALID at \/coreos\.com\/network\/config: .*Network/);
    expect(r.stdout).to.include('0 leases');
  });

  it('exits 1 at once, naming the endpoint, when nothing listens there', async () => {
    const port = await freePort();
    const r = await runStatus(['--etcd-endpoints', `http://127.0.0.1:${port}`]);
    expect(r.code).to.equal(1);
    expect(r.stdout).to.equal('');
    expect(r.stderr).to.include(`twill: etcd at http://127.0.0.1:${port}: unreachable`);
    expect(r.ms).to.be.below(6000);
  });

  it('exits 1 within about 5 s, naming the endpoint, when etcd accepts connections but never answers', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => sockets.add(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const endpoint = `http://127.0.0.1:${port}`;
      const r = await runStatus(['--etcd-endpoints', endpoint], 15_000);
      expect(r.signal, 'killed: it hung').to.equal(null);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.equal(`twill: etcd at ${endpoint}: did not answer within 3.5 s; `
        + 'check --etcd-endpoints, and that etcd runs there and is reachable from here\n');
      expect(r.ms, `took ${r.ms} ms`).to.be.below(6000);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('reads an etcd with authentication given --etcd-username/--etcd-password, and exits 1 naming the fault when they are wrong', async () => {
    const secured = await startEtcd({ auth: { rootPassword: 'root-pw', users: [{ name: 'ops', password: 'ops-pw', prefix: `${PREFIX}/` }] } });
    try {
      const root = secured.client();
      await root.put(`${PREFIX}/config`).value(CONFIG);
      const id = await new EtcdRegistry(root, PREFIX).grant(86400);
      await new EtcdRegistry(root, PREFIX).createIfAbsent('10.244.1.0-24', fixture('lease-vxlan.json'), id);

      const ok = await runStatus(['--etcd-endpoints', secured.endpoint, '--etcd-username', 'ops', '--etcd-password', 'ops-pw']);
      expect(ok.code, ok.stderr).to.equal(0);
      expect(tableRows(ok.stdout)[0].slice(0, 4)).to.deep.equal(['10.244.1.0/24', '198.18.0.3', 'vxlan', '5e:ec:40:e1:80:98']);
      expect(tableRows(ok.stdout)[0][4]).to.match(/^(23h59m|24h00m)$/);

      const bad = await runStatus(['--etcd-endpoints', secured.endpoint, '--etcd-username', 'ops', '--etcd-password', 'wrong']);
      expect(bad.code).to.equal(1);
      expect(bad.stderr).to.include(`twill: etcd at ${secured.endpoint}: authentication failed for user "ops"`);
    } finally {
      await secured.destroy();
    }
  });

  describe('--watch', () => {
    let child: ChildProcess | undefined;
    afterEach(() => {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      child = undefined;
    });

    function watch(extra: string[] = [], endpoint = etcd.endpoint): { proc: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
      const proc = spawn(process.execPath, [TWILL, 'status', '--watch', '--etcd-endpoints', endpoint, ...extra], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
      child = proc;
      let out = '';
      let err = '';
      proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
      return { proc, out: () => out, err: () => err, exited };
    }

    it('redraws when a lease appears or goes, and exits 0 on SIGINT', async () => {
      await populate();
      const w = watch();
      await waitFor('the first table', () => w.out().includes('10.244.10.0/24'));
      expect(w.out()).not.to.include('10.244.7.0/24');

      await putLease('10.244.7.0-24', fixture('lease-vxlan.json').replace('198.18.0.3', '198.18.0.7').replace('5e:ec:40:e1:80:98', 'aa:bb:cc:00:00:07'), 86400);
      // On a timeout, what the watcher said on stderr (a lost or refused etcd watch) is the clue.
      await waitFor('a redrawn table with the new lease', () => w.out().includes('10.244.7.0/24'), 10_000).catch((err: Error) => {
        throw new Error(`${err.message}; twill status said on stderr: ${JSON.stringify(w.err())}`);
      });
      // Off a terminal: a separator, then the whole new table.
      const redrawn = w.out().split(/^--- .* \(revision \d+\) ---$/m);
      expect(redrawn).to.have.length(2);
      const row = tableRows(redrawn[1]).find((c) => c[0] === '10.244.7.0/24');
      expect(row?.slice(0, 5)).to.deep.equal(['10.244.7.0/24', '198.18.0.7', 'vxlan', 'vxlan×2 none×2', 'aa:bb:cc:00:00:07']);

      await admin.delete().key(`${PREFIX}/subnets/10.244.5.0-24`);
      await waitFor('a third table without the deleted entry', () => w.out().split(/^--- /m).length === 3);
      const last = w.out().split(/^--- /m)[2];
      expect(tableRows(last).map((c) => c[0])).not.to.include('10.244.5.0/24');

      w.proc.kill('SIGINT');
      const code = await Promise.race([w.exited, new Promise<string>((r) => setTimeout(() => r('still running 5 s after SIGINT'), 5000))]);
      expect(code).to.equal(0);
      expect(w.err()).to.equal('');
    });

    it('with --json prints one JSON document per line per change', async () => {
      await populate();
      const w = watch(['--json']);
      await waitFor('the first document', () => w.out().includes('\n'));
      await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}');
      await waitFor('a second document', () => w.out().split('\n').filter(Boolean).length >= 2);
      const docs = w.out().split('\n').filter(Boolean).map((l): StatusDocument => JSON.parse(l));
      expect(docs[0].config.backend?.type).to.equal('vxlan');
      expect(docs[docs.length - 1].config.backend?.type).to.equal('host-gw');
      expect(docs[docs.length - 1].leases).to.have.length(6);
      w.proc.kill('SIGINT');
      expect(await w.exited).to.equal(0);
    });

    it('says so once when etcd goes away, redraws once it is back, and exits 0 on SIGINT while etcd is down', async () => {
      const own = await startEtcd();
      try {
        const c = own.client();
        await c.put(`${PREFIX}/config`).value(CONFIG);
        await c.put(`${PREFIX}/subnets/10.244.1.0-24`).value(fixture('lease-vxlan.json'));
        const w = watch([], own.endpoint);
        await waitFor('the first table', () => w.out().includes('10.244.1.0/24'));

        await own.stop();
        await waitFor('a word that the watch is lost', () => w.err().includes('lost the etcd watch'), 10_000);
        expect(w.err().split('lost the etcd watch')).to.have.length(2);

        await own.start();
        await c.put(`${PREFIX}/subnets/10.244.7.0-24`).value(fixture('lease-vxlan.json').replace('198.18.0.3', '198.18.0.7'));
        await waitFor('a redrawn table with the lease put after etcd came back', () => w.out().includes('10.244.7.0/24'), 15_000).catch((err: Error) => {
          throw new Error(`${err.message}; twill status said on stderr: ${JSON.stringify(w.err())}`);
        });

        await own.stop();
        await waitFor('the outage seen again', () => w.err().split('lost the etcd watch').length === 3, 10_000);
        w.proc.kill('SIGINT');
        const code = await Promise.race([w.exited, new Promise<string>((r) => setTimeout(() => r('still running 5 s after SIGINT'), 5000))]);
        expect(code).to.equal(0);
      } finally {
        await own.destroy();
      }
    });
  });
});
