import { expect } from 'chai';
import { execFile, spawn } from 'child_process';
import { readFileSync, existsSync } from 'fs';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '../../..');
const TWILL = path.join(ROOT, 'dist/cmd/twill.js');

interface Ran { code: number | null; out: string }

function sh(argv: string[], timeoutMs = 240_000): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

const twill = (...args: string[]) => sh([process.execPath, TWILL, ...args]);

function labObjects(): Promise<string> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'list'], (_e, ns) => execFile('ip', ['-o', 'link', 'show'], (_e2, links) =>
      resolve([...String(ns).split('\n'), ...String(links).split('\n')].filter((l) => l.includes('twlab')).join('\n'))));
  });
}

/** The first command of the README's quick start, exactly as written there. */
function readmeQuickstart(): string {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const block = /## Quick start[^\n]*\n+```sh\n([\s\S]*?)```/.exec(readme);
  if (!block) throw new Error('README.md has no quick start block');
  return block[1].split('\n')[0].replace(/\s+#.*$/, '').trim();
}

describe('twill lab: the README quick start, status, exec and down', function () {
  this.timeout(300_000);

  after(async () => {
    await twill('lab', 'down');
  });

  it('runs the README\'s first command as written and prints an all-ok connectivity matrix', async () => {
    const command = readmeQuickstart();
    expect(command).to.equal('npm run lab');
    const r = await sh(['bash', '-c', command]);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.contain('[5/5] connectivity matrix');
    const rows = r.out.split('\n').filter((l) => /^pod\d /.test(l));
    expect(rows, r.out).to.have.length(3);
    for (const row of rows) expect((row.match(/ok \d+\.\d+ms/g) ?? []).length, row).to.equal(2);
  });

  it('refuses a second lab while one is up', async () => {
    const r = await twill('lab', 'up');
    expect(r.code).to.equal(1);
    expect(r.out).to.contain('a lab is already up');
  });

  it('shows status with every process running and runs commands inside nodes and pods', async () => {
    const status = await twill('lab', 'status');
    expect(status.code, status.out).to.equal(0);
    expect((status.out.match(/twilld pid \d+ running/g) ?? []).length).to.equal(3);
    const routes = await twill('lab', 'exec', 'node0', '--', 'ip', 'route');
    expect(routes.code).to.equal(0);
    expect(routes.out).to.match(/via 10\.244\.\d+\.0 dev flannel\.1 proto 117 onlink/);
    const bad = await twill('lab', 'exec', 'node9', '--', 'true');
    expect(bad.code).to.equal(1);
    expect(bad.out).to.contain('no node9 in this lab');
  });

  it('cleans up after a lab whose processes were killed, leaving no namespace, process or device', async () => {
    const state = JSON.parse(readFileSync('/run/twill-lab/state.json', 'utf8')) as { etcd: { pid: number }; agents: { pid: number }[] };
    const pids = [state.etcd.pid, ...state.agents.map((a) => a.pid)];
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    const r = await twill('lab', 'down');
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.match(/removed: \d+ processes, 6 namespaces/);
    expect(await labObjects()).to.equal('');
    for (const pid of pids) expect(existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')), `pid ${pid}`).to.equal(false);
    expect(existsSync('/run/twill-lab')).to.equal(false);
    const again = await twill('lab', 'down');
    expect(again.out).to.contain('no lab to remove');
  });
});
