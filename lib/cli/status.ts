/**
 * `twill status` — the cluster as etcd sees it: the network config and one
 * row per lease (valid or not), as a table, as JSON (`--json`), or as a
 * drawing in a self-contained HTML page (`--html FILE`); `--watch` redraws
 * on every change until Ctrl-C. `--health-port N` also asks each node's
 * `/readyz`.
 *
 * Each node's VIA column (`peers` in --json, the edges of --html) is the
 * backend its agent uses to each peer, by the agents' own rule
 * (backends/assignment.ts). One assumption: etcd holds no prefix lengths, so
 * host-gw counts as usable between two nodes only when their public IPs
 * share a /24 (status/topology.ts).
 *
 * Exit codes: 0 (also after Ctrl-C in --watch, and when the config is
 * missing or some leases are invalid: that is what it reports), 1 when etcd
 * cannot be read (unreachable, TLS, auth) — within about 5 s, with a message
 * naming the endpoints — or the file cannot be written, 2 on bad usage.
 *
 * Kubernetes mode (`--kubeconfig`, `--kube-subnet-mgr` or `--kube-api-url`;
 * kube-options.ts): one row per Node, judged by the agents' own rule
 * (`nodeToLease`), the network config from `--net-config-path` or the
 * ConfigMap `--kube-net-conf`; the NODE column replaces EXPIRES. An API
 * server that does not answer or refuses: exit 1 within about 5 s, naming
 * it. `--watch` watches the Nodes (status/kube-watch.ts).
 *
 * The pieces live in status/: model (what a row is), kube-model (a row from
 * a Node), snapshot and kube-snapshot (reading etcd, the API), cells (the text of each cell), table, json, topology and html (the
 * outputs), health (the /readyz probes), watch (the refresh loop).
 */
import { renameSync, rmSync, writeFileSync } from 'fs';
import * as path from 'path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { EtcdRegistry } from '../subnet/etcd';
import { addEtcdOptions, etcdClientFrom, type EtcdCliOptions } from './etcd-options';
import { addKubeOptions, kubeCliFrom, storeOrUsage, type KubeCliOptions } from './kube-options';
import { readKubeSnapshot } from './status/kube-snapshot';
import { watchKubeStatus } from './status/kube-watch';
import type { ClusterStatus } from './status/model';
import { readSnapshot, type SnapshotOptions } from './status/snapshot';
import { renderTable, useColour } from './status/table';
import { toDocument } from './status/json';
import { renderHtml } from './status/html';
import { edgesOf } from './status/topology';
import { watchStatus } from './status/watch';

interface StatusOptions extends EtcdCliOptions, KubeCliOptions {
  json?: boolean;
  html?: string;
  watch?: boolean;
  healthPort?: number;
}

export function registerStatus(program: Command): void {
  const cmd = program
    .command('status')
    .description('show the network config and every subnet lease in etcd, or every Node in Kubernetes mode (valid or not)');
  addKubeOptions(addEtcdOptions(cmd))
    .addOption(new Option('--json', 'print one JSON document (config and leases) for scripts'))
    .addOption(new Option('--html <file>', 'write a self-contained HTML page drawing the cluster (- for stdout)').conflicts(['json', 'watch']))
    .addOption(new Option('--watch', 'redraw whenever a lease or the config changes, until Ctrl-C (with --json: one JSON line per change)'))
    .addOption(new Option('--health-port <port>', "also ask each node's http://<PublicIP>:<port>/readyz (1 s timeout; twilld must listen there: --healthz-port <port> --healthz-ip 0.0.0.0)").argParser(parsePort))
    .addHelpText('after', `
VIA (--json: peers, --html: the edges) is the backend each node uses to each
peer, chosen as the agents choose it: the first of Backend.Type and its
Fallback that both nodes terminate and that reaches the peer, else another
both terminate (during a migration), else none. host-gw reaches only a peer
on the same link; etcd does not hold the nodes' prefix lengths, so status
assumes a /24: two nodes whose public IPs share a /24 are on one link. On a
wider or narrower underlay the agents may choose otherwise; a node's routes
(ip route) show what it really uses.

Examples:
  twill status --etcd-endpoints http://10.0.0.1:2379
  twill status --json | jq '.leases[] | select(.valid | not)'
  twill status --watch
  twill status --html cluster.html --health-port 8471
  twill status --kubeconfig ~/.kube/config
  twill status --kube-subnet-mgr   (in the twill pod: its service account, the mounted net-conf.json)`)
    .action(async (opts: StatusOptions, command: Command) => {
      const store = storeOrUsage(command, 'twill status');
      if (!store) return;
      await (store === 'kube' ? runKubeStatus(opts) : runStatus(opts));
    });
}

