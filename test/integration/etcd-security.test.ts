/**
 * twilld against a real etcd secured with TLS client certificates, and
 * against one with password authentication. A working setup leases a subnet
 * and writes subnet.env; every broken one is reported once, clearly (the
 * endpoint, the cause, what to do), never silently retried in plaintext.
 *
 * At start-up a configuration error (TLS, credentials, grants) is logged
 * once; twilld then either keeps waiting without repeating it, or — with
 * config-source rethrowing `isEtcdConfigurationError` — exits 1. Both are
 * accepted here; what is checked is the one clear line and no subnet.env.
 */
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { Etcd3 } from 'etcd3';
import { startEtcd, freePort, EtcdServer } from '../harness/etcd';
import { startDaemon, DaemonProcess } from '../harness/daemon';
import { createTestPki, TestPki } from '../harness/pki';
import { waitFor, sleep } from '../harness/wait';
import { createEtcdClient, EtcdConnectionOptions } from '../../lib/subnet/etcd-client';
import { EtcdAuthError, EtcdTlsError, EtcdUnavailableError, isEtcdConfigurationError } from '../../lib/subnet/etcd-errors';

const PREFIX = '/coreos.com/network';
const CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}';

describe('twilld and a secured etcd', function () {
  this.timeout(60_000);
  let pki: TestPki;
  let dir: string;
  const daemons: DaemonProcess[] = [];

  before(async () => {
    pki = await createTestPki();
  });
  after(() => pki?.destroy());
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'twill-security-'));
  });
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const subnetFile = () => path.join(dir, 'subnet.env');
  const readEnv = () => (existsSync(subnetFile()) ? readFileSync(subnetFile(), 'utf8') : '');

  /** twilld in the root namespace with the alloc backend, kept off the host's nftables. */
  function run(endpoint: string, extra: string[] = []): DaemonProcess {
    const d = startDaemon(['--etcd-endpoints', endpoint, '--iface', 'lo', '--public-ip', '198.18.0.3',
      '--iptables-forward-rules=false', '--subnet-file', subnetFile(), ...extra]);
    daemons.push(d);
    return d;
  }

  async function expectLease(d: DaemonProcess, admin: Etcd3): Promise<void> {
    const env = await waitFor('subnet.env', () => readEnv(), 15_000);
    const m = /^FLANNEL_NETWORK=10\.244\.0\.0\/16\nFLANNEL_SUBNET=10\.244\.(\d+)\.1\/24\n/.exec(env);
    expect(m, env).to.not.equal(null);
    expect(await admin.get(`${PREFIX}/subnets/10.244.${m![1]}.0-24`).string()).to.equal('{"PublicIP":"198.18.0.3","PublicIPv6":null}');
    expect(await d.stop('SIGTERM')).to.equal(0);
  }

  /**
   * Waits for the line matching `pattern`, then long enough for two more of
   * twilld's one-second config retries, and checks the line came once, no
   * subnet.env was written and twilld exited 1: a configuration error is
   * said once and is fatal, since retrying cannot fix it.
   */
  async function expectRefusal(d: DaemonProcess, pattern: RegExp): Promise<string> {
    await waitFor(`twilld to log ${pattern}`, () => pattern.test(d.output()), 10_000);
    const state = await Promise.race([d.exited(), sleep(2500).then(() => 'still waiting')]);
    const lines = d.output().split('\n').filter((l) => pattern.test(l));
    expect(lines, d.output()).to.have.length(1);
    expect(state, `twilld ended with ${state}:\n${d.output()}`).to.equal(1);
    expect(d.output()).to.not.contain('twilld running');
    expect(readEnv(), 'subnet.env').to.equal('');
    return lines[0];
  }

  async function typedFailure(opts: EtcdConnectionOptions, key = `${PREFIX}/config`): Promise<unknown> {
    const client = createEtcdClient(opts);
    try {
      await client.get(key).string();
      return undefined;
    } catch (err) {
      return err;
    } finally {
      client.close();
    }
  }

  describe('over TLS, with etcd demanding client certificates', () => {
    let etcd: EtcdServer;
    let admin: Etcd3;
    let tlsFlags: string[];

    before(async () => {
      etcd = await startEtcd({
        tls: {
          certFile: pki.server.cert, keyFile: pki.server.key, caFile: pki.caCert, clientCertAuth: true,
          clientCertFile: pki.client.cert, clientKeyFile: pki.client.key,
        },
      });
      admin = etcd.client();
      await admin.put(`${PREFIX}/config`).value(CONFIG);
      tlsFlags = ['--etcd-cafile', pki.caCert, '--etcd-certfile', pki.client.cert, '--etcd-keyfile', pki.client.key];
    });
    after(async () => {
      await etcd?.destroy();
    });
    afterEach(async () => {
      await admin.delete().prefix(`${PREFIX}/subnets/`);
    });

    it('leases a subnet over https with a client certificate and writes subnet.env', async () => {
      expect(etcd.endpoint).to.match(/^https:\/\/127\.0\.0\.1:\d+$/);
      await expectLease(run(etcd.endpoint, tlsFlags), admin);
    });

    it('refuses a server certificate from a CA it was not given, naming the verification failure and the endpoint', async () => {
      const d = run(etcd.endpoint, ['--etcd-cafile', pki.wrongCaCert, '--etcd-certfile', pki.client.cert, '--etcd-keyfile', pki.client.key]);
      const line = await expectRefusal(d, /TLS certificate verification failed/);
      expect(line).to.contain(`etcd at ${etcd.endpoint}`).and.to.contain(pki.wrongCaCert).and.to.contain('--etcd-cafile');
    });

    it('refuses an expired client certificate, saying etcd rejected it and when it expired', async () => {
      const d = run(etcd.endpoint, ['--etcd-cafile', pki.caCert, '--etcd-certfile', pki.expiredClient.cert, '--etcd-keyfile', pki.expiredClient.key]);
      const line = await expectRefusal(d, /rejected the client certificate/);
      expect(line).to.contain(`etcd at ${etcd.endpoint}`).and.to.contain(pki.expiredClient.cert).and.to.match(/it expired on \d{4}-/);
    });

    it('is refused without a client certificate, saying etcd requires one', async () => {
      const d = run(etcd.endpoint, ['--etcd-cafile', pki.caCert]);
      const line = await expectRefusal(d, /client certificate is required/);
      expect(line).to.contain(`etcd at ${etcd.endpoint}`).and.to.contain('--etcd-certfile');
    });

    it('is refused with a client certificate from a CA etcd does not trust, naming its issuer', async () => {
      const d = run(etcd.endpoint, ['--etcd-cafile', pki.caCert, '--etcd-certfile', pki.wrongCaClient.cert, '--etcd-keyfile', pki.wrongCaClient.key]);
      const line = await expectRefusal(d, /rejected the client certificate/);
      expect(line).to.contain('issued by CN=twill-wrong-ca').and.to.contain('--trusted-ca-file');
    });

    it('speaks only TLS to an https:// endpoint, on every retry: no plaintext fallback', async () => {
      const firstBytes: Buffer[] = [];
      const sockets = new Set<net.Socket>();
      const server = net.createServer((s) => {
        sockets.add(s);
        s.once('data', (b: Buffer) => {
          firstBytes.push(b);
          s.destroy();
        });
      });
      const port = await freePort();
      await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
      try {
        const d = run(`https://127.0.0.1:${port}`, tlsFlags);
        await waitFor('three connection attempts', () => firstBytes.length >= 3, 10_000);
        for (const b of firstBytes) expect(b[0], `first byte of a connection: ${b.subarray(0, 16).toString('latin1')}`).to.equal(0x16); // TLS handshake record
        await expectRefusal(d, /TLS handshake failed/);
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise((r) => server.close(r));
      }
    });

    it('exits 2 before connecting when the key file does not belong to the certificate', async () => {
      const d = run(etcd.endpoint, ['--etcd-cafile', pki.caCert, '--etcd-certfile', pki.client.cert, '--etcd-keyfile', pki.expiredClient.key]);
      expect(await d.exited()).to.equal(2);
      expect(d.output()).to.contain(`--etcd-keyfile ${pki.expiredClient.key} is not the private key of --etcd-certfile ${pki.client.cert}`);
    });

    it('exits 2 when certificate files come with an http:// endpoint, rather than talk plaintext', async () => {
      const d = run(etcd.endpoint.replace('https://', 'http://'), tlsFlags);
      expect(await d.exited()).to.equal(2);
      expect(d.output()).to.contain('use https:// endpoints');
    });

    it('carries on without credentials that etcd does not ask for, as flanneld does', async () => {
      await expectLease(run(etcd.endpoint, [...tlsFlags, '--etcd-username', 'twill', '--etcd-password', 'unused']), admin);
    });

    it('reports each failure as a typed error that callers can branch on', async () => {
      const base = { endpoints: [etcd.endpoint], caFile: pki.caCert };
      const untrusted = await typedFailure({ ...base, caFile: pki.wrongCaCert, certFile: pki.client.cert, keyFile: pki.client.key });
      expect(untrusted).to.be.instanceOf(EtcdTlsError).and.to.include({ failure: 'server-untrusted' });
      const expired = await typedFailure({ ...base, certFile: pki.expiredClient.cert, keyFile: pki.expiredClient.key });
      expect(expired).to.be.instanceOf(EtcdTlsError).and.to.include({ failure: 'client-cert-expired' });
      expect(await typedFailure(base)).to.be.instanceOf(EtcdTlsError).and.to.include({ failure: 'client-cert-missing' });
      const misnamed = await typedFailure({ ...base, endpoints: [etcd.endpoint.replace('127.0.0.1', 'localhost')], certFile: pki.client.cert, keyFile: pki.client.key });
      expect(misnamed).to.be.instanceOf(EtcdTlsError).and.to.include({ failure: 'server-name-mismatch' });
      expect(isEtcdConfigurationError(expired)).to.equal(true);

      const down = await typedFailure({ endpoints: [`http://127.0.0.1:${await freePort()}`] });
      expect(down).to.be.instanceOf(EtcdUnavailableError);
      expect(isEtcdConfigurationError(down)).to.equal(false);
    });
  });

  describe('with password authentication', () => {
    let etcd: EtcdServer;
    let admin: Etcd3;

    before(async () => {
      etcd = await startEtcd({
        auth: {
          rootPassword: 'root-secret',
          users: [
            { name: 'twill', password: 'twill-secret', prefix: `${PREFIX}/` },
            { name: 'outsider', password: 'outsider-secret', prefix: '/elsewhere/' },
          ],
        },
      });
      admin = etcd.client();
      await admin.put(`${PREFIX}/config`).value(CONFIG);
    });
    after(async () => {
      await etcd?.destroy();
    });
    afterEach(async () => {
      await admin.delete().prefix(`${PREFIX}/subnets/`);
    });

    it('leases a subnet as a user whose role covers the prefix', async () => {
      await expectLease(run(etcd.endpoint, ['--etcd-username', 'twill', '--etcd-password', 'twill-secret']), admin);
    });

    it('says authentication failed for the user when the password is wrong', async () => {
      const d = run(etcd.endpoint, ['--etcd-username', 'twill', '--etcd-password', 'not-the-password']);
      const line = await expectRefusal(d, /authentication failed for user "twill"/);
      expect(line).to.contain(`etcd at ${etcd.endpoint}`).and.to.contain('--etcd-password').and.to.not.contain('not-the-password');
    });

    it('says credentials are needed when etcd demands them and none are given', async () => {
      const d = run(etcd.endpoint);
      const line = await expectRefusal(d, /authentication is enabled there and no user name was given/);
      expect(line).to.contain('--etcd-username');
    });

    it('says permission was denied when the user\'s role does not cover the prefix', async () => {
      const d = run(etcd.endpoint, ['--etcd-username', 'outsider', '--etcd-password', 'outsider-secret']);
      const line = await expectRefusal(d, /permission denied for user "outsider"/);
      expect(line).to.contain('--etcd-prefix');
    });

    it('reports a wrong password as an EtcdAuthError naming the user', async () => {
      const err = await typedFailure({ endpoints: [etcd.endpoint], username: 'twill', password: 'nope' });
      expect(err).to.be.instanceOf(EtcdAuthError).and.to.include({ failure: 'bad-credentials', username: 'twill' });
      expect(isEtcdConfigurationError(err)).to.equal(true);
    });
  });
});
