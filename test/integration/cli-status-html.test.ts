/**
 * `twill status --html`: the page the built CLI writes, read back by a real
 * browser (headless Chromium): its DOM must hold every node and every edge
 * label, and its screenshot must be a real picture. Chromium is required:
 * without it these tests fail, saying how to install it.
 *
 * Set TWILL_STATUS_SCREENSHOT=<file.png> to keep the screenshot.
 */
import { expect } from 'chai';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { Etcd3 } from 'etcd3';
import { EtcdRegistry } from '../../lib/subnet/etcd';
import { startEtcd, freePort, EtcdServer } from '../harness/etcd';
import { runToEnd, type RunToEndResult } from '../harness/run-to-end';

const TWILL = path.resolve(__dirname, '../../cmd/twill.js');
const CHROMIUM = '/usr/bin/chromium';
const PREFIX = '/coreos.com/network';

type Run = RunToEndResult;

/** Runs a program to completion; killed (by PID) after `timeoutMs`. */
function run(file: string, args: string[], timeoutMs: number): Promise<Run> {
  return runToEnd(file, args, { timeoutMs });
}

/** Headless Chromium with a fresh profile, nothing fetched from the network. */
async function chromium(args: string[]): Promise<Run> {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'twill-chromium-'));
  try {
    return await run(CHROMIUM, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${profile}`, ...args,
    ], 60_000);
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

/** The `<g …>…</g>` element whose start tag carries `attr="value"` (node and edge groups nest no other group). */
function group(dom: string, attr: string, value: string): string {
  const at = dom.indexOf(`${attr}="${value}"`);
  expect(at, `no element with ${attr}="${value}"`).to.be.greaterThan(-1);
  const start = dom.lastIndexOf('<g', at);
  const end = dom.indexOf('</g>', at);
  return dom.slice(start, end + 4);
}

/** The visible texts (`<text>` contents, tags inside stripped) of an SVG fragment. */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([\s\S]*?)<\/text>/g)].map((m) => m[1].replace(/<[^>]+>/g, '').trim());
}

/** A server answering /readyz on `ip:port` as a twilld health server would. */
function readyz(ip: string, port: number, status: number, body: string): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    res.writeHead(req.url === '/readyz' ? status : 404, { 'Content-Type': 'text/plain' });
    res.end(body);
  });
  return new Promise((resolve, reject) => {
    srv.on('error', reject);
    srv.listen(port, ip, () => resolve(srv));
  });
}

describe('twill status --html (read back by headless Chromium)', function () {
  this.timeout(120_000);
  let etcd: EtcdServer;
  let admin: Etcd3;
  let dir: string;
  const servers: http.Server[] = [];

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: these tests need headless Chromium; install it with apt-get install -y chromium (cmd/install-deps.sh)`);
    }
    etcd = await startEtcd();
    admin = etcd.client();
    dir = mkdtempSync(path.join(os.tmpdir(), 'twill-status-html-'));
  });
  after(async () => {
    for (const s of servers) s.close();
    await etcd?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('draws a node per lease and an edge labelled with the backend the agents choose between every two, health included', async () => {
    const registry = new EtcdRegistry(admin, PREFIX);
    const put = async (key: string, value: object | string, ttl?: number): Promise<void> => {
      const id = ttl === undefined ? undefined : await registry.grant(ttl);
      await registry.createIfAbsent(key, typeof value === 'string' ? value : JSON.stringify(value), id);
    };
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    const vxlan = (ip: string, mac: string) => ({ PublicIP: ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
    await put('10.244.1.0-24', vxlan('127.0.0.1', 'aa:bb:cc:00:00:01'), 86400);
    await put('10.244.2.0-24', vxlan('127.0.0.2', 'aa:bb:cc:00:00:02')); // a reservation
    await put('10.244.3.0-24', { PublicIP: '127.0.0.3', PublicIPv6: null, BackendType: 'host-gw' }, 86400);
    await put('10.244.4.0-24', { PublicIP: '127.0.0.4', PublicIPv6: null }, 86400); // flanneld udp: no BackendType
    await put('10.244.6.0-24', { // a twill node terminating vxlan and host-gw (a migration)
      ...vxlan('127.0.0.6', 'aa:bb:cc:00:00:06'),
      TwillBackends: [{ Type: 'vxlan', Data: { VNI: 1, VtepMAC: 'aa:bb:cc:00:00:06' } }, { Type: 'host-gw' }],
    }, 86400);
    await put('10.244.9.0-24', '{"PublicIP":"not an address","PublicIPv6":null}', 86400);

    // Health: .1 ready, .2 not ready, .3 and the others answer nothing.
    const port = await freePort();
    servers.push(await readyz('127.0.0.1', port, 200, 'ready'));
    servers.push(await readyz('127.0.0.2', port, 503, 'no subnet lease is held\n'));

    const file = path.join(dir, 'cluster.html');
    const r = await run(process.execPath, [TWILL, 'status', '--etcd-endpoints', etcd.endpoint, '--html', file, '--health-port', String(port)], 30_000);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal(`wrote ${file}: 5 nodes, 10 edges, 1 invalid\n`);

    // Self-contained: nothing for the browser to fetch.
    const html = readFileSync(file, 'utf8');
    expect(html).not.to.match(/<script|<link|<img|<iframe|\ssrc=|\shref=|url\(|@import/i);

    const dump = await chromium(['--dump-dom', `file://${file}`]);
    expect(dump.code, dump.stderr).to.equal(0);
    const dom = dump.stdout;

    const nodes = {
      '10.244.1.0/24': { state: 'lease', health: 'ready', lines: ['public IP 127.0.0.1', 'vxlan', '● health: ready'] },
      '10.244.2.0/24': { state: 'reservation', health: 'not ready', lines: ['public IP 127.0.0.2', 'reservation (no expiry)', '● health: not ready'] },
      '10.244.3.0/24': { state: 'lease', health: 'unknown', lines: ['public IP 127.0.0.3', 'host-gw', '● health: unknown'] },
      '10.244.4.0/24': { state: 'lease', health: 'unknown', lines: ['public IP 127.0.0.4', 'udp'] },
      '10.244.6.0/24': { state: 'lease', health: 'unknown', lines: ['vxlan (twill: vxlan, host-gw)'] },
    };
    for (const [subnet, want] of Object.entries(nodes)) {
      const g = group(dom, 'data-node', subnet);
      expect(g).to.include(`data-state="${want.state}"`);
      expect(g).to.include(`data-health="${want.health}"`);
      const shown = texts(g);
      expect(shown[0], subnet).to.equal(subnet);
      expect(shown, subnet).to.include.members(want.lines);
    }
    const invalid = group(dom, 'data-node', '10.244.9.0/24');
    expect(invalid).to.include('data-state="invalid"');
    expect(texts(invalid).slice(0, 2)).to.deep.equal(['10.244.9.0/24', 'INVALID']);
    expect(texts(invalid).join(' ')).to.include('PublicIP');

    const edges: Record<string, string> = {
      '10.244.1.0/24|10.244.2.0/24': 'vxlan',
      '10.244.1.0/24|10.244.3.0/24': 'none',
      '10.244.1.0/24|10.244.4.0/24': 'none',
      '10.244.1.0/24|10.244.6.0/24': 'vxlan',
      '10.244.2.0/24|10.244.3.0/24': 'none',
      '10.244.2.0/24|10.244.4.0/24': 'none',
      '10.244.2.0/24|10.244.6.0/24': 'vxlan',
      '10.244.3.0/24|10.244.4.0/24': 'none',
      '10.244.3.0/24|10.244.6.0/24': 'host-gw',
      '10.244.4.0/24|10.244.6.0/24': 'none',
    };
    expect([...dom.matchAll(/data-edge="([^"]*)"/g)].map((m) => m[1]).sort()).to.deep.equal(Object.keys(edges).sort());
    for (const [id, backend] of Object.entries(edges)) {
      const g = group(dom, 'data-edge', id);
      expect(g, id).to.include(`data-backend="${backend}"`);
      expect(texts(g), id).to.deep.equal([backend]);
    }
    // The table under the drawing says why a node is not ready, and what each node uses to its peers.
    expect(dom).to.include('not ready (no subnet lease is held)');
    expect(dom).to.include('<th>Via</th>');
    expect(dom).to.include('<td>host-gw×1 none×3</td>'); // 10.244.3.0/24: host-gw to .6 (one /24), nothing to the others

    const png = path.join(dir, 'cluster.png');
    const shot = await chromium([`--screenshot=${png}`, '--window-size=1200,800', `file://${file}`]);
    expect(shot.code, shot.stderr).to.equal(0);
    expect(existsSync(png), `no screenshot; chromium said: ${shot.stderr}`).to.equal(true);
    const bytes = readFileSync(png);
    expect(bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'a PNG').to.equal(true);
    expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)], 'width and height').to.deep.equal([1200, 800]);
    // A blank or near-blank page compresses to a few kB; the drawing is far more.
    expect(statSync(png).size).to.be.above(30_000);
    if (process.env.TWILL_STATUS_SCREENSHOT) copyFileSync(png, process.env.TWILL_STATUS_SCREENSHOT);
  });

  it('labels edges host-gw on one /24 and vxlan to a node beyond it, for host-gw with Fallback vxlan', async () => {
    await admin.delete().prefix(`${PREFIX}/`);
    await admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw","Fallback":"vxlan"}}');
    const registry = new EtcdRegistry(admin, PREFIX);
    const lease = (ip: string, n: number) => JSON.stringify({
      PublicIP: ip, PublicIPv6: null, BackendType: 'host-gw', BackendData: null,
      TwillBackends: [{ Type: 'host-gw' }, { Type: 'vxlan', Data: { VNI: 1, VtepMAC: `aa:bb:cc:00:00:0${n}` } }],
    });
    await registry.createIfAbsent('10.244.1.0-24', lease('198.18.0.1', 1), undefined);
    await registry.createIfAbsent('10.244.2.0-24', lease('198.18.0.2', 2), undefined);
    await registry.createIfAbsent('10.244.3.0-24', lease('198.18.1.3', 3), undefined);
    try {
      const r = await run(process.execPath, [TWILL, 'status', '--etcd-endpoints', etcd.endpoint, '--html', '-'], 30_000);
      expect(r.code, r.stderr).to.equal(0);
      const edges: Record<string, string> = {
        '10.244.1.0/24|10.244.2.0/24': 'host-gw',
        '10.244.1.0/24|10.244.3.0/24': 'vxlan',
        '10.244.2.0/24|10.244.3.0/24': 'vxlan',
      };
      for (const [id, backend] of Object.entries(edges)) {
        const g = group(r.stdout, 'data-edge', id);
        expect(g, id).to.include(`data-backend="${backend}"`);
        expect(texts(g), id).to.deep.equal([backend]);
      }
      expect(group(r.stdout, 'data-node', '10.244.3.0/24')).to.include('via vxlan×2');
      expect(r.stdout).to.include('<td>host-gw×1 vxlan×1</td>');
    } finally {
      await admin.delete().prefix(`${PREFIX}/`);
    }
  });

  it('writes the page to stdout with --html -, and refuses --html with --watch', async () => {
    await new EtcdRegistry(admin, PREFIX).createIfAbsent('10.244.1.0-24', '{"PublicIP":"127.0.0.1","PublicIPv6":null}', undefined);
    const r = await run(process.execPath, [TWILL, 'status', '--etcd-endpoints', etcd.endpoint, '--html', '-'], 30_000);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^<!DOCTYPE html>/);
    expect(r.stdout).to.include('data-node="10.244.1.0/24"');
    const both = await run(process.execPath, [TWILL, 'status', '--etcd-endpoints', etcd.endpoint, '--html', 'x.html', '--watch'], 30_000);
    expect(both.code).to.equal(2);
    expect(both.stderr).to.match(/--html <file>.*cannot be used with.*--watch/);
  });
});