function parsePort(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 65535) throw new InvalidArgumentError('must be a port number from 1 to 65535');
  return n;
}

/** One look at the Nodes; a kubeconfig that cannot be used, or an API that does not answer, rejects (exit 1) naming it. */
async function runKubeStatus(opts: StatusOptions): Promise<void> {
  const kube = kubeCliFrom(opts);
  try {
    if (opts.watch) {
      await watch(opts, (render, warn, signal) => watchKubeStatus(kube, { healthPort: opts.healthPort, render, warn, signal }));
      return;
    }
    output(await readKubeSnapshot(kube, { healthPort: opts.healthPort }), opts);
  } finally {
    kube.client.close();
  }
}

function output(status: ClusterStatus, opts: StatusOptions): void {
  if (opts.html !== undefined) writeHtml(opts.html, status);
  else if (opts.json) process.stdout.write(`${JSON.stringify(toDocument(status), null, 2)}\n`);
  else process.stdout.write(renderTable(status, { colour: useColour(process.stdout) }));
}

async function runStatus(opts: StatusOptions): Promise<void> {
  const client = etcdClientFrom(opts);
  try {
    const registry = new EtcdRegistry(client, opts.etcdPrefix);
    const snapshot: SnapshotOptions = {
      prefix: opts.etcdPrefix.replace(/\/+$/, ''),
      endpoints: opts.etcdEndpoints.split(',').map((s) => s.trim()).filter(Boolean),
      healthPort: opts.healthPort,
    };
    if (opts.watch) {
      await watch(opts, (render, warn, signal) => watchStatus(registry, { ...snapshot, render, warn, signal }));
      return;
    }
    output(await readSnapshot(registry, snapshot), opts);
  } finally {
    client.close();
  }
}

type WatchLoop = (render: (status: ClusterStatus) => void, warn: (message: string) => void, signal: AbortSignal) => Promise<void>;

/** Draws each picture `loop` hands over (redrawing the screen on a terminal) until Ctrl-C. */
async function watch(opts: StatusOptions, loop: WatchLoop): Promise<void> {
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const tty = Boolean(process.stdout.isTTY);
  let drawn = 0;
  const render = (status: ClusterStatus): void => {
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(toDocument(status))}\n`);
      return;
    }
    const table = renderTable(status, { colour: useColour(process.stdout) });
    const when = status.readAt.toISOString();
    const revision = status.store.kind === 'etcd' ? `revision ${status.store.revision}` : `resourceVersion ${status.store.resourceVersion}`;
    if (tty) {
      // Clear the screen and the scrollback, then draw from the top.
      process.stdout.write(`\x1b[H\x1b[2J\x1b[3J${`twill status --watch: read ${when} (${revision}); Ctrl-C to quit`}\n\n${table}`);
    } else {
      process.stdout.write(`${drawn > 0 ? `\n--- ${when} (${revision}) ---\n` : ''}${table}`);
    }
    drawn++;
  };
  try {
    await loop(render, (message) => process.stderr.write(`twill status: ${message}\n`), stop.signal);
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/** Written to a temporary file beside it, then renamed: a reader never sees half a page. */
function writeHtml(file: string, status: ClusterStatus): void {
  const html = renderHtml(status);
  if (file === '-') {
    process.stdout.write(html);
    return;
  }
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, html, { mode: 0o644 });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new Error(`--html ${file}: cannot write it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const nodes = status.rows.filter((r) => r.lease).length;
  const invalid = status.rows.length - nodes;
  process.stdout.write(`wrote ${file}: ${nodes} node${nodes === 1 ? '' : 's'}, ${edgesOf(status.rows, status.config).length} edges${invalid ? `, ${invalid} invalid` : ''}\n`);
}
