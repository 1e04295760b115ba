/**
 * One lean process per node: a vxlan node runs twilld and nothing else of
 * Node.js (its kernel notifications are read in its own process), and a
 * flood of kernel notifications that overflows that socket neither stops
 * the agent nor leaves the kernel wrong.
 *
 * Two nodes on vxlan in the test's own namespaces (198.18.0.0/24 underlay,
 * 10.244.0.0/16 pods); the flood is 4000 routes on 10.244.128.0/17 added and
 * removed inside node 0's namespace with `ip -batch`.
 */
import { expect } from 'chai';
import { readFileSync, readdirSync, readlinkSync, statSync, writeFileSync, mkdtempSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TwillCluster } from '../harness/twill-cluster';
import { ipIn, isAlive, nsArgv, run } from '../harness/netns';
import { waitFor } from '../harness/wait';

/** Every descendant of `pid` (children of each of its threads, recursively). */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number): void => {
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      return; // gone
    }
    for (const tid of tids) {
      let children = '';
      try {
        children = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const c of children.split(/\s+/).filter(Boolean).map(Number)) {
        out.push(c);
        walk(c);
      }
    }
  };
  walk(pid);
  return out;
}

/** Whether `pid` runs the Node.js binary. */
function isNode(pid: number): boolean {
  try {
    const exe = readlinkSync(`/proc/${pid}/exe`);
    return exe === process.execPath || path.basename(exe) === 'node';
  } catch {
    return false;
  }
}

