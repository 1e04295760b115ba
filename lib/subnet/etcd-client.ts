/**
 * Building the etcd3 client from flanneld's flags. TLS is used exactly when
 * the endpoints say https://; certificate files given with http:// endpoints
 * are refused rather than silently ignored, so a typo never downgrades a
 * cluster to plaintext.
 */
import { readFileSync } from 'fs';
import { Etcd3, IOptions } from 'etcd3';

export interface EtcdConnectionOptions {
  readonly endpoints: readonly string[];
  readonly keyFile?: string;
  readonly certFile?: string;
  readonly caFile?: string;
  readonly username?: string;
  readonly password?: string;
  /** Deadline of one unary call, in ms; streams (watch, keepalive) have none. */
  readonly callTimeoutMs?: number;
}

/** The etcd connection settings cannot work as given. */
export class EtcdSettingsError extends Error {
  constructor(readonly flag: string, message: string) {
    super(message);
    this.name = 'EtcdSettingsError';
  }
}

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
  if (secure) {
    options.credentials = {
      rootCertificate: opts.caFile ? readPem(opts.caFile, '--etcd-cafile') : readSystemRoots(),
      ...(opts.certFile && opts.keyFile
        ? { certChain: readPem(opts.certFile, '--etcd-certfile'), privateKey: readPem(opts.keyFile, '--etcd-keyfile') }
        : {}),
    };
  }
  if (opts.username && opts.password) options.auth = { username: opts.username, password: opts.password };
  return new Etcd3(options);
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
    return readFileSync('/etc/ssl/certs/ca-certificates.crt');
  } catch {
    throw new EtcdSettingsError('--etcd-cafile', 'https:// endpoints need --etcd-cafile (no system CA bundle found)');
  }
}
