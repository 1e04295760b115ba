/**
 * WireGuard keys: Curve25519 (X25519) key pairs from node:crypto, written
 * base64 as WireGuard tools and flanneld write them (44 characters), hex on
 * wireguard-go's UAPI.
 *
 * The private key lives in a file (flanneld: /run/flannel/wgkey, or
 * $WIREGUARD_KEY_FILE), made with mode 0600 on first start (the key alone, no newline, as flanneld writes it) and reused on
 * every start after, so a restarted node keeps its public key and its
 * peers need no update. A file that is not a key is an error that names
 * the file; twill never overwrites it.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'fs';
import * as path from 'path';

export const KEY_BYTES = 32;
export const DEFAULT_KEY_FILE = '/run/flannel/wgkey';

/** The key file is unusable; the message names it and says what to do. */
export class KeyFileError extends Error {
  constructor(readonly file: string, message: string) {
    super(message);
    this.name = 'KeyFileError';
  }
}

export interface KeyPair {
  /** base64 */
  readonly privateKey: string;
  /** base64 */
  readonly publicKey: string;
}

/** The 32 bytes of a base64 key; throws an Error saying what is wrong with it. */
export function decodeKey(text: string): Buffer {
  const t = text.trim();
  if (!/^[A-Za-z0-9+/]{43}=$/.test(t)) {
    throw new Error(`${JSON.stringify(t.length > 60 ? `${t.slice(0, 57)}...` : t)} is not a base64 WireGuard key (44 characters ending in "=", 32 bytes)`);
  }
  return Buffer.from(t, 'base64');
}

export function keyToHex(base64: string): string {
  return decodeKey(base64).toString('hex');
}

export function hexToKey(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

// DER prefixes of X25519 keys (RFC 8410): what node:crypto imports and exports around the 32 raw bytes.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export function publicKeyOf(privateKeyBase64: string): string {
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, decodeKey(privateKeyBase64)]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  return spki.subarray(SPKI_PREFIX.length).toString('base64');
}

export function generateKeyPair(): KeyPair {
  const { privateKey } = generateKeyPairSync('x25519');
  const raw = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length);
  const priv = Buffer.from(raw).toString('base64');
  return { privateKey: priv, publicKey: publicKeyOf(priv) };
}

/** Reads the node's key pair from `file`, or makes one and writes it there (mode 0600). */
export function loadOrCreateKey(file: string): KeyPair & { readonly created: boolean } {
  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new KeyFileError(file, `cannot read the WireGuard key file ${file} (${code}): fix its permissions or remove it to have a new key made`);
  }
  if (text !== undefined) {
    try {
      const privateKey = text.trim();
      decodeKey(privateKey);
      return { privateKey, publicKey: publicKeyOf(privateKey), created: false };
    } catch (err) {
      throw new KeyFileError(file, `the WireGuard key file ${file} does not hold a private key: ${(err as Error).message}; ` +
        'put a key from `wg genkey` there, or remove the file to have a new one made (peers then learn the new public key from the lease)');
    }
  }
  const pair = generateKeyPair();
  try {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    writeFileSync(file, pair.privateKey, { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600);
  } catch (err) {
    throw new KeyFileError(file, `cannot write the WireGuard key file ${file}: ${(err as Error).message}`);
  }
  return { ...pair, created: true };
}

/** The key file's permission bits (tests, diagnose). */
export function keyFileMode(file: string): number {
  return statSync(file).mode & 0o777;
}

/** The public key a peer publishes in its BackendData; a string saying what is wrong when it has none usable. */
export function peerPublicKey(data: unknown): { key: string } | { problem: string } {
  const v = data !== null && typeof data === 'object' ? (data as Record<string, unknown>).PublicKey : undefined;
  if (v === undefined) return { problem: 'its lease has no BackendData.PublicKey' };
  if (typeof v !== 'string') return { problem: `its lease's BackendData.PublicKey is ${JSON.stringify(v)}, not a string` };
  try {
    decodeKey(v);
  } catch (err) {
    return { problem: `its lease's BackendData.PublicKey ${(err as Error).message}` };
  }
  return { key: v.trim() };
}
