/**
 * Everything twilld reads from etcd — the network config and every node's
 * lease — is written by others and is only data. Values full of shell
 * syntax, line breaks, NULs and sheer length must never reach a shell or a
 * command line, never forge a log line, and never stop twilld: a bad lease
 * is skipped with a warning, a bad config is refused, good leases work.
 *
 * Every payload, if a shell ever ran it, would create its own marker file
 * `/tmp/twill-pwned-<random>-<n>`; none may exist afterwards, and no shell
 * or `touch` may ever appear among twilld's descendants.
 *
 * The second part checks the compiled code itself: child processes are
 * started only with argument arrays (`execFile`/`spawn` without a shell).
 */
import { expect } from 'chai';
import { randomBytes } from 'crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Etcd3 } from 'etcd3';
import { startEtcd, EtcdServer } from '../harness/etcd';
import { startDaemon, DaemonProcess } from '../harness/daemon';
import { waitFor, sleep } from '../harness/wait';

const PREFIX = '/coreos.com/network';
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ash', 'busybox', 'touch']);

describe('twilld treats what it reads from etcd as data, never as shell input', function () {
  this.timeout(60_000);
  const tag = randomBytes(6).toString('hex');
  const markers: string[] = [];
  /** The many ways a shell would be made to create a marker file, each with a fresh marker. */
  const attack = (): string[] => {
    const m = (): string => {
      const file = path.join(os.tmpdir(), `twill-pwned-${tag}-${markers.length}`);
      markers.push(file);
      return file;
    };
    return [
      `$(touch ${m()})`,
      `\`touch ${m()}\``,
      `; touch ${m()};`,
      `| touch ${m()}`,
      `&& touch ${m()}`,
      `\ntouch ${m()}\n`,
      `'; touch ${m()}; echo '`,
      `"; touch ${m()}; echo "`,
      `\u0000; touch ${m()}`,
      `\\x00$(touch ${m()})`,
      `;\${IFS}touch\${IFS}${m()}`,
    ];
  };
  /** A line break followed by what would pass for a log line of twilld's own. */
  const forgedLine = `\nFORGED-${tag} INFO  twilld running`;
  const ip = (publicIP: string, extra: Record<string, unknown> = {}) => JSON.stringify({ PublicIP: publicIP, PublicIPv6: null, ...extra });

  // Written before twilld starts, so they reach it in its first listing.
  const evil = attack();
  const listed: Array<[string, string]> = [
    ['10.244.150.0-24', ip(evil[0])],
    ['10.244.151.0-24' + evil[1], ip('198.18.0.151')],
    ['10.244.152.0-24' + forgedLine + evil[2], ip('198.18.0.152')],
    ['10.244.153.0-24', evil[3]],
    ['10.244.154.0-24', ip('198.18.0.154', { BackendType: evil[4] })],
    ['10.244.155.0-24', ip('198.18.0.155', { Padding: 'B'.repeat(70_000) + evil[5] })],
    ['10.244.156.0-24', ip(`198.18.0.156${evil[8]}`)],
    ['10.244.157.0-24', JSON.stringify({ PublicIP: '198.18.0.157', PublicIPv6: evil[6] })],
    ['10.244.158.0-24', ip('198.18.0.158', { TwillBackends: [{ Type: evil[7] }] })],
    [evil[9], ip('198.18.0.159')],
    ['10.244.160.0-24' + 'C'.repeat(5000) + evil[10], ip('198.18.0.160')],
  ];
  // Opaque backend data is the backend's to interpret; for alloc it is data and nothing else.
  const opaque: [string, string] = ['10.244.180.0-24',
    ip('198.18.0.180', { BackendData: { VtepMAC: evil[0], VNI: evil[1], Note: `${forgedLine}\u0000${'D'.repeat(10_000)}` } })];
  // Written while twilld runs, so they reach it as watch events.
  const later = attack();
  const watched: Array<[string, string]> = [
    ['10.244.190.0-24', ip(later[0])],
    ['10.244.191.0-24' + later[1], ip('198.18.0.191')],
    ['10.244.192.0-24', later[2] + forgedLine],
  ];

  let etcd: EtcdServer;
  let admin: Etcd3;
  let dir: string;
  let daemon: DaemonProcess;
  let watch: NodeJS.Timeout | undefined;
  const descendantsSeen = new Set<string>();
  const lease = (key: string, value: string) => admin.put(`${PREFIX}/subnets/${key}`).value(value);

  before(async () => {
    etcd = await startEtcd();
    admin = etcd.client();
    dir = mkdtempSync(path.join(os.tmpdir(), 'twill-untrusted-'));
    for (const [k, v] of [...listed, opaque]) await lease(k, v);
    await lease('10.244.200.0-24', ip('198.18.0.200'));
  });
  after(async () => {
    if (watch) clearInterval(watch);
    await daemon?.stop('SIGKILL');
    await etcd?.destroy();
    rmSync(dir, { recursive: true, force: true });
    for (const m of markers) rmSync(m, { force: true });
  });

  it('refuses a network config made of shell syntax, once, and keeps running', async () => {
    const bad = attack();
    await admin.put(`${PREFIX}/config`).value(JSON.stringify({ Network: `10.244.0.0/16 ${bad[0]}${forgedLine}`, Backend: { Type: `alloc${bad[1]}` } }));
    daemon = startDaemon(['--etcd-endpoints', etcd.endpoint, '--iface', 'lo', '--public-ip', '198.18.0.3',
      '--iptables-forward-rules=false', '--subnet-file', path.join(dir, 'subnet.env')]);
    const d = daemon;
    watch = setInterval(() => {
      for (const name of descendantNames(d.pid)) descendantsSeen.add(name);
    }, 100);
    await waitFor('the config to be refused', () => /network config at \S+ is invalid/.test(d.output()), 10_000);
    await sleep(1500);
    expect(d.output().match(/network config at \S+ is invalid/g)).to.have.length(1);
    expect(await stillRunning(d)).to.equal(true);
  });

  it('takes a valid config whose unknown fields hold shell syntax, line breaks and 100 kB strings as data', async () => {
    const bad = attack();
    const config: Record<string, unknown> = {
      Network: '10.244.0.0/16',
      Backend: { Type: 'alloc', Comment: bad.join(' '), [`Name${bad[2]}`]: bad[3] },
      [`Description${forgedLine}${bad[4]}`]: bad[5],
      Padding: 'A'.repeat(100_000) + bad[6],
    };
    for (const [i, p] of bad.slice(7).entries()) config[`x${i}${p}`] = p;
    await admin.put(`${PREFIX}/config`).value(JSON.stringify(config));
    // Matched at the start of a line: the forged text appears too, quoted, inside warnings.
    await waitFor('twilld running', () => /^\S+ INFO  twilld running /m.test(daemon.output()), 15_000);
    expect(readFileSync(path.join(dir, 'subnet.env'), 'utf8')).to.match(/^FLANNEL_NETWORK=10\.244\.0\.0\/16\nFLANNEL_SUBNET=10\.244\.\d+\.1\/24\n/);
  });

  it('skips leases with hostile keys or values with a warning, keeps hostile opaque data as data, and takes the good leases', async () => {
    const d = daemon;
    await waitFor('the listed good lease', () => d.output().includes('lease added subnet=10.244.200.0/24'), 10_000);
    for (const [k, v] of watched) await lease(k, v);
    await lease('10.244.201.0-24', ip('198.18.0.201'));
    await waitFor('the watched good lease', () => d.output().includes('lease added subnet=10.244.201.0/24'), 10_000);

    const out = d.output();
    expect(out).to.contain('lease added subnet=10.244.180.0/24 publicIP=198.18.0.180');
    for (const [key] of [...listed, ...watched]) {
      expect(out, `a warning for ${JSON.stringify(key.slice(0, 40))}`).to.contain(`skipping lease ${JSON.stringify(key.slice(0, 80))}`);
    }
    for (const n of [150, 151, 152, 153, 154, 155, 156, 157, 158, 160, 190, 191, 192]) expect(out).to.not.contain(`lease added subnet=10.244.${n}.0/24`);
    expect(await stillRunning(d)).to.equal(true);
  });

  it('ran no shell: no marker file exists, no shell was ever its descendant, no log line was forged', async () => {
    if (watch) clearInterval(watch);
    watch = undefined;
    expect(await daemon.stop('SIGTERM')).to.equal(0);
    expect(markers.length).to.be.at.least(22);
    expect(markers.filter((m) => existsSync(m)), 'marker files a shell would have created').to.deep.equal([]);
    expect([...descendantsSeen].filter((n) => SHELLS.has(n)), `descendants seen: ${[...descendantsSeen].join(', ')}`).to.deep.equal([]);
    const forged = daemon.output().split('\n').filter((l) => l.startsWith(`FORGED-${tag}`));
    expect(forged, 'log lines begun by a value from etcd').to.deep.equal([]);
  });
});

