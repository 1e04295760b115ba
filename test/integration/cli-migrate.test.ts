/**
 * `twill migrate` as an operator runs it: the built CLI as a real process
 * against a real etcd. There are no agents: the test writes the leases
 * itself and, to play the agents converging, rewrites them while the CLI
 * is following.
 */
import { expect } from 'chai';
import { ChildProcess, spawn } from 'child_process';
import * as path from 'path';
import { Etcd3 } from 'etcd3';
import { EtcdRegistry } from '../../lib/subnet/etcd';
import { writeConfigIfUnchanged } from '../../lib/cli/migrate';
import { freePort, EtcdServer } from '../harness/etcd';
import { withEtcd } from '../harness/etcd-hooks';
import { waitFor } from '../harness/wait';

const TWILL = path.resolve(__dirname, '../../cmd/twill.js');
const PREFIX = '/coreos.com/network';
const CONFIG_KEY = `${PREFIX}/config`;
const VXLAN_CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}';
const HOSTGW_CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}';

interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

interface Running {
  readonly proc: ChildProcess;
  out(): string;
  err(): string;
  readonly done: Promise<CliResult>;
}

/** Environment without FLANNELD_* (which would change the flags' defaults). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLANNELD_')) env[k] = v;
  return env;
}

/** Lines of the progress output with their `[  1.5 s]` stamp removed. */
function progress(stdout: string): string[] {
  return stdout.split('\n').flatMap((l) => {
    const m = /^\[ *\d+\.\d s\] (.*)$/.exec(l);
    return m ? [m[1]] : [];
  });
}

// What the agents publish (DESIGN §4-5): a vxlan lease; the same node during
// a migration to host-gw (primary host-gw, terminating both); after it.
const mac = (n: number): string => `aa:bb:cc:00:00:0${n}`;
const ip = (n: number): string => `198.18.0.${n}`;
const vxlanLease = (n: number) => ({ PublicIP: ip(n), PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac(n) } });
const bothLease = (n: number) => ({
  PublicIP: ip(n), PublicIPv6: null, BackendType: 'host-gw',
  TwillBackends: [{ Type: 'host-gw' }, { Type: 'vxlan', Data: { VNI: 1, VtepMAC: mac(n) } }],
});
const hostGwLease = (n: number) => ({ PublicIP: ip(n), PublicIPv6: null, BackendType: 'host-gw' });
/** flanneld's udp lease: no BackendType. */
const udpLease = (n: number) => ({ PublicIP: ip(n), PublicIPv6: null });

