/**
 * Logging: readable text by default, one JSON object per line with
 * `--log-format json`. Modules depend on the narrow `Log` type, so tests can
 * capture what they say.
 *
 * The lines are what winston printed before (text: `<ISO time> LEVEL
 * message key=value…`; JSON: the meta fields, `level`, `message`,
 * `timestamp`), written by these few lines instead: winston and its
 * dependencies cost the agent ~10 MB of resident memory and ~0.1 s of CPU at
 * start for a formatter and a write.
 */

export type LogFormat = 'text' | 'json';
export type LogMeta = Record<string, unknown>;

export interface Log {
  error(message: string, meta?: LogMeta): void;
  warn(message: string, meta?: LogMeta): void;
  info(message: string, meta?: LogMeta): void;
  debug(message: string, meta?: LogMeta): void;
}

const LEVELS = { error: 0, warn: 1, info: 2, debug: 5 } as const;
type Level = keyof typeof LEVELS;

export function createLogger(opts: { format: LogFormat; level?: string; stream?: NodeJS.WritableStream }): Log {
  const threshold = LEVELS[(opts.level ?? 'info') as Level] ?? LEVELS.info;
  const out = opts.stream ?? process.stdout;
  const line = opts.format === 'json' ? jsonLine : textLine;
  const at = (level: Level) => (message: string, meta?: LogMeta): void => {
    if (LEVELS[level] > threshold) return;
    out.write(line(level, String(message), meta ?? {}, new Date().toISOString()) + '\n');
  };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

function textLine(level: Level, message: string, meta: LogMeta, timestamp: string): string {
  const entries = Object.entries(meta);
  const extra = entries.length ? ' ' + entries.map(([k, v]) => `${k}=${fmt(v)}`).join(' ') : '';
  return `${timestamp} ${level.toUpperCase().padEnd(5)} ${message}${extra}`;
}

function jsonLine(level: Level, message: string, meta: LogMeta, timestamp: string): string {
  return stringify({ ...meta, level, message, timestamp });
}

function fmt(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  return stringify(v);
}

/** JSON.stringify that never throws (circular structures, BigInt), as winston's safe-stable-stringify did not. */
function stringify(v: unknown): string {
  const seen = new WeakSet<object>();
  try {
    return JSON.stringify(v, (_k, x: unknown) => {
      if (typeof x === 'bigint') return x.toString();
      if (x instanceof Error) return { name: x.name, message: x.message };
      if (typeof x === 'object' && x !== null) {
        if (seen.has(x)) return '[Circular]';
        seen.add(x);
      }
      return x;
    }) ?? 'undefined';
  } catch (err) {
    return JSON.stringify(`[unprintable: ${(err as Error).message}]`);
  }
}
