/**
 * twill-cni's network configuration: the JSON a runtime streams on stdin,
 * usually one entry of a conflist with `name` and `cniVersion` filled in.
 *
 *   {
 *     "cniVersion": "1.0.0", "name": "twill", "type": "twill-cni",
 *     "subnetFile": "/run/flannel/subnet.env",   // written by twilld
 *     "dataDir": "/var/lib/cni/flannel",         // delegate configs, one file per container
 *     "readinessURL": "http://127.0.0.1:9943/readyz",   // optional
 *     "delegate": { "hairpinMode": true },       // optional: extra keys for the delegate plugin
 *     "ipam": { "dataDir": "..." }               // optional: extra keys for the IPAM plugin
 *   }
 *
 * The keys, their defaults and their meaning are flannel's CNI plugin's, so
 * an existing flannel conflist works after changing `type`; `dataDir` has
 * flannel's default so that a node switched from flannel's plugin to
 * twill-cni can still DEL the pods flannel's plugin added.
 */
import { CniError, ERR } from './errors';

export const DEFAULT_SUBNET_FILE = '/run/flannel/subnet.env';
export const DEFAULT_DATA_DIR = '/var/lib/cni/flannel';

/** The CNI spec versions twill-cni accepts: the delegate (bridge) does the version-specific work. */
export const SUPPORTED_VERSIONS: readonly string[] = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0'];
/** The version of this plugin's own output when the config names none (VERSION). */
export const CURRENT_VERSION = '1.0.0';

export type JsonObject = Record<string, unknown>;

export interface NetConf {
  readonly cniVersion: string;
  readonly name: string;
  readonly subnetFile: string;
  readonly dataDir: string;
  readonly readinessURL?: string;
  readonly delegate?: JsonObject;
  readonly ipam?: JsonObject;
  readonly runtimeConfig?: JsonObject;
  /** The result of the ADD, passed by the runtime on DEL and CHECK. */
  readonly prevResult?: JsonObject;
}

/** Parses stdin as JSON, without checking fields (VERSION needs only cniVersion). */
export function decodeConf(stdin: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(ERR.DECODING_FAILURE, `the network config on stdin is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(value)) throw new CniError(ERR.DECODING_FAILURE, `the network config on stdin must be a JSON object, not ${describe(value)}`);
  return value;
}

/** The config's cniVersion when it names one this plugin knows, for error output; else the current version. */
export function outputVersion(raw: JsonObject | undefined): string {
  const v = raw?.cniVersion;
  return typeof v === 'string' && SUPPORTED_VERSIONS.includes(v) ? v : CURRENT_VERSION;
}

/** Checks every key twill-cni reads; throws CniError naming the key and the bad value. */
export function parseNetConf(raw: JsonObject): NetConf {
  const cniVersion = raw.cniVersion;
  if (typeof cniVersion !== 'string' || cniVersion === '') {
    throw new CniError(ERR.INVALID_NETWORK_CONFIG, `cniVersion must be a version string such as "1.0.0", not ${describe(cniVersion)}`);
  }
  if (!SUPPORTED_VERSIONS.includes(cniVersion)) {
    throw new CniError(ERR.INCOMPATIBLE_VERSION, `cniVersion ${JSON.stringify(cniVersion)} is not supported; twill-cni supports ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  const name = raw.name;
  if (typeof name !== 'string' || name === '') {
    throw new CniError(ERR.INVALID_NETWORK_CONFIG, `name must be the network's name (a non-empty string), not ${describe(name)}`);
  }
  const readinessURL = optionalString(raw, 'readinessURL');
  if (readinessURL !== undefined && !/^http:\/\/[^/]+/.test(readinessURL)) {
    throw new CniError(ERR.INVALID_NETWORK_CONFIG, `readinessURL must be an http:// URL such as "http://127.0.0.1:9943/readyz", not ${JSON.stringify(readinessURL)}`);
  }
  return {
    cniVersion,
    name,
    subnetFile: optionalString(raw, 'subnetFile') || DEFAULT_SUBNET_FILE,
    dataDir: optionalString(raw, 'dataDir') || DEFAULT_DATA_DIR,
    readinessURL,
    delegate: optionalObject(raw, 'delegate'),
    ipam: optionalObject(raw, 'ipam'),
    runtimeConfig: optionalObject(raw, 'runtimeConfig'),
    prevResult: optionalObject(raw, 'prevResult'),
  };
}

/** True when `version` is at least `min` (both x.y.z). */
export function versionAtLeast(version: string, min: string): boolean {
  const a = version.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}

function optionalString(raw: JsonObject, key: string): string | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new CniError(ERR.INVALID_NETWORK_CONFIG, `${key} must be a string, not ${describe(v)}`);
  return v;
}

function optionalObject(raw: JsonObject, key: string): JsonObject | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw new CniError(ERR.INVALID_NETWORK_CONFIG, `${key} must be a JSON object, not ${describe(v)}`);
  return v;
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value as it appeared in the JSON, shortened for a one-line message. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
