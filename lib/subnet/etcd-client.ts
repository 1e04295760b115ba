/**
 * Building the etcd3 client from flanneld's flags. TLS is used exactly when
 * the endpoints say https://; certificate files given with http:// endpoints
 * are refused rather than silently ignored, so a typo never downgrades a
 * cluster to plaintext. There is no fallback from https:// to http://.
 *
 * Failure semantics:
 * - Settings that cannot work (bad endpoint, unreadable or unparsable PEM
 *   file, a key that does not belong to its certificate, a flag without its
 *   partner) throw `EtcdSettingsError` here, before any connection.
 * - Every unary call's failure reaches the caller as an error from
 *   `etcd-errors.ts` (`EtcdTlsError`, `EtcdAuthError`, `EtcdUnavailableError`)
 *   whose message names the endpoint, the cause and what to do; others pass
 *   unchanged. A call is tried up to three times on a transient failure
 *   (etcd3's own default), the retries spaced by the host's circuit breaker
 *   (see `hostBreaker`), then fails; a call made while the circuit is
 *   already open fails at once with the last failure repeated, so a caller
 *   logging "once per distinct message" sees one state, not two alternating
 *   ones.
 * - Streams (watch, keepalive) are not translated here; callers may pass
 *   their errors through `describeEtcdError`.
 * - Given --etcd-username against an etcd without authentication, the client
 *   carries on without credentials, as flanneld (etcd's Go client) does, and
 *   says so once through `onNotice`.
 */
import { X509Certificate, createPrivateKey } from 'crypto';
import { readFileSync } from 'fs';
import { Etcd3, GRPCCancelledError, IOptions, isRecoverableError } from 'etcd3';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen } from 'cockatiel';
import { ClientCertificateInfo, EtcdErrorContext, isBrokenCircuit, translateEtcdError } from './etcd-errors';

export * from './etcd-errors';

export interface EtcdConnectionOptions {
  readonly endpoints: readonly string[];
  readonly keyFile?: string;
  readonly certFile?: string;
  readonly caFile?: string;
  readonly username?: string;
  readonly password?: string;
  /** Deadline of one unary call, in ms; streams (watch, keepalive) have none. */
  readonly callTimeoutMs?: number;
  /** Told once about a setting that etcd made moot (credentials for an etcd without auth). */
  readonly onNotice?: (message: string) => void;
}

/** The etcd connection settings cannot work as given. */
export class EtcdSettingsError extends Error {
  constructor(readonly flag: string, message: string) {
    super(message);
    this.name = 'EtcdSettingsError';
  }
}

/** Attempts of one unary call on a transient failure, as etcd3's default policy. */
const ATTEMPTS = 3;
const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

