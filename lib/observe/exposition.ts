/**
 * The little of Prometheus that twilld needs: counters, gauges and
 * histograms with labels, rendered in the text exposition format 0.0.4, and
 * the process metrics computed when scraped.
 *
 * Why not prom-client: loading it (it pulls in @opentelemetry/api for
 * exemplars) costs ~11 MB of resident memory and ~0.1 s of CPU, and its
 * default metrics keep an event-loop-delay monitor sampling every 10 ms for
 * the life of the process. Here nothing runs between scrapes.
 */
import { readdirSync, readFileSync } from 'fs';
import { getHeapSpaceStatistics } from 'v8';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = readonly string[];

interface Metric {
  render(out: string[]): void;
}

function escapeHelp(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabel(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function num(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (Number.isNaN(v)) return 'NaN';
  return String(v);
}

function labelText(names: Labels, values: readonly string[], extra?: [string, string]): string {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i] ?? '')}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function header(out: string[], name: string, help: string, type: string): void {
  out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
}

/** A counter or gauge: one value per label set; an unlabelled one exists at 0 from the start. */
abstract class Scalar<L extends string> implements Metric {
  private readonly values = new Map<string, { labels: string[]; value: number }>();
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly L[], private readonly type: 'counter' | 'gauge') {
    if (labelNames.length === 0) this.values.set('', { labels: [], value: 0 });
  }
  protected series(values: readonly string[]): { labels: string[]; value: number } {
    const key = values.join('\u0000');
    let s = this.values.get(key);
    if (!s) {
      s = { labels: [...values], value: 0 };
      this.values.set(key, s);
    }
    return s;
  }
  reset(): void {
    this.values.clear();
    if (this.labelNames.length === 0) this.values.set('', { labels: [], value: 0 });
  }
  render(out: string[]): void {
    header(out, this.name, this.help, this.type);
    for (const s of this.values.values()) out.push(`${this.name}${labelText(this.labelNames, s.labels)} ${num(s.value)}`);
  }
}

export class Counter<L extends string = never> extends Scalar<L> {
  constructor(name: string, help: string, labelNames: readonly L[] = []) {
    super(name, help, labelNames, 'counter');
  }
  labels(...values: string[]): { inc(n?: number): void } {
    const s = this.series(values);
    return { inc: (n = 1) => { if (Number.isFinite(n) && n >= 0) s.value += n; } };
  }
  inc(n = 1): void {
    this.labels().inc(n);
  }
}

export class Gauge<L extends string = never> extends Scalar<L> {
  constructor(name: string, help: string, labelNames: readonly L[] = []) {
    super(name, help, labelNames, 'gauge');
  }
  labels(...values: string[]): { set(v: number): void } {
    const s = this.series(values);
    return { set: (v: number) => { s.value = v; } };
  }
  set(v: number): void {
    this.labels().set(v);
  }
}

/**
 * A gauge whose series are replaced all at once: a series missing from the
 * last `replace` is gone from the output (a peer that left), where a Gauge
 * would keep its last value forever.
 */
export class GaugeSet<L extends string> implements Metric {
  private rows: readonly { readonly labels: Readonly<Record<L, string>>; readonly value: number }[] = [];
  constructor(readonly name: string, readonly help: string, private readonly labelNames: readonly L[]) {}
  replace(rows: readonly { readonly labels: Readonly<Record<L, string>>; readonly value: number }[]): void {
    this.rows = rows.filter((r) => Number.isFinite(r.value));
  }
  render(out: string[]): void {
    header(out, this.name, this.help, 'gauge');
    for (const r of this.rows) out.push(`${this.name}${labelText(this.labelNames, this.labelNames.map((n) => r.labels[n]))} ${num(r.value)}`);
  }
}

