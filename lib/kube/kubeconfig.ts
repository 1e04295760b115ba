/**
 * Where the Kubernetes API is and who we are to it: a kubeconfig file (its
 * current-context only), or the pod's service account (in-cluster), with
 * `--kube-api-url` replacing the server of either.
 *
 * The choice follows flanneld (client-go's `clientcmd.BuildConfigFromFlags`):
 * a kubeconfig file when one is given; with neither flag, the in-cluster
 * service account. One difference: with `--kube-api-url` alone client-go
 * sends no credentials at all, while twill keeps the service account's when
 * it runs in a pod (useful to reach the API server directly before
 * kube-proxy is up); outside a pod it too sends none.
 *
 * Supported kubeconfig fields: cluster `server`, `certificate-authority`,
 * `certificate-authority-data`, `insecure-skip-tls-verify`,
 * `tls-server-name`; user `token`, `tokenFile`, `client-certificate`,
 * `client-key`, `client-certificate-data`, `client-key-data`. Relative file
 * paths are relative to the kubeconfig's directory, as in client-go. Any
 * other field of the cluster or user (exec plugins, auth providers, basic
 * auth, impersonation, proxies) is refused by name: a half-understood
 * identity would fail later and less clearly.
 */
import { readFileSync, statSync } from 'fs';
import * as path from 'path';
import { KubeConfigError } from './errors';
import { parseKubeconfigYaml, YamlValue } from './kubeconfig-yaml';

/** Everything a request needs; file contents are read once, except token files (see `bearerToken`). */
export interface KubeConfig {
  /** `https://host:port` or `http://host:port`, without a trailing slash; may carry a path prefix. */
  readonly server: string;
  /** PEM CA bundle; undefined: the system's CAs. */
  readonly ca?: Buffer;
  readonly insecureSkipTlsVerify: boolean;
  readonly tlsServerName?: string;
  readonly clientCert?: Buffer;
  readonly clientKey?: Buffer;
  /** The bearer token for the next request, if any; token files are re-read, as bound service-account tokens rotate. */
  readonly bearerToken: () => string | undefined;
  /** Where this came from, for messages: `kubeconfig /path (context "x")` or `in-cluster service account`. */
  readonly source: string;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** How often a token file is read again (client-go: one minute). */
const TOKEN_REREAD_MS = 60_000;

export interface LoadKubeConfigOptions {
  /** `--kubeconfig-file`; empty or undefined: in-cluster. */
  readonly kubeconfigFile?: string;
  /** `--kube-api-url`: replaces the server of whatever config is used. */
  readonly apiUrl?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Where the service account's files are (tests point this elsewhere). */
  readonly serviceAccountDir?: string;
}

export function loadKubeConfig(opts: LoadKubeConfigOptions): KubeConfig {
  const apiUrl = opts.apiUrl ? checkServer(opts.apiUrl, '--kube-api-url') : undefined;
  if (opts.kubeconfigFile) {
    const file = opts.kubeconfigFile;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new KubeConfigError(`cannot read the kubeconfig file ${file}: ${(err as Error).message}`);
    }
    const cfg = parseKubeconfig(text, file);
    return apiUrl ? { ...cfg, server: apiUrl, source: `${cfg.source}, server from --kube-api-url` } : cfg;
  }
  const env = opts.env ?? process.env;
  const inCluster = Boolean(env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT);
  if (inCluster) {
    const cfg = inClusterConfig(env, opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR);
    return apiUrl ? { ...cfg, server: apiUrl, source: `${cfg.source}, server from --kube-api-url` } : cfg;
  }
  if (apiUrl) return { server: apiUrl, insecureSkipTlsVerify: false, bearerToken: () => undefined, source: '--kube-api-url without credentials' };
  throw new KubeConfigError('no Kubernetes API to talk to: give --kubeconfig-file or --kube-api-url, or run in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)');
}

