/**
 * Logging through winston: readable text by default, one JSON object per
 * line with `--log-format json`. Modules depend on the narrow `Log` type,
 * not on winston, so tests can capture what they say.
 */
import * as winston from 'winston';

export type LogFormat = 'text' | 'json';
export type LogMeta = Record<string, unknown>;

export interface Log {
  error(message: string, meta?: LogMeta): void;
  warn(message: string, meta?: LogMeta): void;
  info(message: string, meta?: LogMeta): void;
  debug(message: string, meta?: LogMeta): void;
}

export function createLogger(opts: { format: LogFormat; level?: string; stream?: NodeJS.WritableStream }): Log {
  const text = winston.format.printf((info) => {
    const { timestamp, level, message, ...rest } = info;
    const extra = Object.keys(rest).length ? ' ' + Object.entries(rest).map(([k, v]) => `${k}=${fmt(v)}`).join(' ') : '';
    return `${String(timestamp)} ${level.toUpperCase().padEnd(5)} ${String(message)}${extra}`;
  });
  return winston.createLogger({
    level: opts.level ?? 'info',
    format: winston.format.combine(winston.format.timestamp(), opts.format === 'json' ? winston.format.json() : text),
    transports: [opts.stream ? new winston.transports.Stream({ stream: opts.stream }) : new winston.transports.Console({ stderrLevels: [] })],
  });
}

function fmt(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  return JSON.stringify(v);
}
