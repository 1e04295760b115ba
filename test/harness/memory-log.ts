import type { Log, LogMeta } from '../../lib/observe/logger';

/** A Log that remembers what it was told, so tests can assert on it. */
export class MemoryLog implements Log {
  readonly lines: { level: string; message: string; meta?: LogMeta }[] = [];
  error(message: string, meta?: LogMeta): void { this.lines.push({ level: 'error', message, meta }); }
  warn(message: string, meta?: LogMeta): void { this.lines.push({ level: 'warn', message, meta }); }
  info(message: string, meta?: LogMeta): void { this.lines.push({ level: 'info', message, meta }); }
  debug(message: string, meta?: LogMeta): void { this.lines.push({ level: 'debug', message, meta }); }
  messages(level?: string): string[] {
    return this.lines.filter((l) => !level || l.level === level).map((l) => l.message);
  }
}