/** The pod's service account: the API's service address from the environment, the token and CA from files. */
export function inClusterConfig(env: NodeJS.ProcessEnv, dir: string): KubeConfig {
  const host = env.KUBERNETES_SERVICE_HOST ?? '';
  const port = env.KUBERNETES_SERVICE_PORT ?? '';
  if (!host || !port) throw new KubeConfigError('in-cluster config needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT');
  const tokenFile = path.join(dir, 'token');
  const caFile = path.join(dir, 'ca.crt');
  // Read now, so that a pod without its service account fails at start, not at the first request.
  readRequired(tokenFile, 'the service account token');
  return {
    server: checkServer(`https://${host.includes(':') ? `[${host}]` : host}:${port}`, 'KUBERNETES_SERVICE_HOST/PORT'),
    ca: readRequired(caFile, 'the service account CA'),
    insecureSkipTlsVerify: false,
    bearerToken: tokenFileSource(tokenFile),
    source: 'in-cluster service account',
  };
}

/** A kubeconfig's current context, resolved to a KubeConfig; `file` names it in errors and anchors relative paths. */
export function parseKubeconfig(text: string, file: string): KubeConfig {
  const doc = parseKubeconfigYaml(text, file);
  const root = asMap(doc, file, '(top level)');
  const current = optString(root, 'current-context', file, 'current-context');
  if (!current) throw new KubeConfigError(`${file}: current-context is not set; twilld uses the current context only`);
  const context = asMap(named(root, 'contexts', current, file).entry.context, file, `contexts[name=${current}].context`);
  const clusterName = optString(context, 'cluster', file, `contexts[name=${current}].context.cluster`);
  const userName = optString(context, 'user', file, `contexts[name=${current}].context.user`);
  if (!clusterName) throw new KubeConfigError(`${file}: context ${JSON.stringify(current)} names no cluster`);
  const base = path.dirname(path.resolve(file));

  const c = named(root, 'clusters', clusterName, file);
  const cluster = asMap(c.entry.cluster, file, `${c.path}.cluster`);
  const cp = `${c.path}.cluster`;
  refuseUnknown(cluster, ['server', 'certificate-authority', 'certificate-authority-data', 'insecure-skip-tls-verify', 'tls-server-name', 'extensions', 'disable-compression'], file, cp);
  const server = optString(cluster, 'server', file, `${cp}.server`);
  if (!server) throw new KubeConfigError(`${file}: ${cp}.server is not set`);
  const caData = optString(cluster, 'certificate-authority-data', file, `${cp}.certificate-authority-data`);
  const caFile = optString(cluster, 'certificate-authority', file, `${cp}.certificate-authority`);
  const insecure = cluster['insecure-skip-tls-verify'];
  if (insecure !== undefined && insecure !== null && typeof insecure !== 'boolean') {
    throw new KubeConfigError(`${file}: ${cp}.insecure-skip-tls-verify must be true or false, not ${JSON.stringify(insecure)}`);
  }
  if (insecure === true && (caData || caFile)) {
    // client-go refuses this pair too: which one was meant is unclear.
    throw new KubeConfigError(`${file}: ${cp} sets both insecure-skip-tls-verify and a certificate authority; keep one`);
  }

  let user: { [key: string]: YamlValue } = {};
  let up = '(no user)';
  if (userName) {
    const u = named(root, 'users', userName, file);
    up = `${u.path}.user`;
    user = u.entry.user === null || u.entry.user === undefined ? {} : asMap(u.entry.user, file, up);
    refuseUnknown(user, ['token', 'tokenFile', 'client-certificate', 'client-key', 'client-certificate-data', 'client-key-data', 'extensions'], file, up);
  }
  const token = optString(user, 'token', file, `${up}.token`);
  const tokenFile = optString(user, 'tokenFile', file, `${up}.tokenFile`);
  const cert = fileOrData(user, 'client-certificate', base, file, up);
  const key = fileOrData(user, 'client-key', base, file, up);
  if ((cert === undefined) !== (key === undefined)) {
    throw new KubeConfigError(`${file}: ${up} has a client ${cert ? 'certificate without its key' : 'key without its certificate'}`);
  }
  return {
    server: checkServer(server, `${file}: ${cp}.server`),
    ca: caData ? decodeBase64(caData, file, `${cp}.certificate-authority-data`) : caFile ? readRequired(resolve(base, caFile), `${cp}.certificate-authority`) : undefined,
    insecureSkipTlsVerify: insecure === true,
    tlsServerName: optString(cluster, 'tls-server-name', file, `${cp}.tls-server-name`) || undefined,
    clientCert: cert,
    clientKey: key,
    // client-go: a token given inline wins over tokenFile.
    bearerToken: token ? () => token : tokenFile ? tokenFileSource(resolve(base, tokenFile)) : () => undefined,
    source: `kubeconfig ${file} (context ${JSON.stringify(current)})`,
  };
}

