/**
 * What went wrong talking to etcd, as typed errors whose message names the
 * endpoint, the cause and what to do. etcd3 and grpc-js report a wrong CA, a
 * rejected client certificate and a refused connection all as
 * "14 UNAVAILABLE: No connection established …"; `translateEtcdError` tells
 * them apart (from the TLS detail grpc-js appends and from what the client
 * itself knows about its certificate) so that callers branch on `instanceof`
 * and operators read one clear line:
 *
 *   EtcdTlsError          TLS failed: the server's certificate is not trusted,
 *                         has expired or does not name the endpoint; or etcd
 *                         rejected the client certificate (missing, expired,
 *                         from a CA it does not trust).            configuration
 *   EtcdAuthError         wrong user name or password, credentials missing, or
 *                         the user may not touch the prefix.        configuration
 *   EtcdUnavailableError  no connection or no answer in time.       transient
 *
 * A configuration error does not go away by retrying. The policy: at
 * start-up twilld stops on one, logging its message once and exiting 1
 * (as flanneld does on wrong credentials) — the config reader rethrows what
 * `isEtcdConfigurationError` accepts; once running, twilld keeps the
 * datapath and retries, logging once per change of state. A transient error
 * is retried everywhere. Messages carry no timestamps or counters, so a
 * caller that logs "once per distinct message" logs each state once.
 */
import { EtcdPermissionDeniedError, GRPCDeadlineExceededError, GRPCUnavailableError } from 'etcd3';

/** What a translation may name: the settings the client was built from. */
export interface EtcdErrorContext {
  readonly endpoints: readonly string[];
  readonly username?: string;
  readonly caFile?: string;
  readonly certFile?: string;
  /** The client certificate as parsed when the client was made, to explain a rejection. */
  readonly clientCert?: ClientCertificateInfo;
}

export interface ClientCertificateInfo {
  readonly subject: string;
  readonly issuer: string;
  readonly validFrom: Date;
  readonly validTo: Date;
}

/** Base of the errors below: `endpoint` names where, `remedy` what to do. */
export abstract class EtcdAccessError extends Error {
  /** True when retrying cannot help: the settings (files, credentials, grants) must change. */
  abstract readonly configuration: boolean;

  constructor(readonly endpoint: string, readonly problem: string, readonly remedy: string, cause?: unknown) {
    super(`${endpoint}: ${problem}${remedy ? `; ${remedy}` : ''}`, cause === undefined ? undefined : { cause });
  }
}

export type EtcdTlsFailure =
  | 'server-untrusted'
  | 'server-expired'
  | 'server-name-mismatch'
  | 'client-cert-missing'
  | 'client-cert-expired'
  | 'client-cert-not-yet-valid'
  | 'client-cert-rejected'
  | 'handshake-failed';

export class EtcdTlsError extends EtcdAccessError {
  readonly configuration = true;
  constructor(readonly failure: EtcdTlsFailure, endpoint: string, problem: string, remedy: string, cause?: unknown) {
    super(endpoint, problem, remedy, cause);
    this.name = 'EtcdTlsError';
  }
}

export type EtcdAuthFailure = 'bad-credentials' | 'credentials-required' | 'permission-denied';

export class EtcdAuthError extends EtcdAccessError {
  readonly configuration = true;
  constructor(readonly failure: EtcdAuthFailure, readonly username: string | undefined, endpoint: string, problem: string, remedy: string, cause?: unknown) {
    super(endpoint, problem, remedy, cause);
    this.name = 'EtcdAuthError';
  }
}

export class EtcdUnavailableError extends EtcdAccessError {
  readonly configuration = false;
  constructor(endpoint: string, problem: string, remedy: string, cause?: unknown) {
    super(endpoint, problem, remedy, cause);
    this.name = 'EtcdUnavailableError';
  }
}

/** A TLS or authentication failure that retrying cannot fix. */
export function isEtcdConfigurationError(err: unknown): err is EtcdTlsError | EtcdAuthError {
  return err instanceof EtcdAccessError && err.configuration;
}

/**
 * The one line to log for an etcd failure: the translated message when it is
 * one of ours or an etcd3/grpc error we recognise, else the error's message.
 */
