/**
 * Applying many route/neighbour/FDB changes at once.
 *
 * Operations are issued a window at a time: the writer socket keeps up to
 * its window of them in the kernel's hands, and each answer lets the next
 * one go, so thousands of entries cost one wait instead of one round trip
 * each. Each operation succeeds or fails on its own: a failed entry is
 * reported with its index and error and does not stop the others. Order
 * between operations is not guaranteed beyond the socket's FIFO: do not put
 * two operations on the same object in one batch.
 */
import { RtContext } from './context';
import { isNotFound } from './errors';
import { appendFdb, deleteFdb, FdbSelector, FdbSpec, replaceFdb } from './fdb';
import { deleteNeighbor, NeighborSelector, NeighborSpec, replaceNeighbor } from './neighbors';
import { deleteRoute, replaceRoute, RouteSelector, RouteSpec } from './routes';

export type Operation =
  | { op: 'replaceRoute'; route: RouteSpec }
  | { op: 'deleteRoute'; route: RouteSelector }
  | { op: 'replaceNeighbor'; neighbor: NeighborSpec }
  | { op: 'deleteNeighbor'; neighbor: NeighborSelector }
  | { op: 'replaceFdb'; fdb: FdbSpec }
  | { op: 'appendFdb'; fdb: FdbSpec }
  | { op: 'deleteFdb'; fdb: FdbSelector };

export interface OperationFailure {
  /** Position in the list passed to `applyAll`. */
  index: number;
  operation: Operation;
  /** A `NetlinkError` (kernel refusal) or `InvalidArgumentError` (bad input, nothing sent). */
  error: Error;
}

export interface BatchResult {
  /** Operations that succeeded (including deletes of missing objects under `ignoreMissing`). */
  applied: number;
  /** In index order. */
  failed: OperationFailure[];
}

export interface BatchOptions {
  /** Count a delete whose object is already gone (ESRCH, ENOENT, ENODEV) as applied. */
  ignoreMissing?: boolean;
}

function run(ctx: RtContext, o: Operation): Promise<void> {
  switch (o.op) {
    case 'replaceRoute': return replaceRoute(ctx, o.route);
    case 'deleteRoute': return deleteRoute(ctx, o.route);
    case 'replaceNeighbor': return replaceNeighbor(ctx, o.neighbor);
    case 'deleteNeighbor': return deleteNeighbor(ctx, o.neighbor);
    case 'replaceFdb': return replaceFdb(ctx, o.fdb);
    case 'appendFdb': return appendFdb(ctx, o.fdb);
    case 'deleteFdb': return deleteFdb(ctx, o.fdb);
  }
}

export async function applyAll(ctx: RtContext, operations: readonly Operation[], options: BatchOptions = {}): Promise<BatchResult> {
  let applied = 0;
  const failed: OperationFailure[] = [];
  // As many workers as the writer keeps in flight, each taking the next operation when its last is answered:
  // the socket stays as full as before, while only a window's worth of requests (encoded bodies, promises)
  // exists at a time instead of one per operation (thousands at start-up with 5000 peers).
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < operations.length) {
      const index = next++;
      const operation = operations[index];
      try {
        await run(ctx, operation);
        applied++;
      } catch (err) {
        if (options.ignoreMissing && operation.op.startsWith('delete') && isNotFound(err)) applied++;
        else failed.push({ index, operation, error: err instanceof Error ? err : new Error(String(err)) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(ctx.writer.window, operations.length) }, worker));
  failed.sort((a, b) => a.index - b.index);
  return { applied, failed };
}
