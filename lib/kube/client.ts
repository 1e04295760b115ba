/**
 * A small typed client for the Node calls twill's Kubernetes subnet manager
 * makes — get, list, watch, and the two patches — and the one ConfigMap read
 * of `twill status`/`twill diagnose`, on Node's own http/https
 * (transport.ts), with no dependency.
 *
 * Why hand-written: the official `@kubernetes/client-node`, measured on this
 * machine's Node 20 (docs/flanneld-kube-mode.md): version 2.0.1, the latest,
 * does not load at all (its undici 8 wants Node ≥ 22.19); version 1.4.0
 * installs 68 packages (72 MB on disk) and its `require` alone adds 65-73 MB
 * of RSS (34 MB of heap) and takes 560-820 ms. flanneld costs 33 MB in all
 * (DESIGN §5); requiring lib/kube adds 4 MB of RSS (mostly Node's own
 * https/tls, which the daemon loads for etcd anyway; 1.6 MB of heap) in 26 ms.
 *
 * Failure semantics (every call): rejects only with the classes of
 * errors.ts, or an AbortError when the caller's signal aborts; nothing is
 * retried here. 403 reads like `the Kubernetes API refused to patch
 * nodes/status "n1": 403 Forbidden: ... cannot patch resource
 * "nodes/status" ...`. 410 is a `GoneError`: the caller lists again.
 *
 * Watch: `watchNodes` streams JSON lines (ADDED, MODIFIED, DELETED,
 * BOOKMARK; bookmarks are asked for). It resolves when the server ends the
 * stream (it does so after `timeoutSeconds`) or the signal aborts, with the
 * last resourceVersion seen, to watch again from; it rejects with GoneError
 * when the server says the resourceVersion is too old (an ERROR event with
 * code 410, or HTTP 410), KubeApiError for other ERROR events,
 * KubeTimeoutError when nothing (not even a bookmark) arrived for the idle
 * timeout, and with whatever `onEvent` throws (the watch is closed first).
 */
import type { IncomingMessage } from 'http';
import type { KubeConfig } from './kubeconfig';
import { KubeTransport, TransportOptions, isAbortError } from './transport';
import { apiError, KubeConnectionError, KubeProtocolError, KubeRequestTarget } from './errors';
import { KubeNode, NodeCondition, NodeShapeError, toKubeNode } from './node';

