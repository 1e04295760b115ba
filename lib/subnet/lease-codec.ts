/**
 * Lease keys and values, byte-compatible with flanneld (etcd mode).
 *
 * Key:   `10.244.1.0-24` or, dual stack, `10.244.1.0-24&fc00:0:0:1::-64`,
 *        or, IPv6 only, `0.0.0.0-0&fc00:0:0:1::-64` (flanneld's MakeSubnetKey
 *        with an empty IPv4 subnet).
 * Value: JSON with the fields in flanneld's order — PublicIP, PublicIPv6
 *        (always present, null when none), BackendType, BackendData,
 *        BackendV6Data (each omitted when empty) — then twill's own fields.
 * Decoding matches field names case-insensitively, as Go's encoding/json
 * does, and ignores fields it does not know.
 */
import { Address6 } from 'ip-address';
import { IP, IPNet, InvalidAddressError } from '../ip';
import type { LeaseAttrs, BackendAdvert } from './lease';

/** A lease key or value that cannot be understood. */
export class LeaseFormatError extends Error {
  constructor(readonly what: string, message: string) {
    super(message);
    this.name = 'LeaseFormatError';
  }
}

/** etcd values larger than this are refused unread: no node writes one. */
export const MAX_LEASE_VALUE_BYTES = 64 * 1024;

export interface SubnetKey {
  readonly subnet: IPNet;
  readonly ipv6Subnet?: IPNet;
}

const KEY_PATTERN = /^(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,2})(?:&([0-9a-fA-F:]+)-(\d{1,3}))?$/;

export function formatSubnetKey(key: SubnetKey): string {
  const v4 = `${key.subnet.ip.toString()}-${key.subnet.prefixLen}`;
  if (!key.ipv6Subnet) return v4;
  // Hex groups only, as the key grammar (flanneld's) has no room for the
  // dotted tail that an IPv4-mapped address is otherwise printed with.
  const v6 = Address6.fromBigInt(key.ipv6Subnet.ip.value).correctForm();
  return `${v4}&${v6}-${key.ipv6Subnet.prefixLen}`;
}

export function parseSubnetKey(key: string): SubnetKey {
  const m = KEY_PATTERN.exec(key);
  if (!m) {
    throw new LeaseFormatError('key', `lease key ${quote(key)} is not of the form a.b.c.d-len[&ipv6-len]`);
  }
  try {
    const subnet = IPNet.parse(`${m[1]}/${m[2]}`, { want: 4 });
    const ipv6Subnet = m[3] === undefined ? undefined : IPNet.parse(`${m[3]}/${m[4]}`, { want: 6 });
    if (subnet.prefixLen === 0 && !ipv6Subnet) {
      throw new LeaseFormatError('key', `lease key ${quote(key)} holds no subnet: an IPv6-only lease key is 0.0.0.0-0&<IPv6 subnet>-<length>`);
    }
    return { subnet, ipv6Subnet };
  } catch (err) {
    if (err instanceof InvalidAddressError) {
      throw new LeaseFormatError('key', `lease key ${quote(key)}: ${quote(err.text)} is not ${err.reason}`);
    }
    throw err;
  }
}

export function encodeLeaseAttrs(attrs: LeaseAttrs): string {
  // Insertion order is serialisation order: this is flanneld's field order.
  const out: Record<string, unknown> = { PublicIP: attrs.publicIP, PublicIPv6: attrs.publicIPv6 };
  if (attrs.backendType) out.BackendType = attrs.backendType;
  if (!isEmptyJson(attrs.backendData)) out.BackendData = attrs.backendData;
  if (!isEmptyJson(attrs.backendV6Data)) out.BackendV6Data = attrs.backendV6Data;
  if (attrs.backends && attrs.backends.length > 0) {
    out.TwillBackends = attrs.backends.map((b) => {
      const entry: Record<string, unknown> = { Type: b.type };
      if (!isEmptyJson(b.settings)) entry.Settings = b.settings;
      if (!isEmptyJson(b.data)) entry.Data = b.data;
      if (!isEmptyJson(b.v6Data)) entry.DataV6 = b.v6Data;
      return entry;
    });
  }
  return JSON.stringify(out);
}

// Go's `omitempty` on json.RawMessage drops nil and empty values; flanneld
// never writes `null` or `{}` for BackendData, so neither do we.
function isEmptyJson(v: unknown): boolean {
  return v === undefined || v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);
}

