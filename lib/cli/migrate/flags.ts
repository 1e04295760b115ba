/**
 * The command line of `twill migrate`: `--set key=value` and `--timeout`.
 */
import { InvalidArgumentError } from 'commander';

/** One `--set key=value`; `value` undefined means remove the key (`key=null`). */
export interface Assignment {
  readonly key: string;
  readonly value: unknown;
}

/** `key=value`: the value parsed as JSON when it parses, else kept as the string. */
export function parseAssignment(text: string): Assignment {
  const eq = text.indexOf('=');
  if (eq < 0) throw new InvalidArgumentError(`${JSON.stringify(text)} is not key=value (for example VNI=2)`);
  const key = text.slice(0, eq).trim();
  if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(key)) throw new InvalidArgumentError(`${JSON.stringify(key)} is not a setting name (for example VNI=2)`);
  if (key.toLowerCase() === 'type') throw new InvalidArgumentError('the backend type is chosen with --to, not --set Type=');
  const raw = text.slice(eq + 1);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  return { key, value: value === null ? undefined : value };
}

export function collectAssignment(text: string, previous: Assignment[] | undefined): Assignment[] {
  return [...(previous ?? []), parseAssignment(text)];
}

export function parseTimeout(text: string): number {
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text.trim()) || !(n > 0)) throw new InvalidArgumentError('must be a number of seconds greater than 0');
  return n;
}
