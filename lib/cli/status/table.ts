/**
 * `twill status` as text: the network config, then one row per lease in
 * aligned columns. Colour (plain ANSI) only when the caller says so: on a
 * terminal and without NO_COLOR (see `useColour`). Columns that would be
 * empty for every row (IPv6, health when not probed, VIA without two valid
 * leases) are left out. VIA is what each node uses to its peers, as its
 * agent chooses (topology.ts: host-gw only where both public IPs share a
 * /24, as etcd holds no prefix lengths). In Kubernetes mode a row is a
 * Node: EXPIRES (an etcd lease's TTL) gives way to NODE, its name.
 */
import { configLines, leaseCells, leaseSummary, printable, NONE, type LeaseCells } from './cells';
import type { ClusterStatus, LeaseRow } from './model';

export interface TableOptions {
  readonly colour: boolean;
}

/** https://no-color.org: any non-empty NO_COLOR turns colour off. */
export function useColour(stream: NodeJS.WriteStream): boolean {
  return Boolean(stream.isTTY) && !process.env.NO_COLOR;
}

type Paint = 'bold' | 'red' | 'yellow' | 'green' | 'cyan' | 'dim';
const CODES: Record<Paint, string> = { bold: '1', red: '31', yellow: '33', green: '32', cyan: '36', dim: '2' };

interface Column {
  readonly title: string;
  readonly cell: (c: LeaseCells) => string;
  readonly paint?: (row: LeaseRow, text: string) => Paint | undefined;
  /** Left out when every row has nothing in it. */
  readonly optional?: boolean;
  /** Shown only for this store. */
  readonly store?: 'etcd' | 'kube';
}

const COLUMNS: readonly Column[] = [
  { title: 'NODE', cell: (c) => c.node, store: 'kube' },
  { title: 'SUBNET', cell: (c) => c.subnet, paint: (r) => (r.invalid !== undefined ? 'red' : undefined) },
  { title: 'IPV6 SUBNET', cell: (c) => c.ipv6Subnet, optional: true },
  { title: 'PUBLIC IP', cell: (c) => c.publicIP },
  { title: 'PUBLIC IPV6', cell: (c) => c.publicIPv6, optional: true },
  { title: 'BACKENDS', cell: (c) => c.backends },
  { title: 'VIA', cell: (c) => c.via, optional: true, paint: (_r, text) => (text.includes('none×') ? 'red' : undefined) },
  { title: 'VTEP MAC', cell: (c) => c.vtepMAC },
  { title: 'EXPIRES', cell: (c) => c.expires, paint: expiryPaint, store: 'etcd' },
  { title: 'HEALTH', cell: (c) => c.health, optional: true, paint: (r) => (r.health?.state === 'ready' ? 'green' : r.health?.state === 'not ready' ? 'red' : 'yellow') },
  { title: 'PROBLEM', cell: (c) => c.problem, paint: () => 'red' },
];

function expiryPaint(row: LeaseRow): Paint | undefined {
  const e = row.expiry;
  if (e.kind === 'reservation') return 'cyan';
  if (e.kind === 'expired') return 'red';
  if (e.kind === 'ttl' && e.seconds < 3600) return 'yellow';
  return undefined;
}

export function renderTable(status: ClusterStatus, opts: TableOptions): string {
  const paint = (p: Paint | undefined, text: string): string => (opts.colour && p && text ? `\x1b[${CODES[p]}m${text}\x1b[0m` : text);
  const out: string[] = [];

  out.push(paint('bold', `Network config (${printable(status.config.key)})`));
  const lines = configLines(status.config, status.store.kind);
  const labelWidth = Math.max(...lines.map((l) => l.label.length));
  for (const l of lines) out.push(`  ${l.label.padEnd(labelWidth)}  ${paint(l.problem ? 'yellow' : undefined, l.value)}`);
  out.push('');

  out.push(paint('bold', `Leases: ${leaseSummary(status)}`));
  if (status.rows.length === 0) {
    out.push('  (none)');
    return out.join('\n') + '\n';
  }
  const cells = status.rows.map((row) => leaseCells(row, status));
  const columns = COLUMNS.filter((col) => (col.store ?? status.store.kind) === status.store.kind && (!col.optional || cells.some((c) => col.cell(c) !== NONE)));
  const widths = columns.map((col) => Math.max(col.title.length, ...cells.map((c) => col.cell(c).length)));
  const last = columns.length - 1;
  const line = (texts: string[], paints: (Paint | undefined)[]): string =>
    texts.map((t, i) => paint(paints[i], t) + (i === last ? '' : ' '.repeat(widths[i] - t.length))).join('  ').trimEnd();
  out.push(line(columns.map((c) => c.title), columns.map(() => 'bold')));
  status.rows.forEach((row, i) => {
    const texts = columns.map((col) => col.cell(cells[i]));
    out.push(line(texts, columns.map((col, j) => (col.paint ? col.paint(row, texts[j]) : undefined))));
  });
  return out.join('\n') + '\n';
}