export function createEtcdClient(opts: EtcdConnectionOptions): Etcd3 {
  if (opts.endpoints.length === 0) throw new EtcdSettingsError('--etcd-endpoints', '--etcd-endpoints lists no endpoint');
  const secure = opts.endpoints.filter((e) => e.startsWith('https://')).length;
  for (const e of opts.endpoints) {
    if (!/^https?:\/\/[^/\s]+\/?$/.test(e)) {
      throw new EtcdSettingsError('--etcd-endpoints', `--etcd-endpoints: ${JSON.stringify(e)} is not of the form http://host:port or https://host:port`);
    }
  }
  if (secure !== 0 && secure !== opts.endpoints.length) {
    throw new EtcdSettingsError('--etcd-endpoints', '--etcd-endpoints mixes http:// and https:// endpoints; use one scheme for all');
  }
  const tlsFiles = [opts.caFile, opts.certFile, opts.keyFile].filter((f) => f);
  if (!secure && tlsFiles.length > 0) {
    throw new EtcdSettingsError('--etcd-cafile', 'TLS files are given (--etcd-cafile/--etcd-certfile/--etcd-keyfile) but --etcd-endpoints use http://; use https:// endpoints');
  }
  if (Boolean(opts.certFile) !== Boolean(opts.keyFile)) {
    throw new EtcdSettingsError('--etcd-certfile', '--etcd-certfile and --etcd-keyfile go together: give both or neither');
  }
  if (Boolean(opts.username) !== Boolean(opts.password)) {
    throw new EtcdSettingsError('--etcd-username', '--etcd-username and --etcd-password go together: give both or neither');
  }

  const timeout = opts.callTimeoutMs ?? 5000;
  const options: IOptions = {
    hosts: [...opts.endpoints],
    dialTimeout: timeout,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
  };
  let clientCert: ClientCertificateInfo | undefined;
  if (secure) {
    const rootCertificate = opts.caFile ? readPem(opts.caFile, '--etcd-cafile') : readSystemRoots();
    checkCertificates(rootCertificate, opts.caFile ? `--etcd-cafile ${opts.caFile}` : SYSTEM_CA_BUNDLE, '--etcd-cafile');
    if (opts.certFile && opts.keyFile) {
      const certChain = readPem(opts.certFile, '--etcd-certfile');
      const privateKey = readPem(opts.keyFile, '--etcd-keyfile');
      clientCert = checkKeyPair(certChain, privateKey, opts.certFile, opts.keyFile);
      options.credentials = { rootCertificate, certChain, privateKey };
    } else {
      options.credentials = { rootCertificate };
    }
  }
  if (opts.username && opts.password) options.auth = { username: opts.username, password: opts.password };

  const context: EtcdErrorContext = {
    endpoints: opts.endpoints,
    username: opts.username,
    caFile: opts.caFile,
    certFile: opts.certFile,
    clientCert,
  };
  options.faultHandling = {
    global: translatingPolicy(context, options, opts.onNotice),
    host: () => hostBreaker(),
    // etcd3's default lets watch reconnects back off to 30 s; after an outage
    // the agent must be watching again within a second of etcd's return. At
    // most one stream attempt per 300 ms, and the breaker below gates them.
    watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 300 }).next(),
  };
  return new Etcd3(options);
}

/**
 * Consecutive failures after which a host's circuit opens. One: a watch
 * stream's creation counts as a success before it has reached etcd, which
 * closes the circuit; with etcd3's three, every such fake success let three
 * more attempts through (8 a second while etcd was down).
 */
const BREAKER_FAILURES = 1;
/** While a host's circuit is open, one call is let through (a probe) at most this often. */
const HALF_OPEN_AFTER_MS = 300;

/**
 * The per-host policy. etcd3's default is a circuit breaker that stays open
 * for 5 s after 3 failures: calls fail at once without touching the network,
 * and after an outage the agent stayed away from a working etcd for up to
 * those 5 s. Here the circuit lets one probe through every 300 ms: back
 * within a second of etcd answering (measured 50-550 ms), and while etcd is
 * down about six connection attempts a second per host, whatever the number
 * of callers (measured; test/integration/etcd-reconnect.test.ts).
 */
function hostBreaker(): HostPolicy {
  // A stream this client cancels itself (a watch replaced after a compaction)
  // says nothing about the host: only failures to reach etcd count.
  const unreachable = (err: Error) => isRecoverableError(err) && !(err instanceof GRPCCancelledError);
  return circuitBreaker(handleWhen(unreachable), {
    halfOpenAfter: HALF_OPEN_AFTER_MS,
    breaker: new ConsecutiveBreaker(BREAKER_FAILURES),
  });
}

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;
type GlobalPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/**
 * etcd3's global policy, which every unary call (and the token exchange
 * before it) runs through: retries a transient failure like etcd3's default,
 * then translates the failure (see the file comment).
 */
