/**
 * A throw-away PKI for TLS tests, made with the `openssl` binary into a
 * temporary directory that `destroy()` removes:
 *
 *   ca            the CA etcd trusts and twilld is told to trust
 *   server        signed by ca, for IP 127.0.0.1 (serverAuth + clientAuth, as
 *                 etcd also uses it to dial itself)
 *   client        signed by ca, clientAuth
 *   expiredClient signed by ca, valid from two days ago until yesterday
 *   wrongCa       an unrelated CA, and `wrongCaClient`, a client cert it signed
 *
 * openssl runs through `execFile` with argument arrays. The expired
 * certificate is issued with `openssl ca -startdate/-enddate`, which every
 * openssl since 1.0 has (`x509 -not_before` arrived only in 3.4).
 * Keys are EC P-256: quick to make, understood by Go (etcd) and Node.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { run } from './netns';

export interface CertPair {
  readonly cert: string;
  readonly key: string;
}

export interface TestPki {
  readonly dir: string;
  /** The CA's certificate (PEM file path). */
  readonly caCert: string;
  readonly server: CertPair;
  readonly client: CertPair;
  readonly expiredClient: CertPair;
  /** A CA unrelated to `caCert`. */
  readonly wrongCaCert: string;
  /** A client certificate signed by the wrong CA. */
  readonly wrongCaClient: CertPair;
  destroy(): void;
}

const KEY_ARGS = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** `serverIps`: more addresses the server certificate is valid for, beside 127.0.0.1. */
export async function createTestPki(opts: { serverIps?: readonly string[] } = {}): Promise<TestPki> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-pki-'));
  try {
    const ca = await selfSignedCa(dir, 'ca', 'twill-test-ca');
    const wrongCa = await selfSignedCa(dir, 'wrong-ca', 'twill-wrong-ca');
    const server = await issue(dir, ca, 'server', '127.0.0.1', [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      `subjectAltName=${['127.0.0.1', ...(opts.serverIps ?? [])].map((ip) => `IP:${ip}`).join(',')}`,
    ]);
    const clientExt = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth'];
    const client = await issue(dir, ca, 'client', 'twill-node', clientExt);
    const wrongCaClient = await issue(dir, wrongCa, 'wrong-ca-client', 'twill-node', clientExt);
    const expiredClient = await issueExpired(dir, ca, 'expired-client', 'twill-node', clientExt);
    return {
      dir,
      caCert: ca.cert,
      server,
      client,
      expiredClient,
      wrongCaCert: wrongCa.cert,
      wrongCaClient,
      destroy: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function selfSignedCa(dir: string, name: string, cn: string): Promise<CertPair> {
  const pair = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  await openssl(['req', '-x509', ...KEY_ARGS, '-keyout', pair.key, '-out', pair.cert, '-days', '2',
    '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return pair;
}

async function request(dir: string, name: string, cn: string): Promise<{ csr: string; key: string }> {
  const csr = path.join(dir, `${name}.csr`);
  const key = path.join(dir, `${name}.key`);
  await openssl(['req', '-new', ...KEY_ARGS, '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`]);
  return { csr, key };
}

async function issue(dir: string, ca: CertPair, name: string, cn: string, extensions: string[]): Promise<CertPair> {
  const { csr, key } = await request(dir, name, cn);
  const ext = path.join(dir, `${name}.ext`);
  writeFileSync(ext, `${extensions.join('\n')}\n`);
  const cert = path.join(dir, `${name}.crt`);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(serial()),
    '-days', '2', '-sha256', '-extfile', ext, '-out', cert]);
  return { cert, key };
}

/** A certificate whose validity ended yesterday, issued through `openssl ca`. */
async function issueExpired(dir: string, ca: CertPair, name: string, cn: string, extensions: string[]): Promise<CertPair> {
  const { csr, key } = await request(dir, name, cn);
  const caDir = path.join(dir, 'ca-db');
  mkdirSync(path.join(caDir, 'new'), { recursive: true });
  writeFileSync(path.join(caDir, 'index.txt'), '');
  writeFileSync(path.join(caDir, 'serial'), `${serial().toString(16).padStart(16, '0')}\n`);
  const config = path.join(caDir, 'ca.cnf');
  writeFileSync(config, [
    '[ ca ]', 'default_ca = test_ca',
    '[ test_ca ]',
    `database = ${path.join(caDir, 'index.txt')}`,
    `new_certs_dir = ${path.join(caDir, 'new')}`,
    `serial = ${path.join(caDir, 'serial')}`,
    'default_md = sha256', 'policy = policy_any', 'unique_subject = no', 'copy_extensions = none',
    '[ policy_any ]', 'commonName = supplied',
    '[ ext ]', ...extensions, '',
  ].join('\n'));
  const day = 24 * 3600 * 1000;
  const cert = path.join(dir, `${name}.crt`);
  await openssl(['ca', '-batch', '-notext', '-config', config, '-cert', ca.cert, '-keyfile', ca.key,
    '-in', csr, '-out', cert, '-extensions', 'ext',
    '-startdate', utcTime(new Date(Date.now() - 2 * day)), '-enddate', utcTime(new Date(Date.now() - day))]);
  return { cert, key };
}

/** ASN.1 UTCTime as openssl's -startdate/-enddate take it: YYMMDDHHMMSSZ. */
function utcTime(d: Date): string {
  return d.toISOString().replace(/^\d\d(\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d).*$/, '$1$2$3$4$5$6Z');
}

let serialCounter = 0;
function serial(): number {
  return Date.now() % 1_000_000_000 * 100 + (++serialCounter % 100);
}

async function openssl(args: string[]): Promise<void> {
  await run(['openssl', ...args], { timeoutMs: 20_000 });
}
