/**
 * HTTP(S) to the Kubernetes API on Node's own `http`/`https`: credentials,
 * timeouts, cancellation, and every failure turned into one of the classes
 * of `errors.ts`. `KubeClient` (client.ts) builds the typed calls on it; the
 * test harness uses it for objects the client has no call for.
 *
 * Failure semantics: `request` and `openStream` never throw synchronously
 * and reject only with KubeApiError (the server answered ≥ 400),
 * KubeConnectionError / KubeTimeoutError (no usable answer),
 * KubeProtocolError (an answer that is not JSON), KubeConfigError (a token
 * file that cannot be read) or, when the caller's signal aborts, an
 * AbortError. A request is retried by nobody here: the caller decides.
 */
import * as http from 'http';
import * as https from 'https';
import type { KubeConfig } from './kubeconfig';
import {
  apiError, KubeConfigError, KubeConnectionError, KubeProtocolError, KubeRequestTarget, KubeTimeoutError,
} from './errors';
import { VERSION } from '../version';

export interface TransportOptions {
  /** Deadline of a whole non-watch request, answer included (default 30 s, client-go has none by default). */
  readonly requestTimeoutMs?: number;
  /** The largest answer read into memory (default 256 MiB: a list of many thousand Nodes). */
  readonly maxResponseBytes?: number;
}

export interface KubeRequest {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path and query below the server URL, e.g. `/api/v1/nodes?limit=500`. */
  readonly path: string;
  readonly target: KubeRequestTarget;
  readonly body?: unknown;
  readonly contentType?: string;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;

export class KubeTransport {
  private readonly agent: http.Agent;
  private readonly base: URL;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;

  constructor(readonly config: KubeConfig, opts: TransportOptions = {}) {
    this.base = new URL(config.server);
    this.timeoutMs = opts.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxBytes = opts.maxResponseBytes ?? DEFAULT_MAX_BYTES;
    this.agent = this.base.protocol === 'https:'
      ? new https.Agent({
        keepAlive: true,
        ca: config.ca,
        cert: config.clientCert,
        key: config.clientKey,
        rejectUnauthorized: !config.insecureSkipTlsVerify,
        servername: config.tlsServerName,
      })
      : new http.Agent({ keepAlive: true });
  }

  get server(): string {
    return this.config.server;
  }

  /** Sends a request and resolves with the parsed JSON answer (undefined for an empty body). */
  async request<T = unknown>(req: KubeRequest): Promise<T> {
    const text = await this.requestText(req);
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new KubeProtocolError(req.target, `the answer is not JSON: ${JSON.stringify(text.slice(0, 80))}`);
    }
  }

  /** Sends a request and resolves with the answer's text (for the plain-text endpoints such as /readyz). */
  async requestText(req: KubeRequest): Promise<string> {
    const timeoutMs = req.timeoutMs ?? this.timeoutMs;
    const res = await this.send(req, timeoutMs, 'no complete answer');
    return this.readBody(res, req.target);
  }

  /**
   * Opens a streaming request (a watch) and resolves with the response once
   * the server answered 2xx; the caller reads it and destroys it. The
   * connection is destroyed when no byte arrives for `idleTimeoutMs`, and
   * when `signal` aborts.
   */
  async openStream(req: KubeRequest & { readonly idleTimeoutMs: number }): Promise<http.IncomingMessage> {
    return this.send(req, undefined, 'no answer', req.idleTimeoutMs);
  }

  /** Destroys every connection, idle or in use (Agent.destroy). */
  close(): void {
    this.agent.destroy();
  }

