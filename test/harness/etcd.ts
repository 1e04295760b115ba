/**
 * A real etcd server for tests: a free port on 127.0.0.1 (and optionally on
 * further local addresses, such as the cluster underlay bridge), a temporary
 * data dir, stopped and removed by `destroy()`. Ended by PID only.
 */
import { ChildProcess, spawn } from 'child_process';
import { mkdtempSync, rmSync } from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { Etcd3 } from 'etcd3';

export interface EtcdServer {
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  endpointOn(ip: string): string;
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

export async function startEtcd(opts: { listenIPs?: string[] } = {}): Promise<EtcdServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-etcd-'));
  const port = await freePort();
  const peerPort = await freePort();
  const ips = ['127.0.0.1', ...(opts.listenIPs ?? [])];
  const clients: Etcd3[] = [];
  let proc: ChildProcess | undefined;
  let stderr = '';

  const args = [
    '--name', 'twill-test',
    '--data-dir', path.join(dir, 'data'),
    '--listen-client-urls', ips.map((ip) => `http://${ip}:${port}`).join(','),
    '--advertise-client-urls', `http://127.0.0.1:${port}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `twill-test=http://127.0.0.1:${peerPort}`,
    '--log-level', 'error',
  ];

  const server: EtcdServer = {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    endpointOn: (ip) => `http://${ip}:${port}`,
    client() {
      const c = new Etcd3({ hosts: `http://127.0.0.1:${port}` });
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
      await waitReady(port, child, () => stderr);
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
  } catch (err) {
    await server.destroy();
    throw err;
  }
  return server;
}

async function waitReady(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  const probe = new Etcd3({ hosts: `http://127.0.0.1:${port}`, dialTimeout: 1000 });
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
