/**
 * The `Backend` object of a network config as stored (untrusted JSON): its
 * type, its settings compared as the agents compare them, and as text for
 * one line of output.
 */
import { setting } from '../../config';
import { printable } from '../status/cells';

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function typeOf(backend: unknown): string | undefined {
  if (!isObject(backend)) return undefined;
  const t = setting(backend, 'Type');
  return typeof t === 'string' ? t.toLowerCase() : undefined;
}

/** A Backend's settings by lower-case key, without Type and without nulls (null is absent). */
export function normalised(backend: unknown): Map<string, unknown> {
  const m = new Map<string, unknown>();
  if (!isObject(backend)) return m;
  for (const [k, v] of Object.entries(backend)) {
    if (k.toLowerCase() === 'type') continue;
    if (v === null || v === undefined) m.delete(k.toLowerCase());
    else m.set(k.toLowerCase(), v);
  }
  return m;
}

/** A Backend object for one line of output (it may come from etcd: made printable). */
export function backendText(backend: unknown): string {
  return backend === undefined || backend === null ? '(none: udp)' : printable(JSON.stringify(backend) ?? String(backend), 400);
}

/** The Backend object of a config text, for a message (undefined when the text has none or is not JSON). */
export function backendOf(text: string): unknown {
  const obj = attempt(() => JSON.parse(text) as unknown);
  if (!isObject(obj)) return undefined;
  return setting(obj, 'Backend');
}

export function attempt<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}
