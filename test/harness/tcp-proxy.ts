/**
 * A TCP proxy (on 127.0.0.1 unless told otherwise) that a test can cut: `cut()` drops every
 * connection and refuses new ones, `restore()` accepts again. It lets a
 * test take etcd away from one client while another keeps writing.
 */
import * as net from 'net';

export interface TcpProxy {
  readonly port: number;
  readonly endpoint: string;
  /** Connections accepted so far (a client's connection attempts). */
  attempts(): number;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, opts: { listenHost?: string; targetHost?: string } = {}): Promise<TcpProxy> {
  const listenHost = opts.listenHost ?? '127.0.0.1';
  const targetHost = opts.targetHost ?? '127.0.0.1';
  const sockets = new Set<net.Socket>();
  let open = true;
  let attempts = 0;
  const server = net.createServer((client) => {
    attempts++;
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, listenHost, resolve));
  const addr = server.address() as net.AddressInfo;
  return {
    port: addr.port,
    endpoint: `http://${listenHost}:${addr.port}`,
    attempts: () => attempts,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      open = true;
    },
    close() {
      open = false;
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