/** An unlabelled histogram with fixed buckets. */
export class Histogram implements Metric {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, private readonly buckets: readonly number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) this.counts[i]++;
    this.sum += v;
    this.count++;
  }
  render(out: string[]): void {
    header(out, this.name, this.help, 'histogram');
    this.buckets.forEach((b, i) => out.push(`${this.name}_bucket${labelText([], [], ['le', num(b)])} ${this.counts[i]}`));
    out.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${num(this.sum)}`, `${this.name}_count ${this.count}`);
  }
}

/** Metrics to render, in registration order. */
export class Registry {
  private readonly metrics: Metric[] = [];
  private readonly collectors: ((out: string[]) => void | Promise<void>)[] = [];
  register<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  /** A function that renders metrics computed at scrape time. */
  collect(fn: (out: string[]) => void | Promise<void>): void {
    this.collectors.push(fn);
  }
  async render(): Promise<string> {
    const out: string[] = [];
    for (const c of this.collectors) await c(out);
    for (const m of this.metrics) m.render(out);
    return out.join('\n') + '\n';
  }
}

function procStatusBytes(field: string, status: string): number | undefined {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}

const START_TIME_SECONDS = Math.round(Date.now() / 1000 - process.uptime());

/**
 * The Node.js process metrics prom-client's default set exported, under the
 * same names (with `prefix`), computed when scraped: CPU, start time, memory,
 * file descriptors, heap and heap spaces, event loop lag, version. Not
 * exported any more: the event-loop-delay percentiles, GC durations and
 * active handle/request counts by type.
 */
export function processMetrics(prefix: string): (out: string[]) => Promise<void> {
  const one = (out: string[], name: string, help: string, type: 'gauge' | 'counter', value: number | undefined, labels = ''): void => {
    if (value === undefined || !Number.isFinite(value)) return;
    header(out, prefix + name, help, type);
    out.push(`${prefix}${name}${labels} ${num(value)}`);
  };
  return async (out) => {
    const lagStart = process.hrtime.bigint();
    await new Promise<void>((resolve) => setImmediate(resolve));
    const lag = Number(process.hrtime.bigint() - lagStart) / 1e9;
    const cpu = process.cpuUsage();
    one(out, 'process_cpu_user_seconds_total', 'Total user CPU time spent in seconds.', 'counter', cpu.user / 1e6);
    one(out, 'process_cpu_system_seconds_total', 'Total system CPU time spent in seconds.', 'counter', cpu.system / 1e6);
    one(out, 'process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', 'counter', (cpu.user + cpu.system) / 1e6);
    one(out, 'process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', 'gauge', START_TIME_SECONDS);
    let status = '';
    try {
      status = readFileSync('/proc/self/status', 'utf8');
    } catch {
      // not Linux
    }
    one(out, 'process_resident_memory_bytes', 'Resident memory size in bytes.', 'gauge', procStatusBytes('VmRSS', status) ?? process.memoryUsage.rss());
    one(out, 'process_virtual_memory_bytes', 'Virtual memory size in bytes.', 'gauge', procStatusBytes('VmSize', status));
    one(out, 'process_heap_bytes', 'Process heap size in bytes.', 'gauge', procStatusBytes('VmData', status));
    try {
      one(out, 'process_open_fds', 'Number of open file descriptors.', 'gauge', readdirSync('/proc/self/fd').length - 1);
      const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
      one(out, 'process_max_fds', 'Maximum number of open file descriptors.', 'gauge', m ? Number(m[1]) : undefined);
    } catch {
      // not Linux
    }
    one(out, 'nodejs_eventloop_lag_seconds', 'Lag of event loop in seconds.', 'gauge', lag);
    one(out, 'nodejs_active_resources_total', 'Number of active resources that are currently keeping the event loop alive.', 'gauge', process.getActiveResourcesInfo().length);
    const mem = process.memoryUsage();
    one(out, 'nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', 'gauge', mem.heapTotal);
    one(out, 'nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', 'gauge', mem.heapUsed);
    one(out, 'nodejs_external_memory_bytes', 'Node.js external memory size in bytes.', 'gauge', mem.external);
    const spaces = getHeapSpaceStatistics();
    for (const [name, field, help] of [
      ['nodejs_heap_space_size_total_bytes', 'space_size', 'Process heap space size total from Node.js in bytes.'],
      ['nodejs_heap_space_size_used_bytes', 'space_used_size', 'Process heap space size used from Node.js in bytes.'],
      ['nodejs_heap_space_size_available_bytes', 'space_available_size', 'Process heap space size available from Node.js in bytes.'],
    ] as const) {
      header(out, prefix + name, help, 'gauge');
      for (const s of spaces) out.push(`${prefix}${name}{space="${escapeLabel(s.space_name.replace(/_space$/, ''))}"} ${s[field]}`);
    }
    const [major, minor, patch] = process.versions.node.split('.');
    one(out, 'nodejs_version_info', 'Node.js version info.', 'gauge', 1, `{version="${process.version}",major="${major}",minor="${minor}",patch="${patch}"}`);
  };
}
