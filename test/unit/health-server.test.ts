import { expect } from 'chai';
import * as http from 'http';
import * as net from 'net';
import { HealthServer, HealthServerBindError, startHealthServer } from '../../lib/observe/health-server';
import { AgentMetrics } from '../../lib/observe/metrics';
import { Readiness, ReadinessStatus } from '../../lib/observe/readiness';
import { MemoryLog } from '../harness/memory-log';

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request to the server under test; `agent` lets a test keep the connection alive. */
function request(server: HealthServer, path: string, opts: { method?: string; agent?: http.Agent } = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: server.address.host, port: server.address.port, path, method: opts.method ?? 'GET', agent: opts.agent ?? false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (no escaped quotes in twill's label values). */
function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparseable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the one sample named `name` whose labels include `labels`. */
function valueOf(text: string, name: string, labels: Record<string, string> = {}): number {
  const found = parseSamples(text).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length !== 1) throw new Error(`expected one sample ${name}${JSON.stringify(labels)}, found ${found.length}`);
  return found[0].value;
}

const READY: ReadinessStatus = { ready: true, reasons: [] };

describe('health server', () => {
  const servers: HealthServer[] = [];
  async function start(opts: Partial<Parameters<typeof startHealthServer>[0]> = {}): Promise<HealthServer> {
    const server = await startHealthServer({ host: '127.0.0.1', port: 0, readiness: () => READY, ...opts });
    servers.push(server);
    return server;
  }
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  describe('endpoints', () => {
    it('answers GET /healthz with 200 ok as long as the process runs', async () => {
      const server = await start({ readiness: () => ({ ready: false, reasons: ['anything'] }) });
      const res = await request(server, '/healthz');
      expect(res.status).to.equal(200);
      expect(res.body).to.equal('ok');
      expect(res.headers['content-type']).to.match(/^text\/plain/);
    });

    it('answers GET /readyz with 200 ready when the readiness check passes', async () => {
      const server = await start();
      const res = await request(server, '/readyz');
      expect(res.status).to.equal(200);
      expect(res.body).to.equal('ready');
    });

    it('answers GET /readyz with 503 and one reason per line when it does not', async () => {
      const server = await start({ readiness: () => ({ ready: false, reasons: ['no subnet lease held yet', 'no reconcile has completed yet'] }) });
      const res = await request(server, '/readyz');
      expect(res.status).to.equal(503);
      expect(res.body.trimEnd().split('\n')).to.deep.equal(['no subnet lease held yet', 'no reconcile has completed yet']);
    });

    it('ignores a query string when routing', async () => {
      const server = await start();
      expect((await request(server, '/readyz?verbose=1')).status).to.equal(200);
    });

    it('serves GET /metrics in the Prometheus text format with the registry content type', async () => {
      const metrics = new AgentMetrics();
      metrics.setPeers('vxlan', 3);
      const server = await start({ metrics });
      const res = await request(server, '/metrics');
      expect(res.status).to.equal(200);
      expect(res.headers['content-type']).to.equal(metrics.contentType);
      expect(res.headers['content-type']).to.match(/^text\/plain; version=0\.0\.4/);
      expect(valueOf(res.body, 'twill_peers', { backend: 'vxlan' })).to.equal(3);
    });

    it('answers /metrics with 404 when no metrics were given', async () => {
      const server = await start();
      expect((await request(server, '/metrics')).status).to.equal(404);
    });

    it('answers an unknown path with 404', async () => {
      const server = await start();
      const res = await request(server, '/nope');
      expect(res.status).to.equal(404);
      expect(res.body).to.contain('/healthz');
    });

    it('answers a method other than GET with 405 and an Allow header', async () => {
      const server = await start({ metrics: new AgentMetrics() });
      for (const path of ['/healthz', '/readyz', '/metrics']) {
        const res = await request(server, path, { method: 'POST' });
        expect(res.status, path).to.equal(405);
        expect(res.headers.allow).to.equal('GET, HEAD');
      }
      expect((await request(server, '/healthz', { method: 'DELETE' })).status).to.equal(405);
    });

    it('answers HEAD like GET, without a body', async () => {
      const server = await start();
      const res = await request(server, '/healthz', { method: 'HEAD' });
      expect(res.status).to.equal(200);
      expect(res.body).to.equal('');
    });

    it('answers 500 and logs when the readiness check throws, and keeps serving', async () => {
      const log = new MemoryLog();
      const server = await start({ log, readiness: () => { throw new Error('boom'); } });
      const res = await request(server, '/readyz');
      expect(res.status).to.equal(500);
      expect(res.body).to.contain('boom');
      expect(log.messages('error').join('\n')).to.contain('/readyz');
      expect((await request(server, '/healthz')).status).to.equal(200);
    });
  });

  describe('binding', () => {
    it('listens on exactly the address the caller passes, and port 0 picks a free port', async () => {
      const log = new MemoryLog();
      const server = await start({ host: '127.0.0.1', port: 0, log });
      expect(server.address.host).to.equal('127.0.0.1');
      expect(server.address.port).to.be.greaterThan(0);
      expect(log.lines.find((l) => l.message === 'health server listening')?.meta?.address).to.equal(`http://127.0.0.1:${server.address.port}`);
    });

    it('refuses a port in use with a message naming --healthz-ip/--healthz-port and the address', async () => {
      const blocker = net.createServer();
      await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
      const port = (blocker.address() as net.AddressInfo).port;
      try {
        const err = await startHealthServer({ host: '127.0.0.1', port, readiness: () => READY }).then(
          (s) => { servers.push(s); throw new Error('listened on a port in use'); },
          (e: unknown) => e,
        );
        expect(err).to.be.instanceOf(HealthServerBindError);
        const bind = err as HealthServerBindError;
        expect(bind.code).to.equal('EADDRINUSE');
        expect(bind.message).to.contain(`127.0.0.1:${port}`);
        expect(bind.message).to.contain('--healthz-ip');
        expect(bind.message).to.contain('--healthz-port');
        expect(bind.message).to.contain('already in use');
      } finally {
        await new Promise((resolve) => blocker.close(resolve));
      }
    });

    it('refuses an address that is not local with a message naming --healthz-ip', async () => {
      // 192.0.2.1 (TEST-NET-1) is assigned to no host: binding fails locally, nothing is sent.
      const err = await startHealthServer({ host: '192.0.2.1', port: 0, readiness: () => READY }).then(
        (s) => { servers.push(s); throw new Error('listened on a foreign address'); },
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(HealthServerBindError);
      expect((err as Error).message).to.contain('192.0.2.1');
      expect((err as Error).message).to.contain('not an address of this host; set --healthz-ip');
    });
  });

  describe('close()', () => {
    it('ends promptly while a keep-alive client holds a connection open', async () => {
      const server = await startHealthServer({ host: '127.0.0.1', port: 0, readiness: () => READY });
      const agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 60_000 });
      try {
        const res = await request(server, '/healthz', { agent });
        expect(res.headers.connection).to.equal('keep-alive');
        const socket = Object.values(agent.freeSockets).flat()[0];
        expect(socket, 'an idle keep-alive socket').to.not.equal(undefined);
        const closed = new Promise<void>((resolve) => socket!.once('close', () => resolve()));
        const t0 = Date.now();
        await server.close();
        await closed;
        expect(Date.now() - t0).to.be.lessThan(1000);
        await server.close(); // a second close is harmless
      } finally {
        agent.destroy();
      }
    });

    it('stops accepting connections', async () => {
      const server = await startHealthServer({ host: '127.0.0.1', port: 0, readiness: () => READY });
      await server.close();
      const err = await request(server, '/healthz').then(() => undefined, (e: NodeJS.ErrnoException) => e);
      expect(err?.code).to.equal('ECONNREFUSED');
    });
  });

  describe('readiness through /readyz (fake clock)', () => {
    const T0 = new Date('2026-03-01T12:00:00.000Z');
    let now: Date;
    let readiness: Readiness;
    let server: HealthServer;
    const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);
    const readyz = () => request(server, '/readyz');

    beforeEach(async () => {
      now = T0;
      readiness = new Readiness({ clock: () => now });
      server = await start({ readiness: () => readiness.status() });
    });

    /** Everything good at T0. */
    function allGood(): void {
      readiness.leaseHeld(true);
      readiness.etcdContact(true);
      readiness.reconciled(true);
    }

    it('is not ready before anything is reported, with a reason for each missing fact', async () => {
      const res = await readyz();
      expect(res.status).to.equal(503);
      expect(res.body.trimEnd().split('\n')).to.deep.equal([
        'no subnet lease held yet',
        'etcd not reached yet',
        'no reconcile has completed yet',
      ]);
    });

    it('is ready once a lease is held, etcd was reached and a reconcile succeeded', async () => {
      allGood();
      const res = await readyz();
      expect(res.status).to.equal(200);
      expect(res.body).to.equal('ready');
    });

    it('is not ready while no lease is held, and says so when the lease is lost', async () => {
      readiness.etcdContact(true);
      readiness.reconciled(true);
      let res = await readyz();
      expect(res.status).to.equal(503);
      expect(res.body.trimEnd()).to.equal('no subnet lease held yet');
      readiness.leaseHeld(true);
      expect((await readyz()).status).to.equal(200);
      readiness.leaseHeld(false);
      res = await readyz();
      expect(res.status).to.equal(503);
      expect(res.body.trimEnd()).to.equal('subnet lease lost; re-acquiring it');
    });

    it('stays ready through an etcd outage shorter than the renewal window', async () => {
      allGood();
      now = at(10);
      readiness.etcdContact(false);
      now = at(60); // 60 s since the last contact: still within the default 60 s window
      expect((await readyz()).status).to.equal(200);
    });

    it('is not ready once etcd has been unreachable for longer than the window, naming the seconds and the last contact', async () => {
      allGood();
      now = at(10);
      readiness.etcdContact(false);
      now = at(73);
      const res = await readyz();
      expect(res.status).to.equal(503);
      expect(res.body.trimEnd()).to.equal('etcd unreachable for 73 s (last contact 2026-03-01T12:00:00.000Z)');
      readiness.etcdContact(true);
      expect((await readyz()).status).to.equal(200);
    });

    it('counts from an explicit contact time and honours setRenewalWindowMs', async () => {
      allGood();
      readiness.setRenewalWindowMs(5_000);
      readiness.etcdContact(true, at(20));
      readiness.etcdContact(true, at(15)); // an older report does not move the last contact back
      readiness.etcdContact(false);
      now = at(25);
      expect((await readyz()).status).to.equal(200);
      now = at(26);
      const res = await readyz();
      expect(res.status).to.equal(503);
      expect(res.body).to.contain('etcd unreachable for 6 s (last contact 2026-03-01T12:00:20.000Z)');
      expect(() => readiness.setRenewalWindowMs(0)).to.throw(RangeError, 'positive');
      expect(() => readiness.setRenewalWindowMs(Number.NaN)).to.throw(RangeError);
    });

    it('is not ready after a failed reconcile, quoting the error, until one succeeds', async () => {
      allGood();
      readiness.reconciled(false, 'RTNETLINK answers: Operation not permitted');
      let res = await readyz();
      expect(res.status).to.equal(503);
      expect(res.body.trimEnd()).to.equal('last reconcile failed: RTNETLINK answers: Operation not permitted');
      readiness.reconciled(true);
      res = await readyz();
      expect(res.status).to.equal(200);
    });

    it('lists every reason at once, and status() takes an explicit time', () => {
      readiness.etcdContact(true);
      readiness.etcdContact(false);
      readiness.reconciled(false);
      const status = readiness.status(at(120));
      expect(status.ready).to.equal(false);
      expect(status.reasons).to.deep.equal([
        'no subnet lease held yet',
        'etcd unreachable for 120 s (last contact 2026-03-01T12:00:00.000Z)',
        'last reconcile failed: unknown error',
      ]);
    });
  });
});