export type NodeWatchEvent =
  | { readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'; readonly node: KubeNode }
  | { readonly type: 'BOOKMARK'; readonly resourceVersion: string };

export interface WatchEnd {
  /** `closed`: the server ended the stream; `aborted`: the caller's signal. */
  readonly reason: 'closed' | 'aborted';
  /** The newest resourceVersion seen (events and bookmarks), else the one the watch started from. */
  readonly resourceVersion: string;
}

export interface NodeList {
  readonly items: KubeNode[];
  /** The list's resourceVersion: watch from it to miss nothing. */
  readonly resourceVersion: string;
}

/** A patch of a Node's metadata (and, through the status subresource, its conditions); a null value removes the key. */
export interface NodePatch {
  readonly metadata?: {
    readonly annotations?: Readonly<Record<string, string | null>>;
    readonly labels?: Readonly<Record<string, string | null>>;
  };
  readonly status?: { readonly conditions?: readonly NodeCondition[] };
}

/**
 * `strategic`: strategic merge patch (what flanneld sends, computed by
 * client-go's CreateTwoWayMergePatch); `merge`: JSON merge patch (RFC 7386).
 * For annotations and labels both mean the same; for `status.conditions` a
 * strategic patch merges by condition type, a merge patch replaces the list.
 */
export type PatchType = 'strategic' | 'merge';

const PATCH_CONTENT_TYPE: Record<PatchType, string> = {
  strategic: 'application/strategic-merge-patch+json',
  merge: 'application/merge-patch+json',
};

export interface KubeClientOptions extends TransportOptions {
  /** Asked of the server for each watch (it closes the stream then); default 300 s. */
  readonly watchTimeoutSeconds?: number;
  /** Page size of lists (default 500, as client-go's pager). */
  readonly listPageSize?: number;
  /** A watch that receives nothing for this long is closed with KubeTimeoutError (default timeoutSeconds + 30 s). */
  readonly watchIdleTimeoutMs?: number;
}

/** A watch line longer than this is refused: no Node comes near it. */
const MAX_WATCH_LINE = 16 * 1024 * 1024;

export class KubeClient {
  readonly transport: KubeTransport;
  private readonly watchTimeoutSeconds: number;
  private readonly pageSize: number;
  private readonly watchIdleMs: number;

  constructor(config: KubeConfig, opts: KubeClientOptions = {}) {
    this.transport = new KubeTransport(config, opts);
    this.watchTimeoutSeconds = opts.watchTimeoutSeconds ?? 300;
    this.pageSize = opts.listPageSize ?? 500;
    // A bookmark comes about once a minute; the server ends the stream after timeoutSeconds.
    this.watchIdleMs = opts.watchIdleTimeoutMs ?? (this.watchTimeoutSeconds + 30) * 1000;
  }

  get server(): string {
    return this.transport.server;
  }

  async getNode(name: string, signal?: AbortSignal): Promise<KubeNode> {
    const target = { verb: 'get', resource: 'nodes', name };
    const raw = await this.transport.request({ method: 'GET', path: `/api/v1/nodes/${encodeURIComponent(name)}`, target, signal });
    return node(raw, target);
  }

  /** The Node a Pod runs on (flanneld's way to its Node name when NODE_NAME is unset; RBAC: get pods). */
  async getPod(namespace: string, name: string, signal?: AbortSignal): Promise<{ nodeName?: string }> {
    const target = { verb: 'get', resource: 'pods', name: `${namespace}/${name}` };
    const raw = await this.transport.request({
      method: 'GET', path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`, target, signal,
    });
    const spec = (raw as { spec?: { nodeName?: unknown } } | null)?.spec;
    if (!spec || typeof spec !== 'object') throw new KubeProtocolError(target, 'not a Pod: no spec');
    return typeof spec.nodeName === 'string' && spec.nodeName ? { nodeName: spec.nodeName } : {};
  }

  /** A ConfigMap's data (RBAC: get configmaps in its namespace); a missing one rejects with a KubeApiError of code 404. */
  async getConfigMap(namespace: string, name: string, signal?: AbortSignal): Promise<{ data: Readonly<Record<string, string>>; resourceVersion?: string }> {
    const target = { verb: 'get', resource: 'configmaps', name: `${namespace}/${name}` };
    const raw = await this.transport.request({
      method: 'GET', path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps/${encodeURIComponent(name)}`, target, signal,
    });
    const o = raw as { data?: unknown; metadata?: { resourceVersion?: unknown } } | null;
    if (!o || typeof o !== 'object' || !o.metadata) throw new KubeProtocolError(target, 'not a ConfigMap: no metadata');
    const data: Record<string, string> = {};
    if (o.data !== undefined && o.data !== null) {
      if (typeof o.data !== 'object' || Array.isArray(o.data)) throw new KubeProtocolError(target, 'not a ConfigMap: data is not an object');
      for (const [k, v] of Object.entries(o.data)) {
        if (typeof v !== 'string') throw new KubeProtocolError(target, `not a ConfigMap: data[${JSON.stringify(k)}] is not a string`);
        data[k] = v;
      }
    }
    const rv = o.metadata.resourceVersion;
    return { data, ...(typeof rv === 'string' ? { resourceVersion: rv } : {}) };
  }

  /** Every Node, page by page; a continue token that expired mid-way rejects with GoneError (list again). */
  async listNodes(signal?: AbortSignal): Promise<NodeList> {
    const target = { verb: 'list', resource: 'nodes' };
    const items: KubeNode[] = [];
    let resourceVersion: string | undefined;
    let cont: string | undefined;
    do {
      const q = `limit=${this.pageSize}${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`;
      const raw = await this.transport.request({ method: 'GET', path: `/api/v1/nodes?${q}`, target, signal });
      const page = listPage(raw, target);
      resourceVersion ??= page.resourceVersion;
      for (const item of page.items) items.push(node(item, target));
      cont = page.cont;
    } while (cont);
    return { items, resourceVersion };
  }

  async watchNodes(resourceVersion: string, onEvent: (event: NodeWatchEvent) => void, signal: AbortSignal): Promise<WatchEnd> {
    const target = { verb: 'watch', resource: 'nodes' };
    const q = `watch=true&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(resourceVersion)}&timeoutSeconds=${this.watchTimeoutSeconds}`;
    let res: IncomingMessage;
    try {
      res = await this.transport.openStream({
        method: 'GET', path: `/api/v1/nodes?${q}`, target, signal, idleTimeoutMs: this.watchIdleMs,
      });
    } catch (err) {
      if (isAbortError(err) && signal.aborted) return { reason: 'aborted', resourceVersion };
      throw err;
    }
    return readWatch(res, target, this.server, resourceVersion, onEvent, signal);
  }

  /** Strategic merge patch (default) of the status subresource: the one flanneld sends its annotations through (RBAC: patch nodes/status). */
  patchNodeStatus(name: string, patch: NodePatch, type: PatchType = 'strategic', signal?: AbortSignal): Promise<KubeNode> {
    return this.patch(name, '/status', patch, type, signal);
  }

  /** A patch of the Node itself (RBAC: patch nodes), for metadata only. */
  patchNodeMetadata(name: string, metadata: NonNullable<NodePatch['metadata']>, type: PatchType = 'strategic', signal?: AbortSignal): Promise<KubeNode> {
    return this.patch(name, '', { metadata }, type, signal);
  }

  /** Closes every connection, a running watch's too (it then rejects with KubeConnectionError): abort watches first. */
  close(): void {
    this.transport.close();
  }

  private async patch(name: string, sub: '' | '/status', patch: NodePatch, type: PatchType, signal?: AbortSignal): Promise<KubeNode> {
    const target = { verb: 'patch', resource: `nodes${sub}`, name };
    const raw = await this.transport.request({
      method: 'PATCH', path: `/api/v1/nodes/${encodeURIComponent(name)}${sub}`, target, signal,
      body: patch, contentType: PATCH_CONTENT_TYPE[type],
    });
    return node(raw, target);
  }
}

function node(raw: unknown, target: KubeRequestTarget): KubeNode {
  try {
    return toKubeNode(raw);
  } catch (err) {
    if (err instanceof NodeShapeError) throw new KubeProtocolError(target, err.message);
    throw err;
  }
}

function listPage(raw: unknown, target: KubeRequestTarget): { items: unknown[]; resourceVersion: string; cont?: string } {
  const o = raw as { items?: unknown; metadata?: { resourceVersion?: unknown; continue?: unknown } } | null;
  if (!o || typeof o !== 'object' || !Array.isArray(o.items) || typeof o.metadata?.resourceVersion !== 'string') {
    throw new KubeProtocolError(target, 'not a list: no items or metadata.resourceVersion');
  }
  const cont = o.metadata.continue;
  return { items: o.items, resourceVersion: o.metadata.resourceVersion, cont: typeof cont === 'string' && cont ? cont : undefined };
}

function readWatch(
  res: IncomingMessage, target: KubeRequestTarget, server: string, from: string, onEvent: (event: NodeWatchEvent) => void, signal: AbortSignal,
): Promise<WatchEnd> {
  return new Promise((resolve, reject) => {
    let last = from;
    let pending = '';
    let done = false;
    const finish = (err?: unknown): void => {
      if (done) return;
      done = true;
      if (err === undefined) resolve({ reason: 'closed', resourceVersion: last });
      else if (isAbortError(err) && signal.aborted) resolve({ reason: 'aborted', resourceVersion: last });
      else reject(err);
      if (!res.destroyed) res.destroy();
    };
    const line = (text: string): void => {
      if (text.trim() === '') return;
      let ev: { type?: unknown; object?: unknown };
      try {
        ev = JSON.parse(text) as { type?: unknown; object?: unknown };
      } catch {
        throw new KubeProtocolError(target, `a watch line is not JSON: ${JSON.stringify(text.slice(0, 80))}`);
      }
      switch (ev.type) {
        case 'ADDED':
        case 'MODIFIED':
        case 'DELETED': {
          const n = node(ev.object, target);
          last = n.metadata.resourceVersion;
          onEvent({ type: ev.type, node: n });
          return;
        }
        case 'BOOKMARK': {
          const rv = (ev.object as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
          if (typeof rv !== 'string' || !rv) throw new KubeProtocolError(target, 'a BOOKMARK without metadata.resourceVersion');
          last = rv;
          onEvent({ type: 'BOOKMARK', resourceVersion: rv });
          return;
        }
        case 'ERROR': {
          const s = (ev.object ?? {}) as { code?: unknown; message?: unknown; reason?: unknown };
          const code = typeof s.code === 'number' ? s.code : 500;
          throw apiError(target, code, typeof s.message === 'string' ? s.message : 'a watch ERROR event without a message', typeof s.reason === 'string' ? s.reason : undefined);
        }
        default:
          throw new KubeProtocolError(target, `a watch event of unknown type ${JSON.stringify(ev.type)}`);
      }
    };
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      if (done) return;
      pending += chunk;
      try {
        let nl: number;
        while (!done && (nl = pending.indexOf('\n')) >= 0) {
          const text = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          line(text);
        }
        if (pending.length > MAX_WATCH_LINE) throw new KubeProtocolError(target, `a watch line longer than ${MAX_WATCH_LINE} bytes`);
      } catch (err) {
        finish(err);
      }
    });
    res.on('end', () => {
      try {
        line(pending);
        finish();
      } catch (err) {
        finish(err);
      }
    });
    res.on('error', (err) => finish(err instanceof KubeConnectionError || isAbortError(err) ? err : new KubeConnectionError(target, server, err, err.message)));
    res.on('close', () => {
      if (signal.aborted) finish(Object.assign(new Error('the watch was cancelled'), { name: 'AbortError' }));
      else if (!res.complete) finish(new KubeConnectionError(target, server, undefined, 'the watch stream broke off'));
    });
  });
}