export function describeEtcdError(err: unknown, context: EtcdErrorContext = { endpoints: [] }): string {
  const translated = translateEtcdError(err, context);
  return translated instanceof Error ? translated.message : String(translated);
}

/**
 * Maps an etcd3/grpc-js error to one of the classes above; anything it does
 * not recognise (and errors already translated) is returned unchanged.
 */
export function translateEtcdError(err: unknown, context: EtcdErrorContext): unknown {
  if (!(err instanceof Error) || err instanceof EtcdAccessError) return err;
  const where = endpointPhrase(context.endpoints);
  const message = err.message;

  if (/authentication failed, invalid user ID or password/.test(message)) {
    const user = context.username ?? '';
    return new EtcdAuthError('bad-credentials', context.username, where,
      `authentication failed for user ${JSON.stringify(user)}: wrong user name or password`,
      'check --etcd-username and --etcd-password', err);
  }
  if (/etcdserver: user name is empty/.test(message)) {
    return new EtcdAuthError('credentials-required', undefined, where,
      'authentication is enabled there and no user name was given',
      'give --etcd-username and --etcd-password', err);
  }
  if (/etcdserver: permission denied|PERMISSION_DENIED/.test(message) || err instanceof EtcdPermissionDeniedError) {
    const who = context.username ? `user ${JSON.stringify(context.username)}` : context.clientCert ? `the user named by the client certificate (${context.clientCert.subject})` : 'this client';
    return new EtcdAuthError('permission-denied', context.username, where,
      `permission denied for ${who}`,
      'grant its role read-write on the keys under --etcd-prefix (etcdctl role grant-permission ROLE --prefix readwrite PREFIX/)', err);
  }

  const detail = lastConnectionError(message);
  const tls = detail === undefined ? undefined : translateTlsFailure(detail, where, context, err);
  if (tls) return tls;

  if (isBrokenCircuit(err)) {
    return new EtcdUnavailableError(where, 'unreachable: the last call failed; until a trial call (one every 300 ms) succeeds, calls fail at once', '', err);
  }
  if (/^14 UNAVAILABLE|No connection established/.test(message) || err instanceof GRPCUnavailableError) {
    const why = detail ? tidy(detail) : 'no connection';
    return new EtcdUnavailableError(where, `unreachable (${why})`,
      'check that etcd runs there and that the endpoint\'s scheme (http:// or https://) is the one etcd serves', err);
  }
  if (/^4 DEADLINE_EXCEEDED|Deadline exceeded/i.test(message) || err instanceof GRPCDeadlineExceededError) {
    return new EtcdUnavailableError(where, 'did not answer in time', 'check that etcd is healthy and reachable', err);
  }
  return err;
}

/** "etcd at https://10.0.0.1:2379", or the whole list when the failing one is not known. */
function endpointPhrase(endpoints: readonly string[]): string {
  if (endpoints.length === 0) return 'etcd';
  if (endpoints.length === 1) return `etcd at ${endpoints[0]}`;
  return `etcd at one of ${endpoints.join(', ')}`;
}

/**
 * grpc-js: "14 UNAVAILABLE: No connection established. Last error: <detail>
 * (<timestamp>). Resolution note: …". Returns <detail> without the timestamp.
 */
function lastConnectionError(message: string): string | undefined {
  const m = /Last error: ([\s\S]*?)\s*(?:\(\d{4}-\d\d-\d\dT[\d:.]+Z\))?\.?\s*(?:Resolution note|$)/.exec(message);
  return m ? m[1].replace(/^Error(?: \[[A-Z_]+\])?: /, '').trim() : undefined;
}

/** An OpenSSL error line reduced to its reason: "…:SSL routines:…:sslv3 alert bad certificate:…" → TLS alert "bad certificate". */
function tidy(detail: string): string {
  const alert = /alert ([a-z ]+?)(?::|$)/i.exec(detail);
  if (alert) return `TLS alert "${alert[1]}"`;
  const reason = /SSL routines:[^:]*:([^:]+)/.exec(detail);
  if (reason) return reason[1];
  return detail.split('\n')[0];
}