function translatingPolicy(context: EtcdErrorContext, options: IOptions, onNotice?: (message: string) => void): GlobalPolicy {
  let lastFailure: unknown;
  const signal = new AbortController().signal;
  const noEvent = () => ({ dispose: () => undefined });
  const policy = {
    onSuccess: noEvent,
    onFailure: noEvent,
    async execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> {
      // This call's last failure that reached etcd, and how many did.
      let reached: unknown;
      let reachedCount = 0;
      let heldBack = 0;
      for (;;) {
        try {
          const result = await fn({ signal });
          lastFailure = undefined;
          return result;
        } catch (err) {
          if (options.auth && isAuthNotEnabled(err)) {
            // etcd's Go client (and so flanneld) ignores credentials that etcd does not ask for.
            options.auth = undefined;
            onNotice?.(`etcd at ${context.endpoints.join(', ')} has authentication disabled; connecting without --etcd-username/--etcd-password`);
            continue;
          }
          if (isBrokenCircuit(err)) {
            // The host's circuit opened on this call's failure: wait for its
            // next probe, so a transient failure still gets its retries.
            if (reachedCount > 0 && reachedCount < ATTEMPTS && heldBack < ATTEMPTS) {
              heldBack++;
              await new Promise((resolve) => setTimeout(resolve, HALF_OPEN_AFTER_MS));
              continue;
            }
            // Open before this call began (etcd is away): the last failure again, at once.
            if (reached === undefined && lastFailure !== undefined) throw lastFailure;
            lastFailure = translateEtcdError(reached ?? err, context);
            throw lastFailure;
          }
          reached = err;
          reachedCount++;
          if (reachedCount < ATTEMPTS && err instanceof Error && isRecoverableError(err)) continue;
          lastFailure = translateEtcdError(err, context);
          throw lastFailure;
        }
      }
    },
  };
  return policy as unknown as GlobalPolicy;
}

function isAuthNotEnabled(err: unknown): boolean {
  return err instanceof Error && /etcdserver: authentication is not enabled/.test(err.message);
}

function readPem(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new EtcdSettingsError(flag, `${flag}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function readSystemRoots(): Buffer {
  try {
    return readFileSync(SYSTEM_CA_BUNDLE);
  } catch {
    throw new EtcdSettingsError('--etcd-cafile', 'https:// endpoints need --etcd-cafile (no system CA bundle found)');
  }
}

/** The CA file must hold at least one certificate, or every handshake would fail with a vaguer message. */
function checkCertificates(pem: Buffer, what: string, flag: string): void {
  if (!/-----BEGIN CERTIFICATE-----/.test(pem.toString('latin1'))) {
    throw new EtcdSettingsError(flag, `${what} holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`);
  }
  try {
    new X509Certificate(pem);
  } catch (err) {
    throw new EtcdSettingsError(flag, `${what} is not a readable PEM certificate: ${(err as Error).message}`);
  }
}

/** Parses the client certificate (its first one) and checks that the key belongs to it. */
function checkKeyPair(certPem: Buffer, keyPem: Buffer, certFile: string, keyFile: string): ClientCertificateInfo {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new EtcdSettingsError('--etcd-certfile', `--etcd-certfile ${certFile} is not a readable PEM certificate: ${(err as Error).message}`);
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch (err) {
    throw new EtcdSettingsError('--etcd-keyfile', `--etcd-keyfile ${keyFile} is not a readable unencrypted PEM private key: ${(err as Error).message}`);
  }
  if (!matches) {
    throw new EtcdSettingsError('--etcd-keyfile', `--etcd-keyfile ${keyFile} is not the private key of --etcd-certfile ${certFile}`);
  }
  return {
    subject: oneLine(cert.subject),
    issuer: oneLine(cert.issuer),
    validFrom: new Date(cert.validFrom),
    validTo: new Date(cert.validTo),
  };
}

/** X509Certificate prints names one attribute per line: "CN=a\nO=b" → "CN=a, O=b". */
function oneLine(name: string): string {
  return name.split('\n').filter(Boolean).join(', ');
}
