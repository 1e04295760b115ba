/**
 * Reading a backend's keys from the network config's `Backend` object
 * (names match case-insensitively, as in flanneld). Each reader throws a
 * ConfigError naming `Backend.<Key>`, the bad value and what is expected.
 */
import { BackendConfig, ConfigError, setting } from '../lib/config';

/** `opts.alsoAllowed` describes a value outside min..max that the caller handles itself, for the message. */
export function intSetting(
  config: BackendConfig,
  name: string,
  opts: { min: number; max: number; fallback: number; alsoAllowed?: string },
): number {
  const v = setting(config.settings, name);
  if (v === undefined || v === null) return opts.fallback;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new ConfigError(`Backend.${name}`, `Backend.${name}: ${show(v)} is not a whole number`);
  }
  if (v < opts.min || v > opts.max) {
    throw new ConfigError(`Backend.${name}`, `Backend.${name}: ${v} is out of range; it must be between ${opts.min} and ${opts.max}${opts.alsoAllowed ? `, or ${opts.alsoAllowed}` : ''}`);
  }
  return v;
}

export function boolSetting(config: BackendConfig, name: string, fallback: boolean): boolean {
  const v = setting(config.settings, name);
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') {
    throw new ConfigError(`Backend.${name}`, `Backend.${name}: ${show(v)} is not true or false`);
  }
  return v;
}

export function enumSetting<T extends string>(config: BackendConfig, name: string, allowed: readonly T[], fallback: T): T {
  const v = setting(config.settings, name);
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v.toLowerCase())) {
    throw new ConfigError(`Backend.${name}`, `Backend.${name}: ${show(v)} is not one of ${allowed.join(', ')}`);
  }
  return v.toLowerCase() as T;
}

/** A value as it appeared in the JSON, shortened for a one-line message. */
function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