describe('twill\'s compiled code starts processes only with argument arrays', () => {
  const dist = path.resolve(__dirname, '../..');
  const files = ['lib', 'cmd', 'backends'].flatMap((d) => jsFiles(path.join(dist, d)));

  it('never calls child_process.exec/execSync (always a shell) nor passes shell: true', () => {
    expect(files.length, `compiled files under ${dist}`).to.be.greaterThan(20);
    const offences: string[] = [];
    let users = 0;
    for (const file of files) {
      const code = readFileSync(file, 'utf8');
      const use = childProcessUse(code);
      if (use.modules.length === 0 && use.named.length === 0) continue;
      users++;
      const rel = path.relative(dist, file);
      for (const name of use.named) if (name === 'exec' || name === 'execSync') offences.push(`${rel}: { ${name} } = require("child_process")`);
      for (const b of use.modules) {
        for (const m of code.matchAll(new RegExp(`\\b${b}\\.(exec|execSync)\\b`, 'g'))) offences.push(`${rel}: ${m[0]}`);
      }
      for (const m of code.matchAll(/\bshell\s*:\s*(?!false\b)[^,}\s]+/g)) offences.push(`${rel}: ${m[0]}`);
      for (const m of code.matchAll(/(["'`])(?:\/bin\/|\/usr\/bin\/)?(?:ba|da|z)?sh\1\s*,\s*\[\s*(["'`])-c\2/g)) offences.push(`${rel}: ${m[0]}`);
    }
    expect(users, 'files that use child_process (the scan must see them)').to.be.greaterThan(0);
    expect(offences).to.deep.equal([]);
  });
});

/** Names of every process below `pid` (children, grandchildren, …), read from /proc. */
function descendantNames(pid: number): string[] {
  const parentOf = new Map<number, { ppid: number; name: string }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      parentOf.set(Number(entry), { ppid, name });
    } catch {
      // gone meanwhile
    }
  }
  const names: string[] = [];
  for (const info of parentOf.values()) {
    for (let up = info.ppid, hops = 0; up > 1 && hops < 64; up = parentOf.get(up)?.ppid ?? 0, hops++) {
      if (up === pid) {
        names.push(info.name);
        break;
      }
    }
  }
  return names;
}

function jsFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return jsFiles(p);
    return p.endsWith('.js') ? [p] : [];
  });
}

/**
 * How compiled CommonJS holds child_process: identifiers bound to the module
 * (`const child_process_1 = require("child_process")`) and names taken from
 * it by destructuring.
 */
function childProcessUse(code: string): { modules: string[]; named: string[] } {
  const req = String.raw`require\(["'](?:node:)?child_process["']\)`;
  const modules = [...code.matchAll(new RegExp(String.raw`(?:const|let|var)\s+(\w+)\s*=\s*(?:__importStar\(|__importDefault\()?` + req, 'g'))].map((m) => m[1]);
  const named = [...code.matchAll(new RegExp(String.raw`(?:const|let|var)\s*\{([^}]*)\}\s*=\s*` + req, 'g'))]
    .flatMap((m) => m[1].split(',').map((s) => s.trim().split(':')[0].trim()));
  return { modules, named };
}

/** Whether the process is still running (an exit already seen wins the race). */
async function stillRunning(d: DaemonProcess): Promise<boolean> {
  return (await Promise.race([d.exited(), sleep(0).then(() => 'running')])) === 'running';
}
