/** The connectivity matrix: every pod pings every other pod; ok / loss / RTT. */
import { inNs } from './run';

export interface Cell {
  readonly from: number;
  readonly to: number;
  readonly received: number;
  readonly sent: number;
  readonly rttMs?: number;
}

export interface Pod {
  readonly node: number;
  readonly ns: string;
  readonly ip: string;
}

async function probe(from: Pod, to: Pod, count: number): Promise<Cell> {
  const out = await inNs(from.ns, ['ping', '-n', '-q', '-c', String(count), '-i', '0.2', '-W', '1', to.ip], 15_000).catch((err: Error) => err.message);
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(out);
  return { from: from.node, to: to.node, sent: m ? Number(m[1]) : count, received: m ? Number(m[2]) : 0, rttMs: rtt ? Number(rtt[1]) : undefined };
}

export async function measureMatrix(pods: readonly Pod[], count = 3): Promise<Cell[]> {
  const cells: Cell[] = [];
  for (const a of pods) {
    const row = await Promise.all(pods.filter((b) => b !== a).map((b) => probe(a, b, count)));
    cells.push(...row);
  }
  return cells;
}

export function allOk(cells: readonly Cell[]): boolean {
  return cells.every((c) => c.received === c.sent && c.sent > 0);
}

export function formatMatrix(pods: readonly Pod[], cells: readonly Cell[]): string {
  const label = (c: Cell | undefined): string => {
    if (!c) return '-';
    if (c.received === 0) return 'FAIL';
    if (c.received < c.sent) return `loss ${Math.round(100 - (100 * c.received) / c.sent)}%`;
    return `ok ${c.rttMs?.toFixed(2) ?? '?'}ms`;
  };
  const head = ['from \\ to', ...pods.map((p) => `pod${p.node} ${p.ip}`)];
  const rows = pods.map((a) => [`pod${a.node} ${a.ip}`, ...pods.map((b) => label(cells.find((c) => c.from === a.node && c.to === b.node)))]);
  const widths = head.map((_, i) => Math.max(...[head, ...rows].map((r) => r[i].length)));
  const line = (r: string[]) => r.map((v, i) => v.padEnd(widths[i])).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}