describe('AgentMetrics', () => {
  const TWILL_METRICS = [
    'twill_peers',
    'twill_reconcile_total',
    'twill_reconcile_duration_seconds',
    'twill_kernel_changes_total',
    'twill_lease_expiry_timestamp_seconds',
    'twill_subnet_changes_total',
    'twill_etcd_errors_total',
    'twill_etcd_reconnects_total',
    'twill_etcd_up',
    'twill_config_rejected_total',
    'twill_config_valid',
    'twill_leases_skipped_total',
    'twill_backend_info',
    'twill_datapath_receive_packets_total',
    'twill_datapath_transmit_packets_total',
    'twill_datapath_receive_bytes_total',
    'twill_datapath_transmit_bytes_total',
    'twill_datapath_drops_total',
  ];

  it('exports every twill metric with the labels and values reported', async () => {
    const m = new AgentMetrics();
    m.setPeers('vxlan', 12);
    m.setPeers('host-gw', 0);
    m.observeReconcile(0.004, true);
    m.observeReconcile(0.2, true);
    m.observeReconcile(3, false);
    m.countKernelChanges(5, 2);
    m.countKernelChanges(1, 0);
    m.setLeaseExpiry(new Date('2026-03-02T12:00:00.000Z'));
    m.subnetChanged();
    m.etcdError('renew');
    m.etcdError('renew');
    m.etcdError('watch');
    m.etcdReconnected();
    m.setEtcdUp(true);
    m.configRejected();
    m.setConfigValid(false);
    m.leaseSkipped();
    m.leaseSkipped();
    m.setBackend('ipip', 'userspace');
    m.setDatapathCounters('ipip', { rxPackets: 10, txPackets: 20, rxBytes: 1000, txBytes: 2000, drops: 1 });
    const text = await m.metrics();

    expect(valueOf(text, 'twill_peers', { backend: 'vxlan' })).to.equal(12);
    expect(valueOf(text, 'twill_peers', { backend: 'host-gw' })).to.equal(0);
    expect(valueOf(text, 'twill_reconcile_total', { result: 'ok' })).to.equal(2);
    expect(valueOf(text, 'twill_reconcile_total', { result: 'error' })).to.equal(1);
    expect(valueOf(text, 'twill_reconcile_duration_seconds_count')).to.equal(3);
    expect(valueOf(text, 'twill_reconcile_duration_seconds_sum')).to.be.closeTo(3.204, 1e-9);
    expect(valueOf(text, 'twill_reconcile_duration_seconds_bucket', { le: '0.001' })).to.equal(0);
    expect(valueOf(text, 'twill_reconcile_duration_seconds_bucket', { le: '0.005' })).to.equal(1);
    expect(valueOf(text, 'twill_reconcile_duration_seconds_bucket', { le: '10' })).to.equal(3);
    expect(valueOf(text, 'twill_reconcile_duration_seconds_bucket', { le: '+Inf' })).to.equal(3);
    expect(valueOf(text, 'twill_kernel_changes_total', { kind: 'changed' })).to.equal(6);
    expect(valueOf(text, 'twill_kernel_changes_total', { kind: 'removed' })).to.equal(2);
    expect(valueOf(text, 'twill_lease_expiry_timestamp_seconds')).to.equal(Date.parse('2026-03-02T12:00:00.000Z') / 1000);
    expect(valueOf(text, 'twill_subnet_changes_total')).to.equal(1);
    expect(valueOf(text, 'twill_etcd_errors_total', { operation: 'renew' })).to.equal(2);
    expect(valueOf(text, 'twill_etcd_errors_total', { operation: 'watch' })).to.equal(1);
    expect(valueOf(text, 'twill_etcd_reconnects_total')).to.equal(1);
    expect(valueOf(text, 'twill_etcd_up')).to.equal(1);
    expect(valueOf(text, 'twill_config_rejected_total')).to.equal(1);
    expect(valueOf(text, 'twill_config_valid')).to.equal(0);
    expect(valueOf(text, 'twill_leases_skipped_total')).to.equal(2);
    expect(valueOf(text, 'twill_backend_info', { backend: 'ipip', mode: 'userspace' })).to.equal(1);
    expect(valueOf(text, 'twill_datapath_receive_packets_total', { backend: 'ipip' })).to.equal(10);
    expect(valueOf(text, 'twill_datapath_transmit_packets_total', { backend: 'ipip' })).to.equal(20);
    expect(valueOf(text, 'twill_datapath_receive_bytes_total', { backend: 'ipip' })).to.equal(1000);
    expect(valueOf(text, 'twill_datapath_transmit_bytes_total', { backend: 'ipip' })).to.equal(2000);
    expect(valueOf(text, 'twill_datapath_drops_total', { backend: 'ipip' })).to.equal(1);
  });

  it('documents every twill metric with HELP and TYPE lines', async () => {
    const text = await new AgentMetrics().metrics();
    for (const name of TWILL_METRICS) {
      expect(text, name).to.match(new RegExp(`^# HELP ${name} \\S.{20,}$`, 'm'));
      expect(text, name).to.match(new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, 'm'));
    }
  });

  it('starts the labelled reconcile and kernel counters at 0 and the lease expiry at 0', async () => {
    const text = await new AgentMetrics().metrics();
    expect(valueOf(text, 'twill_reconcile_total', { result: 'ok' })).to.equal(0);
    expect(valueOf(text, 'twill_reconcile_total', { result: 'error' })).to.equal(0);
    expect(valueOf(text, 'twill_kernel_changes_total', { kind: 'changed' })).to.equal(0);
    expect(valueOf(text, 'twill_kernel_changes_total', { kind: 'removed' })).to.equal(0);
    expect(valueOf(text, 'twill_lease_expiry_timestamp_seconds')).to.equal(0);
  });

  it('exports the Node process metrics under the twill_ prefix', async () => {
    const text = await new AgentMetrics().metrics();
    expect(text).to.match(/^twill_process_cpu_user_seconds_total \d/m);
    expect(text).to.match(/^twill_nodejs_heap_size_used_bytes \d/m);
    expect(text).to.not.match(/^process_cpu_user_seconds_total/m);
  });

  it('keeps separate registries, so several instances coexist', async () => {
    const a = new AgentMetrics();
    const b = new AgentMetrics();
    a.subnetChanged();
    expect(valueOf(await a.metrics(), 'twill_subnet_changes_total')).to.equal(1);
    expect(valueOf(await b.metrics(), 'twill_subnet_changes_total')).to.equal(0);
  });

  it('exports a lease expiry of 0 for a reservation or no lease', async () => {
    const m = new AgentMetrics();
    m.setLeaseExpiry(new Date('2026-03-02T12:00:00.000Z'));
    m.setLeaseExpiry(undefined);
    expect(valueOf(await m.metrics(), 'twill_lease_expiry_timestamp_seconds')).to.equal(0);
  });

  it('shows only the active backend in twill_backend_info, kernel mode by default', async () => {
    const m = new AgentMetrics();
    m.setBackend('ipip', 'userspace');
    m.setBackend('vxlan');
    const info = parseSamples(await m.metrics()).filter((s) => s.name === 'twill_backend_info');
    expect(info).to.deep.equal([{ name: 'twill_backend_info', labels: { backend: 'vxlan', mode: 'kernel' }, value: 1 }]);
  });

  it('turns absolute datapath counters into increments that survive a datapath restart', async () => {
    const m = new AgentMetrics();
    const rx = async () => valueOf(await m.metrics(), 'twill_datapath_receive_packets_total', { backend: 'ipip' });
    const drops = async () => valueOf(await m.metrics(), 'twill_datapath_drops_total', { backend: 'ipip' });
    const counters = (rxPackets: number, d = 0) => ({ rxPackets, txPackets: 0, rxBytes: 0, txBytes: 0, drops: d });
    m.setDatapathCounters('ipip', counters(100, 4));
    m.setDatapathCounters('ipip', counters(150, 4));
    expect(await rx()).to.equal(150);
    m.setDatapathCounters('ipip', counters(20, 1)); // the datapath restarted and counts from 0 again
    expect(await rx()).to.equal(170);
    expect(await drops()).to.equal(5);
    m.setDatapathCounters('ipip', counters(30, 1));
    expect(await rx()).to.equal(180);
    expect(await drops()).to.equal(5);
    m.setDatapathCounters('other', counters(7));
    expect(await rx()).to.equal(180);
    expect(valueOf(await m.metrics(), 'twill_datapath_receive_packets_total', { backend: 'other' })).to.equal(7);
  });

  it('ignores values that cannot be counts instead of throwing', async () => {
    const m = new AgentMetrics();
    m.setPeers('vxlan', 4);
    m.setDatapathCounters('ipip', { rxPackets: 10, txPackets: 10, rxBytes: 10, txBytes: 10, drops: 10 });
    expect(() => {
      m.setPeers('vxlan', Number.NaN);
      m.observeReconcile(-1, true);
      m.countKernelChanges(-3, Number.POSITIVE_INFINITY);
      m.setLeaseExpiry(new Date('not a date'));
      m.setDatapathCounters('ipip', { rxPackets: -1, txPackets: Number.NaN, rxBytes: 12, txBytes: 10, drops: 10 });
    }).to.not.throw();
    const text = await m.metrics();
    expect(valueOf(text, 'twill_peers', { backend: 'vxlan' })).to.equal(4);
    expect(valueOf(text, 'twill_reconcile_total', { result: 'ok' })).to.equal(1);
    expect(valueOf(text, 'twill_reconcile_duration_seconds_count')).to.equal(0);
    expect(valueOf(text, 'twill_kernel_changes_total', { kind: 'changed' })).to.equal(0);
    expect(valueOf(text, 'twill_lease_expiry_timestamp_seconds')).to.equal(0);
    expect(valueOf(text, 'twill_datapath_receive_packets_total', { backend: 'ipip' })).to.equal(10);
    expect(valueOf(text, 'twill_datapath_receive_bytes_total', { backend: 'ipip' })).to.equal(12);
    // The ignored -1 did not become the baseline: 15 is 5 more than the 10 seen before.
    m.setDatapathCounters('ipip', { rxPackets: 15, txPackets: 10, rxBytes: 12, txBytes: 10, drops: 10 });
    expect(valueOf(await m.metrics(), 'twill_datapath_receive_packets_total', { backend: 'ipip' })).to.equal(15);
  });
});
