/**
 * Runs lib/netlink inside a network namespace for netlink.test.ts:
 * `ip netns exec <ns> node netlink-driver.js`.
 *
 * Protocol, one JSON object per line. In (stdin):
 * `{ id, method, args }` calls `Netlink#method(...args)`; besides those,
 * `program` (kind, count, options) builds and applies a batch of `count`
 * routes/neighbours/FDB entries and reports how long it took. Out (stdout):
 * `{ id, result }`, `{ id, error }` (the error's class name, code, operation,
 * object and message), and `{ event }` for every event of the subscription
 * opened by `subscribe` (groups, options). `directReachRefresh` (external
 * link name, IPs) refreshes the backends/direct-reach.ts `DirectReach` of
 * that link (one per link, kept between calls) and answers with its
 * verdicts. The driver exits when stdin ends.
 */
import * as readline from 'readline';
import { Netlink, NetlinkError, NetlinkEvent, Operation, Unsubscribe, UnsupportedLinkKindError } from '../../lib/netlink';
import { DirectReach } from '../../backends/direct-reach';

export interface DriverRequest {
  id: number;
  method: string;
  args: unknown[];
}

export interface DriverError {
  name: string;
  message: string;
  code?: string;
  operation?: string;
  object?: string;
  kind?: string;
}

export type DriverReply =
  | { id: number; result: unknown }
  | { id: number; error: DriverError }
  | { event: NetlinkEvent };

/** What `directReachRefresh` answers: per IP, direct or not and why; the problems refresh reported. */
export interface DirectReachResult {
  direct: Record<string, boolean>;
  why: Record<string, string>;
  problems: string[];
}

export type ProgramKind = 'route' | 'neighbor' | 'fdb';

export interface ProgramResult {
  ms: number;
  applied: number;
  failed: number;
  firstError?: string;
}

/** The i-th peer of a synthetic cluster: subnet IP 10.244.x.y, VTEP MAC aa:bb:cc:00:x:y, public IP 198.18.x.y. */
export function peer(i: number): { subnetIP: string; mac: string; publicIP: string } {
  const hi = (i >> 8) & 255;
  const lo = i & 255;
  const hex = (b: number): string => b.toString(16).padStart(2, '0');
  return { subnetIP: `10.244.${hi}.${lo}`, mac: `aa:bb:cc:00:${hex(hi)}:${hex(lo)}`, publicIP: `198.18.${hi}.${lo}` };
}

function programOps(kind: ProgramKind, count: number, dev: string, protocol: number): Operation[] {
  return Array.from({ length: count }, (_, i): Operation => {
    const p = peer(i);
    switch (kind) {
      case 'route': return { op: 'replaceRoute', route: { dst: `${p.subnetIP}/32`, gateway: p.subnetIP, dev, onlink: true, protocol } };
      case 'neighbor': return { op: 'replaceNeighbor', neighbor: { dev, ip: p.subnetIP, mac: p.mac } };
      case 'fdb': return { op: 'replaceFdb', fdb: { dev, mac: p.mac, dst: p.publicIP } };
    }
  });
}

function toDriverError(err: unknown): DriverError {
  if (err instanceof UnsupportedLinkKindError) {
    return { name: err.name, message: err.message, code: err.code, operation: err.operation, object: err.object, kind: err.kind };
  }
  if (err instanceof NetlinkError) return { name: err.name, message: err.message, code: err.code, operation: err.operation, object: err.object };
  if (err instanceof Error) return { name: err.name, message: err.message };
  return { name: 'Error', message: String(err) };
}

async function main(): Promise<void> {
  const nl = Netlink.open();
  let unsubscribe: Unsubscribe | undefined;
  const reach = new Map<string, DirectReach>();
  const write = (reply: DriverReply): void => { process.stdout.write(`${JSON.stringify(reply)}\n`); };

  const handlers: Record<string, (...args: never[]) => Promise<unknown>> = {
    program: async (kind: ProgramKind, count: number, dev: string, protocol: number): Promise<ProgramResult> => {
      const ops = programOps(kind, count, dev, protocol);
      const started = process.hrtime.bigint();
      const r = await nl.apply(ops);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      return { ms, applied: r.applied, failed: r.failed.length, firstError: r.failed[0]?.error.message };
    },
    subscribe: async (groups: Parameters<Netlink['subscribe']>[0], options: Parameters<Netlink['subscribe']>[2]) => {
      unsubscribe = await nl.subscribe(groups, (event) => write({ event }), options);
      return true;
    },
    unsubscribe: async () => {
      unsubscribe?.();
      unsubscribe = undefined;
      return true;
    },
    window: async () => nl.window,
    directReachRefresh: async (ext: string, ips: string[], extra: string[] = [], maxAgeMs = 0): Promise<DirectReachResult> => {
      let dr = reach.get(`${ext}/${maxAgeMs}`);
      if (!dr) {
        const link = await nl.getLink(ext);
        if (!link) throw new Error(`no link ${ext}`);
        dr = new DirectReach(nl, { index: link.index, name: ext }, { maxAgeMs });
        reach.set(`${ext}/${maxAgeMs}`, dr);
      }
      const problems = await dr.refresh(ips);
      const out: DirectReachResult = { direct: {}, why: {}, problems };
      for (const ip of [...ips, ...extra]) {
        out.direct[ip] = dr.isDirect(ip);
        out.why[ip] = dr.why(ip);
      }
      return out;
    },
  };

  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const req = JSON.parse(line) as DriverRequest;
    const handler = handlers[req.method];
    const method = (nl as unknown as Record<string, unknown>)[req.method];
    const call = handler
      ? (handler as (...args: unknown[]) => Promise<unknown>)(...req.args)
      : typeof method === 'function'
        ? Promise.resolve().then(() => (method as (...args: unknown[]) => unknown).apply(nl, req.args))
        : Promise.reject(new Error(`no method ${req.method}`));
    // Requests run concurrently, as a backend's would.
    call.then(
      (result) => write({ id: req.id, result: result === undefined ? null : result }),
      (err: unknown) => write({ id: req.id, error: toDriverError(err) }),
    );
  }
  unsubscribe?.();
  nl.close();
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`netlink-driver: ${String(err)}\n`);
    process.exit(1);
  });
}
