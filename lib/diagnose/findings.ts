/**
 * What `twill diagnose` reports: a list of findings, each OK, WARN or FAIL,
 * and for every finding that is not OK the thing to do about it.
 *
 * Text form, one finding per line, advice indented below it:
 *   OK kernel: vxlan links can be created
 *   WARN kernel: no ipip support (the "ipip" link type is unknown)
 *     → load it with `modprobe ipip`, or use the vxlan backend
 * JSON form: `{ "findings": [...], "summary": { "ok": n, "warn": n, "fail": n } }`.
 * The exit code is 1 when any finding is FAIL, else 0.
 */

export type Level = 'OK' | 'WARN' | 'FAIL';

export interface Finding {
  readonly level: Level;
  /** Which part of the node it is about: kernel, interface, mtu, sysctl, offload, lease, peer, probe. */
  readonly topic: string;
  /** What was found, one line. */
  readonly what: string;
  /** What to do; present on every WARN and FAIL. */
  readonly advice?: string;
}

/** Collects findings in the order the checks run. */
export class Findings {
  private readonly list: Finding[] = [];

  ok(topic: string, what: string): void {
    this.list.push({ level: 'OK', topic, what });
  }

  warn(topic: string, what: string, advice: string): void {
    this.list.push({ level: 'WARN', topic, what, advice });
  }

  fail(topic: string, what: string, advice: string): void {
    this.list.push({ level: 'FAIL', topic, what, advice });
  }

  add(f: Finding): void {
    this.list.push(f);
  }

  get all(): readonly Finding[] {
    return this.list;
  }

  get failed(): boolean {
    return this.list.some((f) => f.level === 'FAIL');
  }
}

export function formatText(findings: readonly Finding[]): string {
  const lines: string[] = [];
  for (const f of findings) {
    lines.push(`${f.level} ${f.topic}: ${f.what}`);
    if (f.level !== 'OK') lines.push(`  → ${f.advice ?? 'see the finding above'}`);
  }
  const count = (l: Level) => findings.filter((f) => f.level === l).length;
  lines.push(`${count('OK')} OK, ${count('WARN')} WARN, ${count('FAIL')} FAIL`);
  return lines.join('\n') + '\n';
}

export function formatJson(findings: readonly Finding[], extra: Record<string, unknown> = {}): string {
  const count = (l: Level) => findings.filter((f) => f.level === l).length;
  return JSON.stringify({ findings, summary: { ok: count('OK'), warn: count('WARN'), fail: count('FAIL') }, ...extra }, null, 2) + '\n';
}

/** The advice for kernel state twilld should have put in place. */
export const TWILLD_REPAIRS =
  'is twilld running? check `journalctl -u twilld` (or its log); it repairs this within --repair-interval (default 5 s)';
