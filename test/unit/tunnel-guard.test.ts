/**
 * The tunnel guard without a kernel: the rules planned for each intake
 * (kernel ipip cannot run here, so its rule is checked as text), the diff
 * that keeps counters, nft's JSON listing read back, and the controller's
 * logging and failure behaviour with a fake nft.
 */
import { expect } from 'chai';
import { IPNet } from '../../lib/ip';
import type { Lease } from '../../lib/subnet';
import { ipipIntake, udpIntake, vxlanIntake } from '../../backends/intake';
import { guardDifferences, guardPeers, guardScript, planGuard, seenAfterApplying, type GuardPeer, type GuardState, type SeenGuard } from '../../lib/guard/plan';
import { parseGuardListing } from '../../lib/guard/listing';
import { GuardTable, GuardUnavailableError } from '../../lib/guard/guard-table';
import { FULL_READ_MS, GuardController, SPOOF_LOG_INTERVAL_MS } from '../../lib/agent/guard-controller';
import { AgentMetrics } from '../../lib/observe/metrics';
import { MemoryLog } from '../harness/memory-log';
import { checkGuard } from '../../lib/diagnose/guard-check';
import { Findings } from '../../lib/diagnose/findings';

const peer = (n: number, publicIP = `198.18.0.${n}`): GuardPeer => ({ key: `10.244.${n}.0-24`, publicIP, subnet: IPNet.parse(`10.244.${n}.0/24`) });
const lease = (n: number, publicIP = `198.18.0.${n}`): Lease => ({
  key: `10.244.${n}.0-24`, subnet: IPNet.parse(`10.244.${n}.0/24`), modRevision: 1n, attrs: { publicIP, publicIPv6: null },
});

/** What the kernel would hold after applying `want` exactly, with these per-peer packet counts. */
function seenAs(want: GuardState, packets: Record<string, number> = {}): SeenGuard {
  const seen = seenAfterApplying(want);
  const peers = seen.sets.get('peers')!;
  return { ...seen, sets: new Map([...seen.sets, ['peers', { ...peers, packets: new Map(want.peers.map((p) => [p, packets[p] ?? 0])) }]]) };
}