  private send(req: KubeRequest, deadlineMs: number | undefined, what: string, idleMs?: number): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      if (req.signal?.aborted) {
        reject(abortError());
        return;
      }
      let settled = false;
      let clientReq: http.ClientRequest | undefined;
      let response: http.IncomingMessage | undefined;
      let timer: NodeJS.Timeout | undefined;
      // Before the answer: reject. After it: end the answer with the error, for its reader to see.
      const fail = (err: Error): void => {
        cleanup();
        if (!settled) {
          settled = true;
          clientReq?.destroy();
          reject(err);
        } else {
          response?.destroy(err);
        }
      };
      const onAbort = (): void => fail(abortError());
      const cleanup = (): void => {
        if (timer) clearTimeout(timer);
        timer = undefined;
        req.signal?.removeEventListener('abort', onAbort);
      };
      try {
        const headers: http.OutgoingHttpHeaders = { Accept: 'application/json', 'User-Agent': `twilld/${VERSION}` };
        const token = this.config.bearerToken();
        if (token) headers.Authorization = `Bearer ${token}`;
        let payload: Buffer | undefined;
        if (req.body !== undefined) {
          payload = Buffer.from(JSON.stringify(req.body));
          headers['Content-Type'] = req.contentType ?? 'application/json';
          headers['Content-Length'] = payload.length;
        }
        // The server URL may carry a path prefix (a proxy); req.path is absolute below it.
        const url = new URL(this.base.pathname.replace(/\/+$/, '') + req.path, this.base);
        const mod = url.protocol === 'https:' ? https : http;
        clientReq = mod.request(url, { method: req.method, headers, agent: this.agent });
        clientReq.end(payload);
      } catch (err) {
        fail(err instanceof KubeConfigError ? err : new KubeConnectionError(req.target, this.server, err as Error, (err as Error).message));
        return;
      }
      const r = clientReq;
      req.signal?.addEventListener('abort', onAbort, { once: true });
      if (deadlineMs !== undefined) {
        timer = setTimeout(() => fail(new KubeTimeoutError(req.target, this.server, deadlineMs, what)), deadlineMs);
      }
      if (idleMs !== undefined) {
        r.setTimeout(idleMs, () => fail(new KubeTimeoutError(req.target, this.server, idleMs, 'no data')));
      }
      r.on('error', (err) => fail(connectionError(req.target, this.server, err)));
      r.on('response', (res) => {
        response = res;
        // Errors on the answer after this point reach whoever reads it; this keeps them from being unhandled.
        res.on('error', () => undefined);
        res.once('close', cleanup);
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          if (!settled) {
            settled = true;
            resolve(res);
          }
          return;
        }
        this.readBody(res, req.target).then(
          (text) => {
            const err = statusError(req.target, status, res.statusMessage, text);
            settled = true;
            reject(err);
          },
          (err: Error) => {
            settled = true;
            reject(err);
          },
        );
      });
    });
  }

  private readBody(res: http.IncomingMessage, target: KubeRequestTarget): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > this.maxBytes) {
          res.destroy();
          reject(new KubeProtocolError(target, `the answer is larger than ${this.maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', (err) => reject(err instanceof KubeTimeoutError || isAbortError(err) ? err : connectionError(target, this.server, err)));
      res.on('close', () => {
        if (!res.complete) reject(new KubeConnectionError(target, this.server, undefined, 'the connection closed before the whole answer arrived'));
      });
    });
  }
}

/** A Status object in an error answer gives the API's own message; anything else is quoted briefly. */
export function statusError(target: KubeRequestTarget, code: number, statusText: string | undefined, body: string): Error {
  let message = body.trim().slice(0, 300) || statusText || 'no message';
  let reason: string | undefined;
  try {
    const s = JSON.parse(body) as { kind?: unknown; message?: unknown; reason?: unknown };
    if (typeof s.message === 'string' && s.message) message = s.message;
    if (typeof s.reason === 'string' && s.reason) reason = s.reason;
  } catch {
    // not JSON: keep the text
  }
  return apiError(target, code, message, reason ?? statusText);
}

function connectionError(target: KubeRequestTarget, server: string, err: Error): KubeConnectionError {
  const code = (err as NodeJS.ErrnoException).code;
  return new KubeConnectionError(target, server, err, code ? `${code}: ${err.message}` : err.message);
}

export function abortError(): Error {
  const err = new Error('the request was cancelled');
  err.name = 'AbortError';
  return err;
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}