describe('one lean twilld process per node (vxlan)', function () {
  this.timeout(180_000);
  let tc: TwillCluster | undefined;
  let dir: string | undefined;
  const savedRcvbuf = process.env.TWILL_NETLINK_EVENT_RCVBUF;

  before(async function () {
    // The agents inherit this: a 4 KiB notification socket (the kernel
    // doubles it) that any burst overflows.
    process.env.TWILL_NETLINK_EVENT_RCVBUF = '4096';
    try {
      tc = await TwillCluster.create({
        nodes: 2,
        config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } },
        // Repairs come from kernel events (or their loss), not from the timer.
        agentArgs: ['--repair-interval', '3600'],
      });
    } finally {
      if (savedRcvbuf === undefined) delete process.env.TWILL_NETLINK_EVENT_RCVBUF;
      else process.env.TWILL_NETLINK_EVENT_RCVBUF = savedRcvbuf;
    }
    dir = mkdtempSync(path.join(os.tmpdir(), 'twill-lean-'));
  });

  after(async function () {
    await tc?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs exactly one Node.js process: twilld, with no child process', function () {
    for (const node of [0, 1]) {
      const agent = tc!.agents.get(node)!;
      expect(isNode(agent.pid), `twilld on node ${node} is a Node.js process`).to.equal(true);
      const nodes = [agent.pid, ...descendants(agent.pid)].filter(isNode);
      expect(nodes, `Node.js processes in twilld's tree on node ${node}`).to.deep.equal([agent.pid]);
    }
  });

  it("holds its bundle's text in the file's pages, not as a copy in its heap", function () {
    const agent = tc!.agents.get(0)!;
    const maps = readFileSync(`/proc/${agent.pid}/maps`, 'utf8').split('\n');
    const bundle = maps.filter((l) => l.endsWith('/dist/cmd/twilld.bundle.js'));
    expect(bundle, 'twilld.bundle.js mapped into twilld').to.have.length(1);
    expect(bundle[0].split(/\s+/)[1], 'read-only, private').to.equal('r--p');
  });

  it('writes its tunnel guard, then does not keep libnftables loaded while idle', async function () {
    const agent = tc!.agents.get(0)!;
    const guard = (await run(nsArgv(tc!.nodeNs(0), ['nft', 'list', 'table', 'ip', 'twill_guard']))).stdout;
    expect(guard, 'the guard table in node 0').to.include('table ip twill_guard');
    // Repairs run every hour here, so nothing asks for nftables after start-up; the library is closed 1 s after its last command.
    await waitFor('libnftables unmapped from twilld', () => !readFileSync(`/proc/${agent.pid}/maps`, 'utf8').includes('libnftables'), 5000);
  });

  it('shares at most two malloc arenas among its threads', function () {
    const agent = tc!.agents.get(0)!;
    // A glibc arena besides the main one is a 64 MB-aligned 64 MB reservation: an anonymous
    // read-write part in use, then the inaccessible rest.
    const HEAP = 64n * 1024n * 1024n;
    const maps = readFileSync(`/proc/${agent.pid}/maps`, 'utf8').split('\n').map((l) => /^([0-9a-f]+)-([0-9a-f]+) (\S+) 00000000 00:00 0\s*$/.exec(l)).filter((m) => m !== null)
      .map((m) => ({ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), perms: m[3] }));
    const arenas = maps.filter((m, i) => m.perms === 'rw-p' && m.start % HEAP === 0n && maps[i + 1]?.start === m.end && maps[i + 1].perms === '---p' && maps[i + 1].end === m.start + HEAP);
    const threads = readdirSync(`/proc/${agent.pid}/task`).length;
    expect(threads, 'twilld has helper threads').to.be.greaterThan(4);
    expect(arenas.length, `malloc arenas of twilld's ${threads} threads besides the main one`).to.be.at.most(1);
  });

  it('survives an overflow of its kernel notifications and puts back a route whose deletion was lost', async function () {
    const ns = tc!.nodeNs(0);
    const agent = tc!.agents.get(0)!;
    const peerSubnet = tc!.lease(1).subnet;
    const routes = async (): Promise<string> => ipIn(ns, ['route', 'show', 'dev', 'flannel.1']);
    await waitFor(`node 0 routes ${peerSubnet}`, async () => (await routes()).includes(peerSubnet), 20_000);

    // 4000 routes on eth0 (not the agent's), added and removed; the peer's
    // route is deleted in the middle of the removals.
    const add: string[] = [];
    const del: string[] = [];
    for (let i = 0; i < 4000; i++) {
      const dst = `10.244.${128 + (i >> 6)}.${(i & 63) * 4}/30`;
      add.push(`route add ${dst} dev eth0`);
      del.push(`route del ${dst} dev eth0`);
    }
    del.splice(2000, 0, `route del ${peerSubnet} dev flannel.1`);
    const addFile = path.join(dir!, 'add.batch');
    const delFile = path.join(dir!, 'del.batch');
    writeFileSync(addFile, add.join('\n') + '\n');
    writeFileSync(delFile, del.join('\n') + '\n');
    // twilld is stopped while the kernel queues the notifications, so its
    // socket certainly overflows, and the peer route's deletion is among
    // those lost: only the resync that follows can bring the route back.
    process.kill(agent.pid, 'SIGSTOP');
    try {
      await ipIn(ns, ['-batch', addFile]);
      await ipIn(ns, ['-batch', delFile]);
    } finally {
      process.kill(agent.pid, 'SIGCONT');
      // Nothing of the flood may stay behind, even if a batch failed half way.
      const left = (await ipIn(ns, ['route', 'show', '10.244.128.0/17', 'dev', 'eth0']).catch(() => '')).trim();
      for (const line of left.split('\n').filter(Boolean)) {
        await ipIn(ns, ['route', 'del', line.split(' ')[0], 'dev', 'eth0']).catch(() => undefined);
      }
    }

    await waitFor(`node 0 to route ${peerSubnet} again`, async () => (await routes()).includes(peerSubnet), 20_000);
    expect(await isAlive(agent.pid), 'twilld still runs').to.equal(true);
    expect(agent.exitedWith, tc!.logs(0)).to.equal(null);
    expect([agent.pid, ...descendants(agent.pid)].filter(isNode)).to.deep.equal([agent.pid]);
    expect(tc!.logs(0)).to.not.match(/terminate called|Aborted|SIGABRT|event process exited/);
    // Any reconcile of the burst may be the one that puts the route back (a
    // deletion event that got through runs one too), so the loss is read
    // from its own line, which may follow the route by a moment.
    const lost = 'kernel notifications were lost; reconciling against the whole kernel state';
    await waitFor('the agent to say it lost notifications', () => tc!.logs(0).includes(lost), 5_000);
    expect(tc!.logs(0)).to.match(/WARN +kernel notifications were lost; reconciling against the whole kernel state why="notifications were lost \(the socket receive buffer overflowed\)"/);
  });

  it('writes a code cache once running, starts from it the next time, and runs without one where it cannot write', async function () {
    const cacheDir = path.join(dir!, 'code-cache');
    const start = async (env: Record<string, string>): Promise<string> => {
      await tc!.stopAgent(1);
      await tc!.startAgent(1, [], { env });
      return tc!.logs(1);
    };
    const cold = await start({ TWILL_CODE_CACHE_DIR: cacheDir });
    expect(cold).to.include('not using a code cache: no cache for this build yet');
    await waitFor('twilld to write its code cache', () => tc!.logs(1).includes('wrote the code cache for the next start'), 10_000);
    const file = /wrote the code cache for the next start file=(\S+)/.exec(tc!.logs(1))![1];
    expect(path.dirname(file)).to.equal(cacheDir);
    expect(statSync(file).size, 'the cache holds the compiled bundle').to.be.above(100_000);

    const warm = await start({ TWILL_CODE_CACHE_DIR: cacheDir });
    expect(warm).to.include(`compiled code read from the code cache file=${file}`);
    const peerSubnet = tc!.lease(0).subnet;
    await waitFor(`node 1, started from the cache, to route ${peerSubnet}`, async () => (await ipIn(tc!.nodeNs(1), ['route', 'show', 'dev', 'flannel.1'])).includes(peerSubnet), 20_000);

    // A file where the directory should be: the agent runs, and says the next start will compile again.
    const blocked = path.join(dir!, 'not-a-directory');
    writeFileSync(blocked, '');
    await start({ TWILL_CODE_CACHE_DIR: blocked });
    await waitFor('twilld to report it cannot write the code cache', () => tc!.logs(1).includes('cannot write the code cache; the next start compiles everything again'), 10_000);
    expect(tc!.agents.get(1)!.exitedWith).to.equal(null);
  });
});
