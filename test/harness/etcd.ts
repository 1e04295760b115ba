/**
 * A real etcd server for tests: a free port on 127.0.0.1 (and optionally on
 * further local addresses, such as the cluster underlay bridge), a temporary
 * data dir, stopped and removed by `destroy()`. Ended by PID only.
 *
 * Optionally it serves TLS (`tls`: https:// endpoints, optionally demanding
 * client certificates) and/or password auth (`auth`: a root user and users
 * with read-write on a prefix are made, then auth is enabled). The clients
 * that `client()` returns carry whatever credentials the server needs.
 */
import { ChildProcess, spawn } from 'child_process';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { Etcd3, EtcdRoleExistsError, IOptions, Range } from 'etcd3';

export interface EtcdTlsSettings {
  /** The server's certificate and key (PEM files); the certificate must name 127.0.0.1 and every listen IP. */
  readonly certFile: string;
  readonly keyFile: string;
  /** The CA that issued the server's certificate: the harness's own clients trust it. */
  readonly caFile: string;
  /**
   * `--trusted-ca-file caFile --client-cert-auth`: refuse clients without a
   * certificate issued by `caFile`. (etcd 3.4 demands client certificates
   * whenever --trusted-ca-file is given, so without this it is left out.)
   */
  readonly clientCertAuth?: boolean;
  /** The certificate the harness's own clients present (needed with `clientCertAuth`). */
  readonly clientCertFile?: string;
  readonly clientKeyFile?: string;
}

export interface EtcdAuthSettings {
  readonly rootPassword: string;
  /** Users made before auth is enabled, each with a role granting read-write on `prefix`. */
  readonly users?: readonly { readonly name: string; readonly password: string; readonly prefix: string }[];
}

export interface EtcdServer {
  readonly port: number;
  /** http://127.0.0.1:<port> (https:// with `tls`) */
  readonly endpoint: string;
  endpointOn(ip: string): string;
  /** A client with the credentials the server needs (CA and client certificate; root with `auth`); closed by `destroy()`. */
  client(): Etcd3;
  /** Stops the process, keeping the data (for outage tests). */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data. */
  start(): Promise<void>;
  destroy(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export async function startEtcd(opts: { listenIPs?: string[]; tls?: EtcdTlsSettings; auth?: EtcdAuthSettings } = {}): Promise<EtcdServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-etcd-'));
  const port = await freePort();
  const peerPort = await freePort();
  const ips = ['127.0.0.1', ...(opts.listenIPs ?? [])];
  const scheme = opts.tls ? 'https' : 'http';
  const clients: Etcd3[] = [];
  let proc: ChildProcess | undefined;
  let stderr = '';
  let authEnabled = false;

  const args = [
    '--name', 'twill-test',
    '--data-dir', path.join(dir, 'data'),
    '--listen-client-urls', ips.map((ip) => `${scheme}://${ip}:${port}`).join(','),
    '--advertise-client-urls', `${scheme}://127.0.0.1:${port}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `twill-test=http://127.0.0.1:${peerPort}`,
    '--log-level', 'error',
    ...(opts.tls ? ['--cert-file', opts.tls.certFile, '--key-file', opts.tls.keyFile] : []),
    ...(opts.tls?.clientCertAuth ? ['--trusted-ca-file', opts.tls.caFile, '--client-cert-auth'] : []),
  ];

  /** What a client of this server needs; root's password once auth is on. */
  const clientOptions = (extra: Partial<IOptions> = {}): IOptions => {
    const tls = opts.tls;
    return {
      hosts: `${scheme}://127.0.0.1:${port}`,
      ...(tls ? {
        credentials: {
          rootCertificate: readFileSync(tls.caFile),
          ...(tls.clientCertFile && tls.clientKeyFile ? { certChain: readFileSync(tls.clientCertFile), privateKey: readFileSync(tls.clientKeyFile) } : {}),
        },
      } : {}),
      ...(authEnabled && opts.auth ? { auth: { username: 'root', password: opts.auth.rootPassword } } : {}),
      ...extra,
    };
  };

  const server: EtcdServer = {
    port,
    endpoint: `${scheme}://127.0.0.1:${port}`,
    endpointOn: (ip) => `${scheme}://${ip}:${port}`,
    client() {
      const c = new Etcd3(clientOptions());
      clients.push(c);
      return c;
    },
    async start() {
      stderr = '';
      const child = spawn('etcd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      proc = child;
      child.stderr?.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-4000);
      });
      await waitReady(port, child, () => stderr, clientOptions({ dialTimeout: 1000 }));
    },
    async stop() {
      const child = proc;
      proc = undefined;
      if (!child || child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
    async destroy() {
      for (const c of clients.splice(0)) c.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await server.start();
    if (opts.auth) {
      await enableAuth(new Etcd3(clientOptions()), opts.auth);
      authEnabled = true;
    }
  } catch (err) {
    await server.destroy();
    throw err;
  }
  return server;
}

/** Root (with etcd's root role), then each user with a role over its prefix, then `auth enable`. */
async function enableAuth(admin: Etcd3, auth: EtcdAuthSettings): Promise<void> {
  try {
    await admin.role('root').create().catch((err) => {
      if (!(err instanceof EtcdRoleExistsError)) throw err;
    });
    await admin.user('root').create(auth.rootPassword);
    await admin.user('root').addRole('root');
    for (const u of auth.users ?? []) {
      const role = admin.role(`${u.name}-rw`);
      await role.create();
      await role.grant({ permission: 'Readwrite', range: Range.prefix(u.prefix) });
      await admin.user(u.name).create(u.password);
      await admin.user(u.name).addRole(role);
    }
    await admin.auth.authEnable({});
  } finally {
    admin.close();
  }
}

async function waitReady(port: number, child: ChildProcess, stderr: () => string, options: IOptions): Promise<void> {
  const deadline = Date.now() + 20_000;
  const probe = new Etcd3(options);
  try {
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`etcd exited with code ${child.exitCode}: ${stderr()}`);
      try {
        await probe.get('twill-readiness-probe').string();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error(`etcd did not become ready on port ${port}: ${stderr()}`);
  } finally {
    probe.close();
  }
}