function named(root: { [key: string]: YamlValue }, list: string, name: string, file: string): { entry: { [key: string]: YamlValue }; path: string } {
  const items = root[list];
  if (items !== undefined && items !== null && !Array.isArray(items)) throw new KubeConfigError(`${file}: ${list} must be a list`);
  const found = (items ?? []).findIndex((it) => it !== null && typeof it === 'object' && !Array.isArray(it) && it.name === name);
  if (found < 0) throw new KubeConfigError(`${file}: ${list} has no entry named ${JSON.stringify(name)}`);
  return { entry: (items as YamlValue[])[found] as { [key: string]: YamlValue }, path: `${list}[${found}]` };
}

function refuseUnknown(obj: { [key: string]: YamlValue }, known: readonly string[], file: string, at: string): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) {
      throw new KubeConfigError(`${file}: ${at}.${k} is not supported by twilld (supported: ${known.filter((x) => x !== 'extensions' && x !== 'disable-compression').join(', ')})`);
    }
  }
}

function fileOrData(user: { [key: string]: YamlValue }, field: string, base: string, file: string, at: string): Buffer | undefined {
  const data = optString(user, `${field}-data`, file, `${at}.${field}-data`);
  if (data) return decodeBase64(data, file, `${at}.${field}-data`);
  const f = optString(user, field, file, `${at}.${field}`);
  return f ? readRequired(resolve(base, f), `${at}.${field}`) : undefined;
}

function asMap(v: YamlValue | undefined, file: string, at: string): { [key: string]: YamlValue } {
  if (v === null || v === undefined || typeof v !== 'object' || Array.isArray(v)) throw new KubeConfigError(`${file}: ${at} must be a mapping`);
  return v;
}

function optString(obj: { [key: string]: YamlValue }, key: string, file: string, at: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new KubeConfigError(`${file}: ${at} must be a string, not ${JSON.stringify(v)}`);
  return v;
}

function decodeBase64(text: string, file: string, at: string): Buffer {
  const clean = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 !== 0) throw new KubeConfigError(`${file}: ${at} is not base64`);
  return Buffer.from(clean, 'base64');
}

function resolve(base: string, p: string): string {
  return path.isAbsolute(p) ? p : path.join(base, p);
}

function readRequired(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new KubeConfigError(`cannot read ${what} (${file}): ${(err as Error).message}`);
  }
}

function checkServer(server: string, what: string): string {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new KubeConfigError(`${what}: ${JSON.stringify(server)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new KubeConfigError(`${what}: ${JSON.stringify(server)} must be an http:// or https:// URL`);
  if (url.search || url.hash || url.username) throw new KubeConfigError(`${what}: ${JSON.stringify(server)} must not carry a query, fragment or user`);
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}

/**
 * A token file, read again once it is older than a minute: kubelet
 * replaces a projected service-account token well before it expires. When
 * a re-read fails, the last good token is kept (the file is swapped by
 * rename, so a miss is momentary).
 */
function tokenFileSource(file: string): () => string | undefined {
  let token: string | undefined;
  let readAt = 0;
  let mtimeMs = -1;
  return () => {
    const now = Date.now();
    if (token !== undefined && now - readAt < TOKEN_REREAD_MS) return token;
    try {
      const st = statSync(file);
      if (token === undefined || st.mtimeMs !== mtimeMs) {
        token = readFileSync(file, 'utf8').trim();
        mtimeMs = st.mtimeMs;
      }
      readAt = now;
    } catch (err) {
      if (token === undefined) throw new KubeConfigError(`cannot read the token file ${file}: ${(err as Error).message}`);
    }
    return token;
  };
}
