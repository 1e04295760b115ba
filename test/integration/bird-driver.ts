/**
 * Runs a BirdEngine inside a network namespace for bird-engine.test.ts:
 * `ip netns exec <ns> node bird-driver.js`. The engine must live there: the
 * BIRD it starts inherits its namespace, and its run directory is named
 * after that namespace.
 *
 * Protocol, one JSON object per line. In (stdin): `{ id, method, args }`
 * with method `ensure` (config), `sessions`, `pid`, `detach`, `destroy`,
 * `renew` (detach the engine and make a new BirdEngine object, as a
 * restarted twilld would) or `info` (run directory and socket). Out
 * (stdout): `{ id, result }`, `{ id, error: { name, message, line? } }`,
 * `{ reconcile: reason }` when the engine asks for one and `{ log }` for
 * what it logs. The driver detaches the engine and exits when stdin ends.
 */
import * as readline from 'readline';
import type { Log, LogMeta } from '../../lib/observe/logger';
import { BirdEngine } from '../../backends/bgp/bird-engine';
import { BirdConfigFileError } from '../../backends/bgp/bird-control';

export interface BirdDriverError {
  name: string;
  message: string;
  line?: number;
}

export type BirdDriverReply =
  | { id: number; result: unknown }
  | { id: number; error: BirdDriverError }
  | { reconcile: string }
  | { log: { level: string; message: string; meta?: LogMeta } };

function send(reply: BirdDriverReply): void {
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}

const logAt = (level: string) => (message: string, meta?: LogMeta): void => send({ log: { level, message, ...(meta ? { meta } : {}) } });
const log: Log = { error: logAt('error'), warn: logAt('warn'), info: logAt('info'), debug: logAt('debug') };

function newEngine(): BirdEngine {
  return new BirdEngine({ log, requestReconcile: (reason) => send({ reconcile: reason }) });
}

let engine = newEngine();

async function call(method: string, args: unknown[]): Promise<unknown> {
  switch (method) {
    case 'ensure':
      return engine.ensure(String(args[0]));
    case 'sessions':
      return engine.sessions();
    case 'pid':
      return engine.pid() ?? null;
    case 'detach':
      engine.detach();
      return null;
    case 'destroy':
      return engine.destroy();
    case 'renew':
      engine.detach();
      engine = newEngine();
      return null;
    case 'info':
      return { dir: engine.dir, socketPath: engine.socketPath, configFile: engine.configFile };
    default:
      throw new Error(`unknown method ${method}`);
  }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, method, args } = JSON.parse(line) as { id: number; method: string; args: unknown[] };
  call(method, args).then(
    (result) => send({ id, result: result ?? null }),
    (err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      send({ id, error: { name: e.name, message: e.message, ...(e instanceof BirdConfigFileError && e.line !== undefined ? { line: e.line } : {}) } });
    },
  );
}).on('close', () => {
  engine.detach();
  process.exit(0);
});
