/**
 * Following a migration: re-reads the leases and the config every
 * POLL_INTERVAL_MS and prints a line whenever a node's state changes,
 * until every node has converged, the timeout, an interruption, or someone
 * else changing the config.
 */
import { isDeepStrictEqual } from 'util';
import { parseNetworkConfig } from '../../config';
import { type LeaseListing } from '../../subnet';
import { EtcdAccessError, type EtcdRegistry } from '../../subnet/etcd';
import { KNOWN_BACKEND_TYPES } from '../../../backends';
import { printable } from '../status/cells';
import { attempt, backendOf, backendText, normalised } from './backend-object';
import { DEFAULT_DEADLINE_MS, withDeadline } from '../etcd-deadline';
import { assessNodes, decodeLeases, nodeLine, type NodeState } from './nodes';
import type { MigrationPlan } from './plan';

export const POLL_INTERVAL_MS = 500;

/** Where a line of output goes. */
export type Out = (line: string) => void;

/** Waits for every node to converge, printing each change of a node's state. */
export async function follow(registry: EtcdRegistry, plan: MigrationPlan, timeoutS: number, endpoints: readonly string[], out: Out, err: Out): Promise<number> {
  const started = Date.now();
  const deadline = started + timeoutS * 1000;
  const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(1)} s`;
  const stamp = (): string => `[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s]`;
  const shown = new Map<string, string>();
  const names = new Map<string, string>();
  const skippedShown = new Set<string>();
  let lastError = '';
  let last: NodeState[] = [];
  out(`waiting up to ${timeoutS} s for every node to terminate ${plan.wanted.join(', ')} only (Ctrl-C stops watching; the agents carry on)`);

  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    for (;;) {
      let read: { listing: LeaseListing; config: { text: string; revision: bigint } | undefined } | undefined;
      try {
        read = { listing: await withDeadline(registry.listLeases(), DEFAULT_DEADLINE_MS, endpoints), config: await withDeadline(registry.getConfig(), DEFAULT_DEADLINE_MS, endpoints) };
        lastError = '';
      } catch (e) {
        if (!(e instanceof EtcdAccessError)) throw e;
        if (e.message !== lastError) err(`cannot read etcd (retrying until the timeout): ${e.message}`);
        lastError = e.message;
      }
      if (read) {
        const { listing, config } = read;
        const now = config ? attempt(() => parseNetworkConfig(config.text, KNOWN_BACKEND_TYPES).backend) : undefined;
        if (!now || now.type !== plan.newConfig.backend.type || !isDeepStrictEqual(normalised(now.settings), normalised(plan.newConfig.backend.settings))) {
          err(`the config was changed by someone else while waiting (${config ? `Backend is now ${backendText(backendOf(config.text))}` : 'the key was deleted'}); stopped watching`);
          return 1;
        }
        const nodes = decodeLeases(listing.kvs, plan.newConfig);
        for (const [key, why] of nodes.skipped) {
          const id = `${key}\n${why}`;
          if (!skippedShown.has(id)) out(`${stamp()} skipped ${printable(key, 60)}: ${printable(why, 160)} (the agents skip it too)`);
          skippedShown.add(id);
        }
        last = assessNodes(nodes.leases, plan);
        const present = new Set(last.map((n) => n.key));
        for (const [key, name] of names) {
          if (present.has(key)) continue;
          out(`${stamp()} ${name}: lease removed`);
          names.delete(key);
          shown.delete(key);
        }
        for (const node of last) {
          const line = nodeLine(node, plan.target);
          if (shown.get(node.key) !== line) out(`${stamp()} ${line}`);
          shown.set(node.key, line);
          names.set(node.key, node.name);
        }
        if (last.every((n) => n.pending.length === 0)) {
          out(`converged: ${last.length} node${last.length === 1 ? '' : 's'} on ${plan.target}${plan.wanted.length > 1 ? ` (with fallback ${plan.wanted.slice(1).join(', ')})` : ''} in ${elapsed()}`);
          return 0;
        }
      }
      if (Date.now() >= deadline) {
        const laggards = last.filter((n) => n.pending.length > 0);
        err(`timed out after ${timeoutS} s: ${lastError && laggards.length === 0 ? 'etcd could not be read' : `${laggards.length} of ${last.length} nodes not converged`}`);
        for (const n of laggards) process.stderr.write(`  ${n.name}: terminates ${n.terminates.join(', ')}; ${n.pending.join(', ')}\n`);
        process.stderr.write(`The config keeps the new Backend and the agents carry on; run the same twill migrate command again to keep watching.\n`);
        return 1;
      }
      if (await sleep(Math.min(POLL_INTERVAL_MS, Math.max(0, deadline - Date.now())), stop.signal)) {
        err(`interrupted after ${elapsed()}: the config keeps the new Backend and the agents carry on; run the same twill migrate command again to keep watching`);
        return 130;
      }
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/** Resolves true when aborted. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(false);
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
