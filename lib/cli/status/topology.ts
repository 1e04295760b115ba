/**
 * Who reaches whom over what: an edge between every two leases a node would
 * accept, labelled with the backend both ends terminate. For now that is
 * their common backend — the one both leases ask for when they agree, else
 * the first backend of the first lease (in subnet order) that the other also
 * terminates (twill's `TwillBackends`, during a migration) — or `none` when
 * they share none, so that traffic between them cannot flow.
 * Invalid entries get no edges: every node ignores them.
 */
import { rowName, type LeaseRow } from './model';

export const NO_COMMON_BACKEND = 'none';

export interface TopologyEdge {
  readonly a: LeaseRow;
  readonly b: LeaseRow;
  /** The backend between them, or `none`. */
  readonly backend: string;
  /** `<subnet a>|<subnet b>`, a before b in subnet order. */
  readonly id: string;
}

/** `rows` in display (subnet) order; edges come out in that order too. */
export function edgesOf(rows: readonly LeaseRow[]): TopologyEdge[] {
  const nodes = rows.filter((r) => r.lease);
  const edges: TopologyEdge[] = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i];
      const b = nodes[j];
      edges.push({ a, b, backend: commonBackend(a, b) ?? NO_COMMON_BACKEND, id: `${rowName(a)}|${rowName(b)}` });
    }
  }
  return edges;
}

export function commonBackend(a: LeaseRow, b: LeaseRow): string | undefined {
  if (a.backendType !== undefined && a.backendType === b.backendType) return a.backendType;
  return a.terminates.find((t) => b.terminates.includes(t));
}
