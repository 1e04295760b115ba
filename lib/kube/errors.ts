/**
 * What can go wrong talking to the Kubernetes API, as classes callers
 * branch on with `instanceof`:
 *
 *   KubeConfigError      the kubeconfig or in-cluster files cannot be used (names the file and field)
 *   KubeApiError         the API server answered with an error status (names verb, resource, code, message)
 *   GoneError            a KubeApiError with code 410: the resourceVersion is too old; list again
 *   KubeConnectionError  no answer: refused, TLS failure, reset, or a timeout (KubeTimeoutError)
 *   KubeProtocolError    an answer that is not what the API promises (bad JSON, a Node without a name)
 */

export class KubeConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KubeConfigError';
  }
}

/** What a request was for, so that every error can say it. */
export interface KubeRequestTarget {
  /** Kubernetes verb: get, list, watch, create, patch, delete. */
  readonly verb: string;
  /** Resource, with its subresource after a slash: `nodes`, `nodes/status`. */
  readonly resource: string;
  /** The object's name, when the request is for one object. */
  readonly name?: string;
}

export function describeTarget(t: KubeRequestTarget): string {
  return `${t.verb} ${t.resource}${t.name !== undefined ? ` ${JSON.stringify(t.name)}` : ''}`;
}

export class KubeApiError extends Error {
  /** The Status object's `reason` (Forbidden, NotFound, Conflict, Expired, ...), when it had one. */
  readonly reason?: string;

  constructor(
    readonly target: KubeRequestTarget,
    /** HTTP status, or the `code` of a watch ERROR event. */
    readonly code: number,
    /** The API server's own message (its Status object's `message`, else the body's start). */
    readonly apiMessage: string,
    reason?: string,
  ) {
    super(`the Kubernetes API refused to ${describeTarget(target)}: ${code}${reason ? ` ${reason}` : ''}: ${apiMessage}${hint(target, code)}`);
    this.name = 'KubeApiError';
    this.reason = reason;
  }
}

/**
 * 410 Gone: the resourceVersion asked for is older than the API server (its
 * watch cache, or etcd after a compaction) still holds. The only way on is a
 * fresh list.
 */
export class GoneError extends KubeApiError {
  constructor(target: KubeRequestTarget, apiMessage: string, reason?: string) {
    super(target, 410, apiMessage, reason);
    this.name = 'GoneError';
  }
}

export function apiError(target: KubeRequestTarget, code: number, apiMessage: string, reason?: string): KubeApiError {
  return code === 410 ? new GoneError(target, apiMessage, reason) : new KubeApiError(target, code, apiMessage, reason);
}

// RBAC and credential problems are the usual first-run failures: say what to change.
function hint(target: KubeRequestTarget, code: number): string {
  if (code === 401) return ' (the credentials were not accepted: check the token or client certificate in the kubeconfig or service account)';
  if (code === 403) return ` (RBAC: the ClusterRole bound to this identity must allow "${target.verb}" on "${target.resource}")`;
  return '';
}

export class KubeConnectionError extends Error {
  constructor(readonly target: KubeRequestTarget, readonly server: string, override readonly cause: Error | undefined, detail: string) {
    super(`cannot ${describeTarget(target)} at ${server}: ${detail}`);
    this.name = 'KubeConnectionError';
  }
}

export class KubeTimeoutError extends KubeConnectionError {
  constructor(target: KubeRequestTarget, server: string, readonly timeoutMs: number, what: string) {
    super(target, server, undefined, `${what} after ${timeoutMs} ms`);
    this.name = 'KubeTimeoutError';
  }
}

export class KubeProtocolError extends Error {
  constructor(readonly target: KubeRequestTarget, detail: string) {
    super(`unexpected answer to ${describeTarget(target)}: ${detail}`);
    this.name = 'KubeProtocolError';
  }
}