/** TLS alerts a server sends when it does not accept the client's certificate. */
const CLIENT_CERT_ALERTS = /alert (bad certificate|certificate expired|certificate unknown|unknown ca|certificate required|certificate revoked|unsupported certificate|access denied)|SSL alert number (42|43|44|45|46|48|49|116)\b/i;

function translateTlsFailure(detail: string, where: string, context: EtcdErrorContext, cause: Error): EtcdTlsError | undefined {
  const caSource = context.caFile ? `--etcd-cafile ${context.caFile}` : 'the system CA bundle (no --etcd-cafile given)';
  const verification = 'TLS certificate verification failed';
  if (/unable to verify|self[- ]signed|unable to get (local )?issuer|certificate signature failure|UNABLE_TO_(VERIFY|GET)|CERT_UNTRUSTED|DEPTH_ZERO_SELF_SIGNED/i.test(detail)) {
    return new EtcdTlsError('server-untrusted', where,
      `${verification}: the server's certificate is not signed by a CA in ${caSource} (${tidy(detail)})`,
      'give --etcd-cafile the CA that issued etcd\'s certificate', cause);
  }
  if (/certificate has expired|CERT_HAS_EXPIRED/i.test(detail)) {
    return new EtcdTlsError('server-expired', where, `${verification}: the server's certificate has expired`,
      'renew etcd\'s certificate', cause);
  }
  if (/does not match certificate's altnames|ERR_TLS_CERT_ALTNAME|Hostname\/IP does not match/i.test(detail)) {
    return new EtcdTlsError('server-name-mismatch', where,
      `${verification}: the server's certificate does not name this endpoint (${tidy(detail)})`,
      'use an endpoint address listed in the certificate\'s subjectAltName, or reissue the certificate', cause);
  }
  if (CLIENT_CERT_ALERTS.test(detail)) return clientCertificateRejected(detail, where, context, cause);
  if (/wrong version number|packet length too long|unknown protocol|http request|disconnected before secure TLS connection/i.test(detail)) {
    return new EtcdTlsError('handshake-failed', where, `TLS handshake failed (${tidy(detail)}): this address does not seem to serve https://`,
      'use http:// if etcd serves plain http, or check the port', cause);
  }
  if (/SSL routines|\bTLS\b|certificate/i.test(detail)) {
    return new EtcdTlsError('handshake-failed', where, `TLS handshake failed (${tidy(detail)})`,
      'check --etcd-cafile, --etcd-certfile and --etcd-keyfile against etcd\'s TLS settings', cause);
  }
  return undefined;
}

/** The server refused our certificate; it does not say why, but we know what we sent. */
function clientCertificateRejected(detail: string, where: string, context: EtcdErrorContext, cause: Error): EtcdTlsError {
  const alert = tidy(detail);
  const cert = context.clientCert;
  if (!cert || !context.certFile) {
    return new EtcdTlsError('client-cert-missing', where,
      `rejected the connection (${alert}): a client certificate is required and none was given`,
      'give --etcd-certfile and --etcd-keyfile', cause);
  }
  const now = Date.now();
  const file = `--etcd-certfile ${context.certFile}`;
  if (cert.validTo.getTime() < now) {
    return new EtcdTlsError('client-cert-expired', where,
      `rejected the client certificate ${file} (${alert}): it expired on ${cert.validTo.toISOString()}`,
      'renew the client certificate', cause);
  }
  if (cert.validFrom.getTime() > now) {
    return new EtcdTlsError('client-cert-not-yet-valid', where,
      `rejected the client certificate ${file} (${alert}): it is valid only from ${cert.validFrom.toISOString()}`,
      'check the clock of this node and of etcd, or reissue the certificate', cause);
  }
  return new EtcdTlsError('client-cert-rejected', where,
    `rejected the client certificate ${file} (${alert}; subject ${cert.subject}, issued by ${cert.issuer})`,
    'use a client certificate issued by a CA in etcd\'s --trusted-ca-file', cause);
}

/** cockatiel's BrokenCircuitError (etcd3's per-host circuit breaker is open). */
export function isBrokenCircuit(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { isBrokenCircuitError?: unknown }).isBrokenCircuitError === true;
}
