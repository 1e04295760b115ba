/**
 * The health server (`--healthz-ip`, `--healthz-port`; DESIGN §5):
 *
 * - `GET /healthz` → 200 `ok` while the process runs (liveness);
 * - `GET /readyz`  → 200 `ready`, or 503 with one reason per line (readiness);
 * - `GET /metrics` → Prometheus text, when metrics are given (else 404);
 * - any other path → 404; another method on these paths → 405.
 *
 * HEAD is answered like GET without a body, as HTTP requires of every server.
 *
 * Failure semantics: `startHealthServer` rejects with a `HealthServerBindError`
 * naming the flags and the address when it cannot listen, so twilld can exit
 * with a message the operator can act on. Once listening, a readiness
 * callback that throws or a metrics collector that rejects gives a 500 for
 * that request and an error in the log; the server keeps serving. `close()`
 * also ends idle keep-alive connections (and any request still running), so
 * shutdown is not held up by a scraper's open connection.
 */
import * as http from 'http';
import type { AddressInfo } from 'net';
import type { Log } from './logger';
import type { AgentMetrics } from './metrics';
import type { ReadinessStatus } from './readiness';

export interface HealthServerOptions {
  /** The address to listen on, as given by `--healthz-ip` (twilld's default is 127.0.0.1). */
  host: string;
  /** The port, as given by `--healthz-port`; 0 picks a free one (tests). */
  port: number;
  /** Asked on every `/readyz`; typically `() => readiness.status()`. */
  readiness: () => ReadinessStatus;
  /** Served on `/metrics`; without it `/metrics` is a 404. */
  metrics?: AgentMetrics;
  log?: Log;
}

export interface HealthServer {
  /** Where it actually listens (the chosen port when 0 was asked for). */
  readonly address: { host: string; port: number };
  /** Stops listening and ends open connections; resolves once all are closed. Safe to call twice. */
  close(): Promise<void>;
}

/** The health server could not listen; `code` is Node's (EADDRINUSE, EACCES, EADDRNOTAVAIL, …). */
export class HealthServerBindError extends Error {
  constructor(
    readonly host: string,
    readonly port: number,
    readonly code: string | undefined,
    detail: string,
  ) {
    super(`cannot start the health server on ${hostPort(host, port)} (--healthz-ip ${host} --healthz-port ${port}): ${detail}`);
    this.name = 'HealthServerBindError';
  }
}

const TEXT = 'text/plain; charset=utf-8';
const ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

export async function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    void handle(req, res, opts);
  });
  await listen(server, opts.host, opts.port);
  const bound = server.address() as AddressInfo;
  const address = { host: bound.address, port: bound.port };
  // Errors after listening (rare: the socket itself failing) must not crash the agent.
  server.on('error', (err) => opts.log?.error('health server error', { error: err.message }));
  opts.log?.info('health server listening', { address: `http://${hostPort(address.host, address.port)}`, endpoints: '/healthz /readyz /metrics' });

  let closing: Promise<void> | undefined;
  return {
    address,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function listen(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      reject(new HealthServerBindError(host, port, err.code, bindDetail(err, host, port)));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    try {
      server.listen({ host, port });
    } catch (err) {
      // listen() throws synchronously for an invalid port, for example.
      server.off('error', onError);
      server.off('listening', onListening);
      const e = err as NodeJS.ErrnoException;
      reject(new HealthServerBindError(host, port, e.code, e.message));
    }
  });
}

/** What went wrong and what to do, in the operator's terms. */
function bindDetail(err: NodeJS.ErrnoException, host: string, port: number): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return `port ${port} is already in use on ${host}; stop what listens there or choose another --healthz-port`;
    case 'EACCES':
      return `permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE, so choose another --healthz-port`;
    case 'EADDRNOTAVAIL':
      return `${host} is not an address of this host; set --healthz-ip to one of its addresses (or 127.0.0.1, or 0.0.0.0 for all)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${host} is not an IP address this host can listen on; set --healthz-ip to an IP address`;
    default:
      return err.message;
  }
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, opts: HealthServerOptions): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (!ROUTES.has(path) || (path === '/metrics' && !opts.metrics)) return reply(res, 404, `not found: ${path} (try /healthz, /readyz or /metrics)\n`);
  if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, `method ${req.method ?? '?'} not allowed; use GET\n`, { Allow: 'GET, HEAD' });
  try {
    switch (path) {
      case '/healthz':
        return reply(res, 200, 'ok');
      case '/readyz': {
        const status = opts.readiness();
        if (status.ready) return reply(res, 200, 'ready');
        const reasons = status.reasons.length ? status.reasons : ['not ready'];
        return reply(res, 503, reasons.join('\n') + '\n');
      }
      default: {
        const metrics = opts.metrics!;
        const body = await metrics.metrics();
        return reply(res, 200, body, { 'Content-Type': metrics.contentType });
      }
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    opts.log?.error(`health server: ${path} failed`, { error: message });
    return reply(res, 500, `${path} failed: ${message}\n`);
  }
}

function reply(res: http.ServerResponse, status: number, body: string, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, {
    'Content-Type': TEXT,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(body);
}

/** `host:port`, with an IPv6 host in brackets. */
function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