describe('twill migrate (the CLI against a real etcd)', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let admin: Etcd3;
  let registry: EtcdRegistry;
  const running: ChildProcess[] = [];

  withEtcd((server, client) => {
    etcd = server;
    admin = client;
    registry = new EtcdRegistry(admin, PREFIX);
  });
  afterEach(async () => {
    for (const p of running.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await admin.delete().prefix(`${PREFIX}/`);
  });

  function start(args: string[], endpoint = etcd.endpoint): Running {
    const started = Date.now();
    const proc = spawn(process.execPath, [TWILL, 'migrate', '--etcd-endpoints', endpoint, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    running.push(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<CliResult>((resolve, reject) => {
      const timer = setTimeout(() => proc.kill('SIGKILL'), 45_000);
      proc.on('error', reject);
      proc.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
      });
    });
    return { proc, out: () => stdout, err: () => stderr, done };
  }

  const run = (args: string[], endpoint?: string): Promise<CliResult> => start(args, endpoint).done;

  async function putLease(n: number, value: object): Promise<void> {
    await admin.put(`${PREFIX}/subnets/10.244.${n}.0-24`).value(JSON.stringify(value));
  }

  async function storedConfig(): Promise<{ text: string; revision: bigint }> {
    const c = await registry.getConfig();
    expect(c, 'the config key is gone').to.not.equal(undefined);
    return c!;
  }

  describe('refusals: nothing written', () => {
    it('refuses an unknown backend type, naming it and the known ones (exit 1)', async () => {
      await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
      const before = await storedConfig();
      const r = await run(['--to', 'gre']);
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.include('twill migrate: refused, nothing written: Backend.Type: "gre" is not a known backend; known types: alloc, bgp, host-gw, ipip, udp, vxlan, wireguard');
      expect(await storedConfig()).to.deep.equal(before);
    });

    it('refuses a VNI out of range, naming Backend.VNI and the value (exit 1)', async () => {
      await admin.put(CONFIG_KEY).value(HOSTGW_CONFIG);
      const before = await storedConfig();
      const r = await run(['--to', 'vxlan', '--set', 'VNI=16777216']);
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.include('Backend.VNI: 16777216 is out of range; it must be between 0 and 16777215');
      expect(r.stdout).to.equal('');
      expect(await storedConfig()).to.deep.equal(before);
    });

    it('refuses a Fallback that is not a backend, naming Backend.Fallback (exit 1)', async () => {
      await admin.put(CONFIG_KEY).value(HOSTGW_CONFIG);
      const before = await storedConfig();
      const r = await run(['--to', 'vxlan', '--set', 'Fallback=carrier-pigeon']);
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.include('Backend.Fallback: "carrier-pigeon" is not a known backend');
      expect(await storedConfig()).to.deep.equal(before);
    });

    it('refuses a settings change the agents cannot apply (GBP alone), with their reason (exit 1)', async () => {
      await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
      const before = await storedConfig();
      const r = await run(['--to', 'vxlan', '--set', 'GBP=true']);
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.include('Backend is already vxlan, and the agents cannot apply this change of its settings: Backend.GBP would change from (unset) to true');
      expect(r.stderr).to.include('change Backend.Port or Backend.VNI together with Backend.GBP');
      expect(await storedConfig()).to.deep.equal(before);
    });

    it('takes a new VNI as a migration to the backend vxlan{VNI=2}, which each node will terminate', async () => {
      await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
      await putLease(1, vxlanLease(1));
      const r = await run(['--to', 'vxlan', '--set', 'VNI=2', '--dry-run']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.include('new Backend:     {"Type":"vxlan","VNI":2}\n');
      expect(r.stdout).to.include('  10.244.1.0/24 (198.18.0.1): terminates vxlan → will terminate vxlan{VNI=2}\n');
    });

    it('lets vxlan DirectRouting change in place, as the agents do, and writes it', async () => {
      await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
      const r = await run(['--to', 'vxlan', '--set', 'DirectRouting=true', '--timeout', '10']);
      expect(r.code, r.stderr).to.equal(0);
      expect(JSON.parse((await storedConfig()).text)).to.deep.equal({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan', VNI: 1, DirectRouting: true } });
    });

    it('refuses alloc as a target: it has no datapath (exit 1)', async () => {
      await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
      const before = await storedConfig();
      const r = await run(['--to', 'alloc']);
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.include('alloc has no datapath');
      expect(await storedConfig()).to.deep.equal(before);
    });

    it('says so when there is no config to migrate (exit 1)', async () => {
      const r = await run(['--to', 'host-gw']);
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.include(`there is no network config at ${CONFIG_KEY}`);
      expect(await registry.getConfig()).to.equal(undefined);
    });

    it('names the endpoint when etcd cannot be reached, within a few seconds (exit 1)', async () => {
      const endpoint = `http://127.0.0.1:${await freePort()}`;
      const r = await run(['--to', 'host-gw'], endpoint);
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.match(new RegExp(`^twill migrate: etcd at ${endpoint.replace(/[.]/g, '\\.')}`));
      expect(r.ms).to.be.lessThan(8000);
    });
  });

  describe('usage errors (exit 2, with the usage)', () => {
    for (const [what, args, message] of [
      ['--set without =', ['--to', 'vxlan', '--set', 'VNI'], `option '--set <key=value>' argument 'VNI' is invalid. "VNI" is not key=value (for example VNI=2)`],
      ['--set Type=', ['--to', 'vxlan', '--set', 'Type=udp'], 'the backend type is chosen with --to, not --set Type='],
      ['no --to', [], `required option '--to <type>' not specified`],
      ['--timeout 0', ['--to', 'vxlan', '--timeout', '0'], `option '--timeout <seconds>' argument '0' is invalid. must be a number of seconds greater than 0`],
      ['an unknown flag', ['--to', 'vxlan', '--force'], `unknown option '--force'`],
    ] as const) {
      it(`${what}`, async () => {
        await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
        const before = await storedConfig();
        const r = await run([...args]);
        expect(r.code, r.stderr).to.equal(2);
        expect(r.stderr).to.include(message);
        expect(r.stderr).to.include('Usage: twill migrate [options]');
        expect(await storedConfig()).to.deep.equal(before);
      });
    }
  });

  it('--set values are JSON when they parse (numbers, booleans, objects), else strings; the config is written as shown', async () => {
    await admin.put(CONFIG_KEY).value(HOSTGW_CONFIG);
    const r = await run(['--to', 'vxlan', '--set', 'VNI=7', '--set', 'DirectRouting=true', '--set', 'Fallback=udp', '--set', 'Port=4789']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include('current Backend: {"Type":"host-gw"}\n');
    expect(r.stdout).to.include('new Backend:     {"Type":"vxlan","VNI":7,"DirectRouting":true,"Fallback":"udp","Port":4789}\n');
    const stored = JSON.parse((await storedConfig()).text) as Record<string, unknown>;
    expect(stored).to.deep.equal({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan', VNI: 7, DirectRouting: true, Fallback: 'udp', Port: 4789 } });
    // No leases: nothing to wait for.
    expect(r.stdout).to.match(/^converged: 0 nodes on vxlan\{Port=4789,VNI=7\} \(with fallback udp\) in 0\.\d s$/m);
  });

  it('--set with a quoted number keeps a string, which the backend refuses as such', async () => {
    await admin.put(CONFIG_KEY).value(HOSTGW_CONFIG);
    const r = await run(['--to', 'vxlan', '--set', 'VNI="7"']);
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stderr).to.include('Backend.VNI: "7" is not a whole number');
  });

  it('--dry-run prints both Backends and what each node terminates now and will, and writes nothing', async () => {
    await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
    await putLease(1, vxlanLease(1));
    await putLease(2, udpLease(2));
    await putLease(3, bothLease(3));
    const before = await storedConfig();
    const r = await run(['--to', 'host-gw', '--dry-run']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal([
      'current Backend: {"Type":"vxlan","VNI":1}',
      'new Backend:     {"Type":"host-gw"}',
      '3 nodes:',
      '  10.244.1.0/24 (198.18.0.1): terminates vxlan → will terminate host-gw',
      '  10.244.2.0/24 (198.18.0.2): terminates udp → will terminate host-gw',
      '  10.244.3.0/24 (198.18.0.3): terminates host-gw, vxlan → will terminate host-gw',
      `dry run: nothing written (the config at ${CONFIG_KEY} is at revision ${before.revision})`,
      '',
    ].join('\n'));
    expect(await storedConfig()).to.deep.equal(before);
  });

  it('--dry-run with a Fallback: every node will terminate both', async () => {
    await admin.put(CONFIG_KEY).value(HOSTGW_CONFIG);
    await putLease(1, hostGwLease(1));
    const before = await storedConfig();
    const r = await run(['--to', 'vxlan', '--set', 'Fallback={"Type":"udp"}', '--dry-run']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include('new Backend:     {"Type":"vxlan","Fallback":{"Type":"udp"}}\n');
    expect(r.stdout).to.include('  10.244.1.0/24 (198.18.0.1): terminates host-gw → will terminate vxlan, udp\n');
    expect(await storedConfig()).to.deep.equal(before);
  });

  it('writes the config, prints each node\'s change of state, and exits 0 once every node is on the target', async () => {
    await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
    for (const n of [1, 2, 3]) await putLease(n, vxlanLease(n));
    const cli = start(['--to', 'host-gw', '--timeout', '40']);
    const line = (text: string) => waitFor(`the line "${text}"; output so far:\n${cli.out()}${cli.err()}`, () => progress(cli.out()).includes(text), 10_000);

    await line('10.244.3.0/24 (198.18.0.3): terminates vxlan; still over vxlan to 10.244.1.0/24, 10.244.2.0/24; does not terminate host-gw yet');
    const stored = await storedConfig();
    expect(JSON.parse(stored.text)).to.deep.equal({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
    expect(cli.out()).to.include(`wrote ${CONFIG_KEY} (revision ${stored.revision}); the agents now migrate to host-gw\n`);

    // The agents start host-gw beside vxlan, one after the other.
    await putLease(1, bothLease(1));
    await line('10.244.1.0/24 (198.18.0.1): terminates host-gw, vxlan; still over vxlan to 10.244.2.0/24, 10.244.3.0/24; still terminates vxlan');
    await putLease(2, bothLease(2));
    await line('10.244.2.0/24 (198.18.0.2): terminates host-gw, vxlan; still over vxlan to 10.244.3.0/24; still terminates vxlan');
    await line('10.244.1.0/24 (198.18.0.1): terminates host-gw, vxlan; still over vxlan to 10.244.3.0/24; still terminates vxlan');
    await putLease(3, bothLease(3));
    await line('10.244.3.0/24 (198.18.0.3): terminates host-gw, vxlan; all 2 peers over host-gw; still terminates vxlan');
    // Then they drop vxlan.
    for (const n of [1, 2, 3]) await putLease(n, hostGwLease(n));
    const r = await cli.done;
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.equal('');
    expect(r.stdout).to.match(/^converged: 3 nodes on host-gw in \d+\.\d s$/m);
    const lines = progress(r.stdout);
    for (const n of [1, 2, 3]) expect(lines).to.include(`10.244.${n}.0/24 (198.18.0.${n}): terminates host-gw; all 2 peers over host-gw; converged`);
    // A line only when the node's state changes: node 3's state did not change when node 1 moved.
    const node3 = lines.filter((l) => l.startsWith('10.244.3.0/24 '));
    expect(new Set(node3).size, node3.join('\n')).to.equal(node3.length);
    expect(node3[0]).to.equal('10.244.3.0/24 (198.18.0.3): terminates vxlan; still over vxlan to 10.244.1.0/24, 10.244.2.0/24; does not terminate host-gw yet');
  });

  it('times out with exit 1 naming the node that has not moved, and why; its peers show they cannot reach it', async () => {
    await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
    await putLease(1, hostGwLease(1));
    await putLease(2, hostGwLease(2));
    await putLease(3, vxlanLease(3));
    const r = await run(['--to', 'host-gw', '--timeout', '2']);
    expect(r.code, r.stdout + r.stderr).to.equal(1);
    expect(r.ms).to.be.within(1500, 10_000);
    expect(progress(r.stdout)).to.include('10.244.1.0/24 (198.18.0.1): terminates host-gw; NO backend in common with 10.244.3.0/24; converged');
    expect(r.stderr).to.include('twill migrate: timed out after 2 s: 1 of 3 nodes not converged\n' +
      '  10.244.3.0/24 (198.18.0.3): terminates vxlan; does not terminate host-gw yet\n');
    expect(r.stderr).not.to.include('10.244.1.0/24');
    expect(r.stderr).to.include('run the same twill migrate command again to keep watching');
    expect(r.stdout).not.to.include('converged:');
  });

  it('a re-run when the config is already at the target writes nothing (same mod revision) and exits 0 once converged', async () => {
    await admin.put(CONFIG_KEY).value(HOSTGW_CONFIG);
    await putLease(1, hostGwLease(1));
    await putLease(2, hostGwLease(2));
    const before = await storedConfig();
    const r = await run(['--to', 'host-gw']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include(`the config already has this Backend (revision ${before.revision}); not writing it again\n`);
    expect(r.stdout).not.to.include('wrote ');
    expect(r.stdout).to.match(/^converged: 2 nodes on host-gw in 0\.\d s$/m);
    expect(await storedConfig()).to.deep.equal(before);
  });

  it('a re-run with a Fallback counts a node converged only when it terminates both', async () => {
    await admin.put(CONFIG_KEY).value('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1,"Fallback":"udp"}}');
    const withUdp = (n: number) => ({ ...vxlanLease(n), TwillBackends: [{ Type: 'vxlan', Data: { VNI: 1, VtepMAC: mac(n) } }, { Type: 'udp' }] });
    await putLease(1, withUdp(1));
    await putLease(2, vxlanLease(2));
    const before = await storedConfig();
    const cli = start(['--to', 'vxlan', '--set', 'Fallback=udp', '--timeout', '20']);
    await waitFor('node 2 shown', () => progress(cli.out()).includes('10.244.2.0/24 (198.18.0.2): terminates vxlan; all 1 peer over vxlan; does not terminate the fallback udp yet'));
    await putLease(2, withUdp(2));
    const r = await cli.done;
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include('the config already has this Backend');
    expect(r.stdout).to.match(/^converged: 2 nodes on vxlan \(with fallback udp\) in \d+\.\d s$/m);
    expect(await storedConfig()).to.deep.equal(before);
  });

  it('stops with exit 1 when someone else changes the config while it waits', async () => {
    await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
    await putLease(1, vxlanLease(1));
    const cli = start(['--to', 'host-gw', '--timeout', '20']);
    await waitFor('the first progress line', () => progress(cli.out()).length > 0);
    await admin.put(CONFIG_KEY).value('{"Network":"10.244.0.0/16","Backend":{"Type":"ipip"}}');
    const r = await cli.done;
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stderr).to.include('twill migrate: the config was changed by someone else while waiting (Backend is now {"Type":"ipip"}); stopped watching');
  });

  describe('the compare-and-swap write', () => {
    it('does not overwrite a config edited after it was read', async () => {
      await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
      const read = await storedConfig();
      await admin.put(CONFIG_KEY).value('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1,"DirectRouting":true}}'); // someone else
      const first = await writeConfigIfUnchanged(admin, CONFIG_KEY, HOSTGW_CONFIG, read.revision);
      expect(first.written).to.equal(false);
      expect((await storedConfig()).text).to.include('"DirectRouting":true');

      const again = await storedConfig();
      const second = await writeConfigIfUnchanged(admin, CONFIG_KEY, HOSTGW_CONFIG, again.revision);
      expect(second.written).to.equal(true);
      const now = await storedConfig();
      expect(now.text).to.equal(HOSTGW_CONFIG);
      expect(now.revision).to.equal(second.revision);
    });

    it('does not recreate a config deleted after it was read', async () => {
      await admin.put(CONFIG_KEY).value(VXLAN_CONFIG);
      const read = await storedConfig();
      await admin.delete().key(CONFIG_KEY);
      const r = await writeConfigIfUnchanged(admin, CONFIG_KEY, HOSTGW_CONFIG, read.revision);
      expect(r.written).to.equal(false);
      expect(await registry.getConfig()).to.equal(undefined);
    });
  });
});
