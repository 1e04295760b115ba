/**
 * One subnet manager as its own process, for the racing-agents test: it
 * acquires a lease the way twilld does (EtcdSubnetManager.acquireLease),
 * prints one JSON line on stdout and exits.
 *
 *   node subnet-racer.js --etcd http://127.0.0.1:2379 --public-ip 198.19.0.7 --ttl 600
 *        [--retry] [--go-on-stdin] [--config '{"Network":"10.20.0.0/16","SubnetLen":24}'] [--prefix /coreos.com/network]
 *
 * stdout, exactly one line:
 *   {"subnet":"10.20.7.0/24","collisions":3,"collisionRetries":0,"acquireMs":412}   exit code 0
 *   {"error":"out of subnets: …","name":"OutOfSubnetsError"}        exit code 1
 * `collisions` counts subnets another racer created first (the manager
 * then tries another); `collisionRetries` counts CollisionLimitError (ten
 * collisions in a row), which the racer retries at once, as twilld's own
 * acquire loop retries it. `acquireMs` is the time from the start of the
 * acquisition (after "go" with --go-on-stdin) to the lease.
 *
 * With `--retry`, OutOfSubnetsError is retried every 500 ms instead of
 * printed; the first one is reported on stderr as {"waiting":"<message>"},
 * so a caller knows the racer has seen the network full.
 *
 * With `--go-on-stdin`, the racer loads, connects to etcd, prints
 * {"ready":true} on stderr and waits for a line on stdin before acquiring:
 * a caller can start hundreds of racers (loading takes most of their time)
 * and then release them all in the same millisecond.
 *
 * The lease stays in etcd (bound to an etcd lease of `--ttl` seconds) after
 * the process exits, as a node's lease outlives a twilld restart.
 *
 * Kept small on purpose — hundreds of these run at once: it loads the etcd
 * client and the subnet modules only (no backends, no netlink, no winston),
 * and the racing test runs it bundled as twilld is (racer-bundle.ts).
 */
import { Etcd3 } from 'etcd3';
import { parseNetworkConfig } from '../../lib/config/parse';
import { EtcdRegistry } from '../../lib/subnet/etcd-registry';
import { EtcdSubnetManager, CollisionLimitError } from '../../lib/subnet/manager';
import { OutOfSubnetsError } from '../../lib/subnet/allocator';
import type { Log } from '../../lib/observe/logger';

export const DEFAULT_RACER_CONFIG = { Network: '10.20.0.0/16', SubnetLen: 24 };
const RETRY_MS = 500;

/** What the racer prints. */
export type RacerResult =
  | { readonly subnet: string; readonly collisions: number; readonly collisionRetries: number; readonly acquireMs: number }
  | { readonly error: string; readonly name: string };

/** Says nothing; counts the manager's "subnet taken by another node at the same moment" messages. */
class CollisionCounter implements Log {
  count = 0;
  error(): void {}
  warn(): void {}
  debug(): void {}
  info(message: string): void {
    if (message.startsWith('subnet taken by another node')) this.count++;
  }
}

/** Resolves on the first line (or end) of stdin. */
function lineOnStdin(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => {
      if (d.includes('\n')) resolve();
    });
    process.stdin.once('end', () => resolve());
  });
}

function flag(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

function required(argv: readonly string[], name: string): string {
  const v = flag(argv, name);
  if (!v) throw new Error(`subnet-racer: --${name} is required`);
  return v;
}

async function race(argv: readonly string[]): Promise<RacerResult> {
  const endpoint = required(argv, 'etcd');
  const publicIP = required(argv, 'public-ip');
  const ttlSeconds = Number(required(argv, 'ttl'));
  const retry = argv.includes('--retry');
  const config = parseNetworkConfig(flag(argv, 'config') ?? JSON.stringify(DEFAULT_RACER_CONFIG), ['udp']);
  const client = new Etcd3({ hosts: endpoint });
  const registry = new EtcdRegistry(client, flag(argv, 'prefix') ?? '/coreos.com/network');
  const log = new CollisionCounter();
  const manager = new EtcdSubnetManager(registry, { ttlSeconds, renewMarginSeconds: ttlSeconds / 2, log });
  let collisionRetries = 0;
  let waiting = false;
  try {
    if (argv.includes('--go-on-stdin')) {
      await registry.getConfig(); // connects, so that "go" starts the race itself
      process.stderr.write(`${JSON.stringify({ ready: true })}\n`);
      await lineOnStdin();
    }
    const startedAt = Date.now();
    for (;;) {
      try {
        const lease = await manager.acquireLease(config, { publicIP, publicIPv6: null }, {});
        return { subnet: lease.subnet.toString(), collisions: log.count, collisionRetries, acquireMs: Date.now() - startedAt };
      } catch (err) {
        if (err instanceof CollisionLimitError) {
          collisionRetries++;
          continue;
        }
        if (!(err instanceof OutOfSubnetsError) || !retry) throw err;
        if (!waiting) process.stderr.write(`${JSON.stringify({ waiting: err.message })}\n`);
        waiting = true;
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  } finally {
    await manager.close();
    client.close();
  }
}

function finish(result: RacerResult, code: number): void {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code));
}

if (require.main === module) {
  race(process.argv.slice(2)).then(
    (result) => finish(result, 0),
    (err: Error) => finish({ error: err.message, name: err.name }, 1),
  );
}
