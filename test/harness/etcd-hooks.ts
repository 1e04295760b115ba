/**
 * One real etcd shared by the tests of a mocha `describe` block: started in
 * `before`, destroyed (process by PID, data removed) in `after`.
 *
 *   let etcd: EtcdServer;
 *   let admin: Etcd3;
 *   withEtcd((server, client) => {
 *     etcd = server;
 *     admin = client;
 *   });
 *
 * The tests keep the server and client in their own variables, as they did
 * before this helper existed. Hooks run in the order they are declared, so a
 * block that must stop its own processes before etcd goes declares that
 * `after` first.
 */
import type { Etcd3 } from 'etcd3';
import { startEtcd, type EtcdServer } from './etcd';

export type EtcdOptions = Parameters<typeof startEtcd>[0];

/** Registers the `before`/`after` pair; `ready` gets the server and its admin client once etcd answers. */
export function withEtcd(ready: (etcd: EtcdServer, admin: Etcd3) => void | Promise<void>, opts: EtcdOptions = {}): void {
  let server: EtcdServer | undefined;
  before(async () => {
    server = await startEtcd(opts);
    await ready(server, server.client());
  });
  after(async () => {
    await server?.destroy();
  });
}
