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
    format: winston.format.combine(utcTimestamp(), opts.format === 'json' ? winston.format.json() : text),
    transports: [opts.stream ? new winston.transports.Stream({ stream: opts.stream }) : new winston.transports.Console({ stderrLevels: [] })],
  });
}

/**
 * winston's timestamp() as it writes it (Date's toISOString), made from
 * Date.now() by arithmetic: the first toISOString in a process pages in
 * ~0.6 MB of ICU's time zone data for good, and a log line is the only
 * date an idle agent formats.
 */
const utcTimestamp = winston.format((info) => {
  info.timestamp = isoUtc(Date.now());
  return info;
});

const MS_PER_DAY = 86_400_000;

/** `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the epoch (years 0–9999). */
export function isoUtc(ms: number): string {
  const days = Math.floor(ms / MS_PER_DAY);
  let rest = ms - days * MS_PER_DAY;
  // Civil date from days since 1970-01-01 in the proleptic Gregorian calendar, in 400-year eras from 0000-03-01.
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const monthFromMarch = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * monthFromMarch + 2) / 5) + 1;
  const month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1000);
  const millis = rest - seconds * 1000;
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hours, 2)}:${pad(minutes, 2)}:${pad(seconds, 2)}.${pad(millis, 3)}Z`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function fmt(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  return JSON.stringify(v);
}