describe('tunnel guard', () => {
  describe('plan', () => {
    it('matches each intake where its inner IPv4 source is: vxlan after UDP+VXLAN+Ethernet (IPv4 frames only), ipip at once; udp\'s is left to its engine', () => {
      const want = planGuard([peer(2)], [vxlanIntake(8472), udpIntake(8285), ipipIntake()])!;
      const rules = want.input.map((r) => r.text);
      expect(rules).to.deep.equal([
        'ip protocol 4 ip saddr != @peers counter name "unknown_ipip" drop',
        'ip protocol 4 ip saddr . @th,96,32 != @subnets counter name "spoofed_ipip" goto spoofed',
        'udp dport 8285 ip saddr != @peers counter name "unknown_udp" drop',
        'udp dport 8472 ip saddr != @peers counter name "unknown_vxlan" drop',
        'udp dport 8472 @th,224,16 0x0800 ip saddr . @th,336,32 != @subnets counter name "spoofed_vxlan" goto spoofed',
        // IPv6 inside the IPv4 underlay: the inner IPv6 source (128 bits after 8) in the peer's IPv6 subnet, or none at all.
        'udp dport 8472 @th,224,16 0x86dd ip saddr . @th,304,128 != @other_subnets counter name "spoofed_vxlan" goto spoofed',
      ]);
      expect(want.subnets).to.deep.equal([`198.18.0.2 . ${0x0af40200}-${0x0af402ff}`]);
      expect(want.counters).to.deep.equal(['unknown_ipip', 'spoofed_ipip', 'unknown_udp', 'unknown_vxlan', 'spoofed_vxlan']);
    });

    it('follows a backend\'s Port, and lists two instances of one type (a Port migration) once each', () => {
      const want = planGuard([], [vxlanIntake(4789), vxlanIntake(8472), vxlanIntake(4789)])!;
      expect(want.input.filter((r) => r.text.startsWith('udp dport 4789'))).to.have.length(3);
      expect(want.input.filter((r) => r.text.startsWith('udp dport 8472'))).to.have.length(3);
      expect(want.counters).to.deep.equal(['unknown_vxlan', 'spoofed_vxlan']);
    });

    it('plans the IPv6 table from the IPv6 intake only: peers by PublicIPv6, the inner IPv6 source (128 bits) in the IPv6 subnet', () => {
      const p6 = (n: number, publicIPv6 = `fd00:198:18:0:0:0:0:${n}`): GuardPeer => ({ ...peer(n), publicIPv6, ipv6Subnet: IPNet.parse(`fd00:10:244:${n}::/64`) });
      const intakes = [vxlanIntake(8472), vxlanIntake(8472, 6)];
      const want = planGuard([p6(2), peer(3), p6(4, 'fd00::4 } ; flush ruleset ; {')], intakes, 6)!;
      expect(want.family).to.equal(6);
      expect(want.input.map((r) => r.text)).to.deep.equal([
        'udp dport 8472 ip6 saddr != @peers counter name "unknown_vxlan" drop',
        'udp dport 8472 @th,224,16 0x86dd ip6 saddr . @th,304,128 != @subnets counter name "spoofed_vxlan" goto spoofed',
        'udp dport 8472 @th,224,16 0x0800 ip6 saddr . @th,336,32 != @other_subnets counter name "spoofed_vxlan" goto spoofed',
      ]);
      expect(want.input[0].comment).to.equal('vxlan udp/8472 over IPv6 unknown source');
      expect(want.peers, 'RFC 5952 form, as nft prints it; the IPv4-only peer is left out').to.deep.equal(['fd00:198:18::2']);
      expect(want.otherSubnets, 'IPv4 inside IPv6: the peer\'s IPv4 subnet').to.deep.equal([`fd00:198:18::2 . ${0x0af40200}-${0x0af402ff}`]);
      const v4 = planGuard([p6(2), peer(3)], intakes, 4)!;
      expect(v4.otherSubnets, 'IPv6 inside IPv4: only peers with an IPv6 subnet may send it').to.deep.equal([`198.18.0.2 . ${0xfd000010024400020000000000000000n}-${0xfd00001002440002ffffffffffffffffn}`]);
      expect(want.skipped).to.have.length(1);
      expect(want.skipped[0]).to.contain('10.244.4.0-24').and.to.contain('over IPv6');
      const script = guardScript(want, undefined)!;
      expect(script).to.not.contain('flush ruleset');
      expect(script).to.contain('add table ip6 twill_guard');
      expect(script).to.contain('add set ip6 twill_guard peers { type ipv6_addr; counter; }');
      expect(script).to.contain('add element ip6 twill_guard subnets { fd00:198:18::2 . 0xfd000010024400020000000000000000-0xfd00001002440002ffffffffffffffff }');
      expect(script).to.contain('add rule ip6 twill_guard spoofed ip6 saddr @peers comment "count per peer"');
      expect(script).to.contain('add set ip6 twill_guard other_subnets { typeof ip6 saddr . @th,96,32; flags interval; }');
      expect(script).to.contain('add element ip6 twill_guard other_subnets { fd00:198:18::2 . 0x0af40200-0x0af402ff }');
      expect(planGuard([p6(2)], intakes, 4)!.input.every((r) => !r.text.includes('ip6'))).to.equal(true);
      expect(planGuard([p6(2)], [vxlanIntake(8472)], 6), 'no IPv6 intake: no IPv6 table').to.equal(undefined);
    });

    it('plans nothing when no running backend receives tunnels (host-gw)', () => {
      expect(planGuard([peer(2)], [])).to.equal(undefined);
    });

    it('refuses a peer whose public IP is not a plain IPv4 address, naming it, and never puts it in the script', () => {
      const want = planGuard([peer(2), peer(3, '198.18.0.3 } ; flush ruleset ; {')], [vxlanIntake(8472)])!;
      expect(want.peers).to.deep.equal(['198.18.0.2']);
      expect(want.skipped).to.have.length(1);
      expect(want.skipped[0]).to.contain('10.244.3.0-24');
      expect(guardScript(want, undefined)).to.not.contain('flush ruleset');
    });

    it('takes the peers the lease filter takes: not this node, not one claiming its address, not one without an address', () => {
      const own = lease(1);
      const peers = guardPeers(own, [own, lease(2), lease(3, '198.18.0.1'), lease(4, '0.0.0.0')]);
      expect(peers.map((p) => p.key)).to.deep.equal(['10.244.2.0-24']);
    });
  });

  describe('diff', () => {
    const want = planGuard([peer(2), peer(3)], [vxlanIntake(8472)])!;

    it('creates the whole table in one script when there is none', () => {
      const script = guardScript(want, undefined)!;
      expect(script.split('\n')[0]).to.equal('add table ip twill_guard');
      expect(script).to.contain('add element ip twill_guard peers { 198.18.0.2, 198.18.0.3 }');
      expect(script).to.contain('add element ip twill_guard subnets { 198.18.0.2 . 0x0af40200-0x0af402ff, 198.18.0.3 . 0x0af40300-0x0af403ff }');
    });

    it('writes nothing when the kernel holds the plan', () => {
      expect(guardScript(want, seenAs(want))).to.equal(undefined);
    });

    it('changes only the elements of a peer that left: no flush that would reset counters', () => {
      const next = planGuard([peer(2)], [vxlanIntake(8472)])!;
      expect(guardScript(next, seenAs(want))).to.equal(
        'delete element ip twill_guard peers { 198.18.0.3 }\n' +
        'delete element ip twill_guard subnets { 198.18.0.3 . 0x0af40300-0x0af403ff }\n');
    });

    it('adds the set and rule for the other family to a table from before them, keeping its counters', () => {
      const old = seenAs(want);
      const before: SeenGuard = {
        ...old,
        sets: new Map([...old.sets].filter(([name]) => name !== 'other_subnets')),
        chains: new Map([...old.chains].map(([name, c]) => [name, name === 'input' ? { ...c, comments: c.comments.filter((x) => !x.includes('IPv6')) } : c])),
      };
      const lines = guardScript(want, before)!.trim().split('\n');
      expect(lines).to.include('add set ip twill_guard other_subnets { typeof ip saddr . @th,96,128; flags interval; }');
      expect(lines).to.include('flush chain ip twill_guard input');
      expect(lines.some((l) => l.startsWith('add table') || l.startsWith('delete') || l.startsWith('add counter'))).to.equal(false);
    });

    it('refills a chain whose rules someone changed, and deletes counters of an intake that is gone after the rules that use them', () => {
      const next = planGuard([peer(2), peer(3)], [udpIntake(8285)])!;
      const lines = guardScript(next, seenAs(want))!.trim().split('\n');
      expect(lines).to.not.include('flush table ip twill_guard');
      const flush = lines.indexOf('flush chain ip twill_guard input');
      expect(flush).to.be.greaterThan(-1);
      expect(lines.indexOf('delete counter ip twill_guard unknown_vxlan')).to.be.greaterThan(flush);
      expect(lines).to.include('add counter ip twill_guard unknown_udp');
    });
  });

  describe('nft listing', () => {
    it('reads counters, elements (ranges as integers) with their per-peer counts, and rule comments', () => {
      const seen = parseGuardListing(JSON.stringify({ nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'ip', name: 'twill_guard' } },
        { counter: { family: 'ip', name: 'unknown_vxlan', table: 'twill_guard', packets: 3, bytes: 210 } },
        { set: { name: 'peers', type: 'ipv4_addr', elem: [{ elem: { val: '198.18.0.2', counter: { packets: 4, bytes: 280 } } }] } },
        { set: { name: 'subnets', type: ['ipv4_addr', 'integer'], elem: [{ concat: ['198.18.0.2', { range: [183763456, 183763711] }] }] } },
        { chain: { name: 'input', hook: 'input', prio: -10 } },
        { rule: { chain: 'input', comment: 'vxlan udp/8472 unknown source', expr: [] } },
        { rule: { chain: 'input', expr: [] } },
      ] }));
      expect(seen.counters.get('unknown_vxlan')).to.deep.equal({ packets: 3, bytes: 210 });
      expect(seen.sets.get('peers')!.packets.get('198.18.0.2')).to.equal(4);
      expect(seen.sets.get('subnets')!.elements).to.deep.equal(['198.18.0.2 . 183763456-183763711']);
      expect(seen.chains.get('input')).to.deep.equal({ hook: 'input', comments: ['vxlan udp/8472 unknown source', ''] });
    });

    it('reads the IPv6 subnets set, whose 128-bit ranges nft prints as hex strings, as the plan writes it', () => {
      const p6: GuardPeer = { ...peer(2), publicIPv6: 'fd00:198:18::2', ipv6Subnet: IPNet.parse('fd00:10:244:2::/64') };
      const want = planGuard([p6], [vxlanIntake(8472, 6)], 6)!;
      const seen = parseGuardListing(JSON.stringify({ nftables: [
        { table: { family: 'ip6', name: 'twill_guard' } },
        ...want.counters.map((name) => ({ counter: { name, packets: 0, bytes: 0 } })),
        { set: { name: 'peers', type: 'ipv6_addr', elem: [{ elem: { val: 'fd00:198:18::2', counter: { packets: 1, bytes: 90 } } }] } },
        { set: { name: 'subnets', type: ['ipv6_addr', 'integer'], elem: [{ concat: ['fd00:198:18::2', { range: ['0xfd000010024400020000000000000000', '0xfd00001002440002ffffffffffffffff'] }] }] } },
        // nft prints a range that is a whole prefix as one: 10.244.2.0/24 as an integer prefix, 32 bits wide here.
        { set: { name: 'other_subnets', type: ['ipv6_addr', 'integer'], elem: [{ concat: ['fd00:198:18::2', { prefix: { addr: 0x0af40200, len: 24 } }] }] } },
        { chain: { name: 'input', hook: 'input' } },
        { chain: { name: 'spoofed' } },
        ...want.input.map((r) => ({ rule: { chain: 'input', comment: r.comment } })),
        ...want.spoofed.map((r) => ({ rule: { chain: 'spoofed', comment: r.comment } })),
      ] }));
      expect(guardDifferences(want, seen)).to.deep.equal([]);
      expect(guardScript(want, seen)).to.equal(undefined);
    });

    it('refuses text that is not nft JSON, saying so', () => {
      expect(() => parseGuardListing('table ip twill_guard {')).to.throw(/tunnel guard table: not JSON/);
    });
  });

  describe('controller', () => {
    /** A fake nft holding one listing; records the scripts written. */
    function fakeNft(state: { listing?: string; missing?: boolean; v6?: boolean; scripts: string[] }) {
      return async (args: readonly string[], stdin?: string): Promise<string> => {
        if (state.missing) throw new GuardUnavailableError('the nft command is not installed');
        if (args[0] === '-f') {
          state.scripts.push(stdin ?? '');
          return '';
        }
        // The listing is the IPv4 table's; there is no IPv6 one unless a test says so.
        if (state.listing === undefined || (args.includes('ip6') && !state.v6)) throw new Error(`nft ${args.join(' ')} failed: Error: No such file or directory`);
        return state.listing;
      };
    }
    const listingWith = (spoofed: number) => JSON.stringify({ nftables: [
      { table: { name: 'twill_guard' } },
      { counter: { name: 'spoofed_vxlan', packets: spoofed, bytes: 0 } },
      { set: { name: 'peers', elem: [{ elem: { val: '198.18.0.2', counter: { packets: spoofed, bytes: 0 } } }] } },
    ] });

    it('warns about a spoofing peer by its address at most once a minute, with the count since the last warning', async () => {
      const state = { listing: listingWith(0), scripts: [] as string[] };
      const log = new MemoryLog();
      let now = 1_000_000;
      const guard = new GuardController({ enabled: true, log, metrics: new AgentMetrics(), table: new GuardTable(fakeNft(state)), now: () => now });
      const apply = () => guard.apply([peer(2)], [vxlanIntake(8472)]);
      const warnings = () => log.messages('warn').filter((m) => m.includes('inner source lies outside'));
      await apply();
      expect(warnings()).to.deep.equal([]);
      state.listing = listingWith(1);
      await apply(); // at once, as the call after a reconcile's routes: the table just read is not read again
      expect(warnings()).to.deep.equal([]);
      state.listing = listingWith(0);
      state.listing = listingWith(2);
      now += 1000; // a repair interval later
      await apply();
      expect(warnings()).to.have.length(1);
      expect(warnings()[0]).to.contain('dropped 2 packet(s) from peer 198.18.0.2').and.to.contain('10.244.2.0/24');
      state.listing = listingWith(5);
      now += SPOOF_LOG_INTERVAL_MS / 2;
      await apply();
      expect(warnings()).to.have.length(1);
      now += SPOOF_LOG_INTERVAL_MS / 2;
      await apply();
      expect(warnings()).to.have.length(2);
      expect(warnings()[1]).to.contain('dropped 3 packet(s)');
    });

    it('plans again when the intakes or the peers change, though the agent hands it the same peer list while the leases stand', async () => {
      const state = { listing: listingWith(0), scripts: [] as string[] };
      let now = 0;
      const guard = new GuardController({ enabled: true, log: new MemoryLog(), metrics: new AgentMetrics(), table: new GuardTable(fakeNft(state)), now: () => now });
      const peers = [peer(2)];
      await guard.apply(peers, [vxlanIntake(8472)]);
      expect(state.scripts.at(-1)).to.contain('8472').and.not.contain('8285');
      now += 1000;
      await guard.apply(peers, [vxlanIntake(8472), udpIntake(8285)]);
      expect(state.scripts.at(-1), 'a backend that started receiving').to.contain('8285');
      now += 1000;
      await guard.apply([...peers, peer(3)], [vxlanIntake(8472), udpIntake(8285)]);
      expect(state.scripts.at(-1), 'a peer that joined').to.contain('198.18.0.3');
    });

    it('admits a peer that joined with one write of what it lacks, without reading the table first', async () => {
      const state = { listing: listingWith(0), scripts: [] as string[], reads: 0 };
      const nft = fakeNft(state);
      const counting = async (args: readonly string[], stdin?: string): Promise<string> => {
        if (args[0] !== '-f') state.reads++;
        return nft(args, stdin);
      };
      const guard = new GuardController({ enabled: true, log: new MemoryLog(), metrics: new AgentMetrics(), table: new GuardTable(counting) });
      await guard.apply([peer(2)], [vxlanIntake(8472)]);
      const before = { reads: state.reads, writes: state.scripts.length };
      await guard.apply([peer(2), peer(3)], [vxlanIntake(8472)], { onlyToAdmit: true });
      expect(state.reads - before.reads, 'reads').to.equal(0);
      expect(state.scripts.slice(before.writes)).to.deep.equal([
        'add element ip twill_guard peers { 198.18.0.3 }\nadd element ip twill_guard subnets { 198.18.0.3 . 0x0af40300-0x0af403ff }\n',
      ]);
    });

    it('reads the table and writes the whole plan when admitting onto what it applied last is refused', async () => {
      const state: { listing?: string; scripts: string[]; refuse: boolean } = { listing: listingWith(0), scripts: [], refuse: false };
      const nft = fakeNft(state);
      const refusing = async (args: readonly string[], stdin?: string): Promise<string> => {
        if (state.refuse && args[0] === '-f' && !stdin?.includes('add table')) {
          state.refuse = false;
          throw new Error('nft -f - failed: Error: Could not process rule: No such file or directory');
        }
        return nft(args, stdin);
      };
      const log = new MemoryLog();
      const guard = new GuardController({ enabled: true, log, metrics: new AgentMetrics(), table: new GuardTable(refusing) });
      await guard.apply([peer(2)], [vxlanIntake(8472)]);
      // Someone deleted the table: the listing finds none, and the admit's element script is refused.
      state.listing = undefined;
      state.refuse = true;
      await guard.apply([peer(2), peer(3)], [vxlanIntake(8472)], { onlyToAdmit: true });
      expect(state.scripts.at(-1)).to.contain('add table ip twill_guard').and.to.contain('198.18.0.3').and.to.contain('198.18.0.2');
      expect(log.messages('warn'), 'nothing to warn about: the table is back').to.deep.equal([]);
    });

    it('reports the drop counters on /metrics', async () => {
      const metrics = new AgentMetrics();
      const state = { listing: listingWith(7), scripts: [] as string[] };
      await new GuardController({ enabled: true, log: new MemoryLog(), metrics, table: new GuardTable(fakeNft(state)) }).apply([peer(2)], [vxlanIntake(8472)]);
      const text = await metrics.metrics();
      expect(text).to.match(/^twill_underlay_drops_total\{reason="spoofed_source",intake="vxlan",family="ipv4"\} 7$/m);
      expect(text).to.match(/^twill_tunnel_guard_active 1$/m);
    });

    it('with nftables announcing changes, reads only its counters until a change is announced, a spoof counter rises or a minute passes', async () => {
      const state = { listing: listingWith(0), scripts: [] as string[] };
      const nft = fakeNft(state);
      const reads: string[] = [];
      const recording = async (args: readonly string[], stdin?: string): Promise<string> => {
        // The IPv6 table (none here: no intake over IPv6) is looked for once, to be removed.
        if (args[0] !== '-f' && !args.includes('ip6')) reads.push(args.includes('counters') ? 'counters' : 'table');
        return nft(args, stdin);
      };
      let announce: ((how: 'changed' | 'lost' | 'closed') => void) | undefined;
      let now = 0;
      const log = new MemoryLog();
      const metrics = new AgentMetrics();
      const guard = new GuardController({
        enabled: true, log, metrics, table: new GuardTable(recording), now: () => now,
        watchNft: (onChange) => {
          announce = onChange;
          return () => { announce = undefined; };
        },
      });
      const check = async (): Promise<string> => {
        now += 2000; // a repair interval
        reads.length = 0;
        await guard.apply([peer(2)], [vxlanIntake(8472)]);
        return reads.join(',');
      };
      expect(await check(), 'the first check').to.equal('table');
      expect(await check(), 'nothing announced').to.equal('counters');
      announce!('changed');
      expect(await check(), 'a change announced').to.equal('table');
      expect(await check()).to.equal('counters');
      state.listing = listingWith(3); // a peer sent spoofed inner sources
      expect(await check(), 'a spoof counter rose').to.equal('counters,table');
      expect(log.messages('warn').filter((m) => m.includes('dropped 3 packet(s) from peer 198.18.0.2'))).to.have.length(1);
      expect(await metrics.metrics()).to.match(/^twill_underlay_drops_total\{reason="spoofed_source",intake="vxlan",family="ipv4"\} 3$/m);
      expect(await check()).to.equal('counters');
      now += FULL_READ_MS;
      expect(await check(), 'a minute after the last whole read').to.equal('table');
      announce!('lost');
      expect(await check(), 'announcements lost').to.equal('table');
      announce!('closed');
      expect(await check(), 'the watch closed').to.equal('table');
      expect(await check()).to.equal('table');
      guard.stop();
      expect(announce, 'stop releases the watch').to.equal(undefined);
    });

    it('without nft: warns once, keeps going, and says the guard is off', async () => {
      const state = { missing: true, scripts: [] as string[] };
      const log = new MemoryLog();
      const metrics = new AgentMetrics();
      const guard = new GuardController({ enabled: true, log, metrics, table: new GuardTable(fakeNft(state)) });
      for (let i = 0; i < 3; i++) await guard.apply([peer(2)], [vxlanIntake(8472)]);
      expect(log.messages('warn').filter((m) => m.includes('nft command is not installed'))).to.have.length(1);
      expect(await metrics.metrics()).to.match(/^twill_tunnel_guard_active 0$/m);
    });

    it('with no backend receiving tunnels and no nft: says nothing, as there is nothing to guard', async () => {
      const log = new MemoryLog();
      const guard = new GuardController({ enabled: true, log, metrics: new AgentMetrics(), table: new GuardTable(fakeNft({ missing: true, scripts: [] })) });
      await guard.apply([peer(2)], []);
      expect(log.lines).to.deep.equal([]);
    });

    it('with --tunnel-guard=false: removes the table once and writes nothing else', async () => {
      const state = { listing: listingWith(0), scripts: [] as string[] };
      const log = new MemoryLog();
      const guard = new GuardController({ enabled: false, log, metrics: new AgentMetrics(), table: new GuardTable(fakeNft(state)) });
      await guard.apply([peer(2)], [vxlanIntake(8472)]);
      await guard.apply([peer(2)], [vxlanIntake(8472)]);
      expect(state.scripts).to.deep.equal(['delete table ip twill_guard\n']);
      expect(log.messages('info')[0]).to.contain('--tunnel-guard=false');
    });
  });

  describe('twill diagnose', () => {
    const own = lease(1);
    const leases = [own, lease(2)];
    const table = (listing: string | undefined, missing = false) => new GuardTable(async () => {
      if (missing) throw new GuardUnavailableError('the nft command is not installed');
      if (listing === undefined) throw new Error('nft -j list table ip twill_guard failed: Error: No such file or directory');
      return listing;
    });
    const diagnose = async (over: Partial<Parameters<typeof checkGuard>[0]>) => {
      const out = new Findings();
      await checkGuard({ enabled: true, own, leases, intakes: [vxlanIntake(8472)], table: table(undefined), ...over }, out);
      return out.all.map((f) => `${f.level} ${f.what}`);
    };

    it('fails when the table is missing while the guard is on, naming what is open', async () => {
      expect(await diagnose({})).to.deep.equal(['FAIL tunnel guard table ip twill_guard is missing: vxlan udp/8472 accept packets from any host']);
    });

    it('fails when nft is missing, saying so', async () => {
      expect((await diagnose({ table: table(undefined, true) }))[0]).to.match(/^FAIL cannot read the tunnel guard: .*nft command is not installed/);
    });

    it('fails naming what differs when a peer is missing from the table', async () => {
      const listing = JSON.stringify({ nftables: [
        { counter: { name: 'unknown_vxlan', packets: 0 } }, { counter: { name: 'spoofed_vxlan', packets: 0 } },
        { set: { name: 'peers', elem: [] } }, { set: { name: 'subnets', elem: [] } },
      ] });
      const found = await diagnose({ table: table(listing) });
      expect(found).to.include('FAIL tunnel guard differs from the plan: set peers lacks 1 element(s), e.g. 198.18.0.2');
    });

    it('warns when the guard is turned off, and is content when no backend receives tunnels', async () => {
      expect((await diagnose({ enabled: false }))[0]).to.match(/^WARN tunnel packets are not filtered \(--tunnel-guard=false\)/);
      expect(await diagnose({ intakes: [] })).to.deep.equal(['OK no backend here receives tunnel traffic: nothing to filter']);
    });
  });
});
