/**
 * A real multi-member etcd cluster for fault tests: each member listens for
 * clients on 127.0.0.1 (and optionally on further local addresses such as
 * the underlay bridge), for peers on 127.0.0.1. Members can be stopped and
 * started again by PID; `destroy()` stops all and removes their data.
 */
import { ChildProcess, spawn } from 'child_process';
import { mkdtempSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { Etcd3 } from 'etcd3';
import { freePort } from './etcd';

export interface EtcdMember {
  readonly name: string;
  readonly clientPort: number;
  endpointOn(ip: string): string;
  running(): boolean;
  stop(): Promise<void>;
  start(): void;
}

export interface EtcdCluster {
  readonly members: EtcdMember[];
  /** Comma-separated client endpoints of every member on `ip`. */
  endpointsOn(ip: string): string;
  /** A client over every member's 127.0.0.1 endpoint. */
  client(): Etcd3;
  /** The current leader's name, asked of the running members. */
  leader(): Promise<string>;
  waitHealthy(timeoutMs?: number): Promise<void>;
  destroy(): Promise<void>;
}

export async function startEtcdCluster(size: number, opts: { listenIPs?: string[] } = {}): Promise<EtcdCluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-etcd-cluster-'));
  const token = `twill-${randomBytes(4).toString('hex')}`;
  const ports = await Promise.all(Array.from({ length: size }, async () => ({ client: await freePort(), peer: await freePort() })));
  const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(',');
  const ips = ['127.0.0.1', ...(opts.listenIPs ?? [])];
  const clients: Etcd3[] = [];
  const procs = new Map<string, ChildProcess>();
  let firstStart = true;

  const members: EtcdMember[] = ports.map((p, i) => {
    const name = `m${i}`;
    const args = () => [
      '--name', name,
      '--data-dir', path.join(dir, name),
      '--listen-client-urls', ips.map((ip) => `http://${ip}:${p.client}`).join(','),
      '--advertise-client-urls', `http://127.0.0.1:${p.client}`,
      '--listen-peer-urls', `http://127.0.0.1:${p.peer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${p.peer}`,
      '--initial-cluster', initialCluster,
      '--initial-cluster-token', token,
      '--initial-cluster-state', firstStart ? 'new' : 'existing',
      '--log-level', 'error',
    ];
    return {
      name,
      clientPort: p.client,
      endpointOn: (ip: string) => `http://${ip}:${p.client}`,
      running: () => {
        const c = procs.get(name);
        return Boolean(c && c.exitCode === null && c.signalCode === null);
      },
      start() {
        procs.set(name, spawn('etcd', args(), { stdio: 'ignore' }));
      },
      async stop() {
        const c = procs.get(name);
        procs.delete(name);
        if (!c || c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      },
    };
  });

  const cluster: EtcdCluster = {
    members,
    endpointsOn: (ip) => members.map((m) => m.endpointOn(ip)).join(','),
    client() {
      const c = new Etcd3({ hosts: members.map((m) => m.endpointOn('127.0.0.1')) });
      clients.push(c);
      return c;
    },
    async leader() {
      for (const m of members) {
        if (!m.running()) continue;
        const c = new Etcd3({ hosts: m.endpointOn('127.0.0.1'), dialTimeout: 1000 });
        try {
          const status = await c.maintenance.status({});
          const list = await c.cluster.memberList({});
          const leader = list.members.find((x) => String(x.ID) === String(status.leader));
          if (leader) return leader.name;
        } catch {
          // ask the next member
        } finally {
          c.close();
        }
      }
      throw new Error('no running member knows a leader');
    },
    async waitHealthy(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        try {
          await cluster.leader();
          const c = new Etcd3({ hosts: members.filter((m) => m.running()).map((m) => m.endpointOn('127.0.0.1')), dialTimeout: 1000 });
          try {
            await c.put('twill-health-probe').value('1');
          } finally {
            c.close();
          }
          return;
        } catch (err) {
          if (Date.now() > deadline) throw new Error(`etcd cluster not healthy: ${(err as Error).message}`);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    },
    async destroy() {
      for (const c of clients.splice(0)) c.close();
      await Promise.all(members.map((m) => m.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const m of members) m.start();
  firstStart = false;
  try {
    await cluster.waitHealthy();
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}