export function decodeLeaseAttrs(text: string): LeaseAttrs {
  if (Buffer.byteLength(text) > MAX_LEASE_VALUE_BYTES) {
    throw new LeaseFormatError('value', `lease value is ${Buffer.byteLength(text)} bytes, more than the ${MAX_LEASE_VALUE_BYTES} allowed`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new LeaseFormatError('value', `lease value is not JSON: ${oneLine((err as Error).message)}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new LeaseFormatError('value', 'lease value is not a JSON object');
  }
  const fields = foldKeys(parsed as Record<string, unknown>);

  const publicIP = fields.get('publicip');
  if (typeof publicIP !== 'string') {
    throw new LeaseFormatError('PublicIP', `lease PublicIP must be a string, got ${describe(publicIP)}`);
  }
  checkIP('PublicIP', publicIP, 4);

  const v6 = fields.get('publicipv6');
  if (v6 !== undefined && v6 !== null && typeof v6 !== 'string') {
    throw new LeaseFormatError('PublicIPv6', `lease PublicIPv6 must be a string or null, got ${describe(v6)}`);
  }
  if (typeof v6 === 'string') checkIP('PublicIPv6', v6, 6);

  const backendType = fields.get('backendtype');
  if (backendType !== undefined && typeof backendType !== 'string') {
    throw new LeaseFormatError('BackendType', `lease BackendType must be a string, got ${describe(backendType)}`);
  }
  if (typeof backendType === 'string' && !/^[a-z0-9-]{0,32}$/.test(backendType)) {
    throw new LeaseFormatError('BackendType', `lease BackendType ${JSON.stringify(backendType.slice(0, 40))} is not a backend name`);
  }

  return {
    publicIP,
    publicIPv6: typeof v6 === 'string' ? v6 : null,
    backendType: backendType || undefined,
    backendData: fields.get('backenddata') ?? undefined,
    backendV6Data: fields.get('backendv6data') ?? undefined,
    backends: decodeBackends(fields.get('twillbackends')),
  };
}

function decodeBackends(v: unknown): BackendAdvert[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw new LeaseFormatError('TwillBackends', `lease TwillBackends must be a list, got ${describe(v)}`);
  return v.map((item: unknown) => {
    const entry = item !== null && typeof item === 'object' ? foldKeys(item as Record<string, unknown>) : undefined;
    const type = entry?.get('type');
    if (typeof type !== 'string' || !/^[a-z0-9-]{1,32}$/.test(type)) {
      throw new LeaseFormatError('TwillBackends', `lease TwillBackends entry ${quote(JSON.stringify(item) ?? String(item), false)} has no valid Type`);
    }
    const settings = decodeAdvertSettings(entry?.get('settings'), type);
    const data = entry?.get('data');
    const v6Data = entry?.get('datav6');
    return {
      type,
      ...(settings ? { settings } : {}),
      ...(data === undefined || data === null ? {} : { data }),
      ...(v6Data === undefined || v6Data === null ? {} : { v6Data }),
    };
  });
}

/** TwillBackends[].Settings: an object of plain values (a backend's identity, e.g. {"Port":4789}). */
function decodeAdvertSettings(v: unknown, type: string): Record<string, string | number | boolean> | undefined {
  if (v === undefined || v === null) return undefined;
  const bad = () => new LeaseFormatError('TwillBackends', `lease TwillBackends entry for ${type}: Settings must be an object of strings, numbers and booleans, got ${describe(v)}`);
  if (typeof v !== 'object' || Array.isArray(v)) throw bad();
  const out: Record<string, string | number | boolean> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (!/^[A-Za-z][A-Za-z0-9]{0,31}$/.test(k)) throw bad();
    if (typeof val === 'string' ? val.length > 64 : typeof val !== 'number' && typeof val !== 'boolean') throw bad();
    out[k] = val as string | number | boolean;
  }
  return Object.keys(out).length ? out : undefined;
}

// Go's decoder matches keys case-insensitively; the last duplicate wins.
function foldKeys(obj: Record<string, unknown>): Map<string, unknown> {
  const m = new Map<string, unknown>();
  for (const [k, v] of Object.entries(obj)) m.set(k.toLowerCase(), v);
  return m;
}

function checkIP(field: string, text: string, family: 4 | 6): void {
  try {
    IP.parse(text, family);
  } catch {
    throw new LeaseFormatError(field, `lease ${field} ${JSON.stringify(text.slice(0, 64))} is not an IPv${family} address`);
  }
}

/**
 * Text from another node, quoted (unless `json` is false: it is JSON
 * already) and cut short, so that a hostile or broken value cannot turn
 * one warning into a megabyte of log.
 */
function quote(text: string, json = true): string {
  const MAX = 80;
  const short = text.length > MAX ? text.slice(0, MAX) : text;
  return `${json ? JSON.stringify(short) : short}${text.length > MAX ? `... (${text.length} characters)` : ''}`;
}

/**
 * A parser's message, which may quote the bad text raw: control and
 * line-separator characters escaped, so that a value written by another
 * node can never start a line of its own in the log, and cut short.
 */
function oneLine(message: string): string {
  const escaped = message.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return escaped.length > 160 ? `${escaped.slice(0, 157)}...` : escaped;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return `${typeof v} ${JSON.stringify(v).slice(0, 40)}`;
}
