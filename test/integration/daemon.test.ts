import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Etcd3 } from 'etcd3';
import type { EtcdServer } from '../harness/etcd';
import { withEtcd } from '../harness/etcd-hooks';
import { startDaemon, DaemonProcess } from '../harness/daemon';
import { waitFor, sleep } from '../harness/wait';
import { freePort } from '../harness/etcd';
import * as http from 'http';

function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** Local addresses listening on `port`, from the kernel's socket table (hex, as /proc prints them). */
function listeners(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A')
    .map((f) => f[1]);
}

const PREFIX = '/coreos.com/network';

describe('twilld as a process with the alloc backend (real etcd)', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let admin: Etcd3;
  let dir: string;
  const daemons: DaemonProcess[] = [];

  withEtcd((server, client) => {
    etcd = server;
    admin = client;
  });
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'twill-daemon-'));
  });
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop('SIGKILL');
    await admin.delete().prefix(PREFIX);
    rmSync(dir, { recursive: true, force: true });
  });

  function run(extra: string[] = [], env: NodeJS.ProcessEnv = {}): DaemonProcess {
    // These daemons run in the root namespace: keep them off the host's nftables.
    const d = startDaemon(['--etcd-endpoints', etcd.endpoint, '--iface', 'lo', '--iptables-forward-rules=false',
      ...extra], { env: { FLANNELD_PUBLIC_IP: '198.18.0.3', FLANNELD_SUBNET_FILE: path.join(dir, 'subnet.env'), ...env } });
    daemons.push(d);
    return d;
  }

  const subnetFile = () => path.join(dir, 'subnet.env');
  const readEnv = () => (existsSync(subnetFile()) ? readFileSync(subnetFile(), 'utf8') : '');

  it('leases a subnet, publishes flanneld\'s alloc value and writes subnet.env; SIGTERM exits 0 and keeps the lease', async () => {
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
    const d = run();
    const env = await waitFor('subnet.env', () => readEnv(), 15_000);
    const m = /^FLANNEL_NETWORK=10\.244\.0\.0\/16\nFLANNEL_SUBNET=10\.244\.(\d+)\.1\/24\nFLANNEL_MTU=(\d+)\nFLANNEL_IPMASQ=false\n$/.exec(env);
    expect(m, env).to.not.equal(null);
    const loMtu = Number(readFileSync('/sys/class/net/lo/mtu', 'utf8'));
    expect(Number(m![2])).to.equal(loMtu);
    const key = `${PREFIX}/subnets/10.244.${m![1]}.0-24`;
    expect(await admin.get(key).string()).to.equal('{"PublicIP":"198.18.0.3","PublicIPv6":null}');
    expect((await import('fs')).statSync(subnetFile()).mode & 0o777).to.equal(0o644);

    expect(await d.stop('SIGTERM')).to.equal(0);
    expect(d.output()).to.not.match(/panic|Error:|unhandled/i);
    expect(await admin.get(key).string(), 'the lease outlives the process').to.not.equal(null);

    // A restart finds the same subnet.
    rmSync(subnetFile());
    const again = run();
    const env2 = await waitFor('subnet.env after restart', () => readEnv(), 15_000);
    expect(env2).to.contain(`FLANNEL_SUBNET=10.244.${m![1]}.1/24`);
    expect(await again.stop('SIGINT')).to.equal(0);
  });

  it('takes its settings from FLANNELD_* environment variables', async () => {
    await admin.put('/other/prefix/config').value('{"Network":"10.20.0.0/16","Backend":{"Type":"alloc"}}');
    const d = run([], { FLANNELD_ETCD_PREFIX: '/other/prefix', FLANNELD_PUBLIC_IP: '198.18.0.77' });
    const env = await waitFor('subnet.env', () => readEnv(), 15_000);
    expect(env).to.contain('FLANNEL_NETWORK=10.20.0.0/16');
    const values = await admin.getAll().prefix('/other/prefix/subnets/').strings();
    expect(Object.values(values)).to.deep.equal(['{"PublicIP":"198.18.0.77","PublicIPv6":null}']);
    await d.stop();
    await admin.delete().prefix('/other/prefix');
  });

  it('waits for a missing config, saying so once rather than once per retry, then starts', async () => {
    const d = run();
    await sleep(3500);
    expect(d.output().match(/waiting for the network config/g)).to.have.length(1);
    expect(readEnv()).to.equal('');
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
    await waitFor('subnet.env', () => readEnv(), 15_000);
    await d.stop();
  });

  it('refuses an invalid config with the reason, once, and starts when it is fixed', async () => {
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","SubnetLen":31,"Backend":{"Type":"alloc"}}');
    const d = run();
    await sleep(3000);
    const complaints = d.output().match(/network config at \/coreos.com\/network\/config is invalid[^\n]*/g) ?? [];
    expect(complaints).to.have.length(1);
    expect(complaints[0]).to.contain('SubnetLen');
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
    await waitFor('subnet.env', () => readEnv(), 15_000);
    await d.stop();
  });

  it('exits 2 with the usage on a bad flag value', async () => {
    const d = run(['--subnet-lease-ttl', 'soon']);
    expect(await d.exited()).to.equal(2);
    expect(d.output()).to.contain('--subnet-lease-ttl must be a whole number').and.to.contain('Usage: twilld');
  });

  it('exits 2 naming the problem when TLS files are given with http:// endpoints', async () => {
    const d = run(['--etcd-cafile', '/nonexistent/ca.pem']);
    expect(await d.exited()).to.equal(2);
    expect(d.output()).to.contain('https://');
  });

  it('serves /healthz, /readyz and /metrics on 127.0.0.1 only, by default', async () => {
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
    const port = await freePort();
    const d = run(['--healthz-port', String(port)]);
    await waitFor('/healthz', async () => (await get(port, '/healthz').catch(() => ({ status: 0 }))).status === 200, 15_000);
    expect(listeners(port)).to.deep.equal([`0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`]);
    const ready = await waitFor('/readyz 200', async () => {
      const r = await get(port, '/readyz');
      return r.status === 200 ? r : undefined;
    }, 15_000);
    expect(ready!.body).to.contain('ready');
    const metrics = (await get(port, '/metrics')).body;
    expect(metrics).to.match(/^twill_reconcile_total\{result="ok"\} [1-9]/m);
    expect(metrics).to.match(/^twill_lease_expiry_timestamp_seconds [1-9]/m);
    expect(metrics).to.match(/^twill_backend_info\{backend="alloc",mode="none"\} 1/m);
    expect(metrics).to.match(/^twill_etcd_up 1/m);
    await d.stop();
  });

  it('keeps running and logs in JSON with --log-format json', async () => {
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
    const d = run(['--log-format', 'json']);
    await waitFor('subnet.env', () => readEnv(), 15_000);
    await d.stop();
    const lines = d.output().trim().split('\n');
    for (const line of lines) expect(() => JSON.parse(line), line).to.not.throw();
    expect(lines.map((l) => JSON.parse(l) as { message: string }).some((l) => l.message === 'wrote subnet file')).to.equal(true);
  });
});
