import { expect } from 'chai';
import { TwillCluster } from '../harness/twill-cluster';
import { ping } from '../harness/ping';
import { startCapture } from '../harness/capture';
import { waitFor } from '../harness/wait';
import { addOutsideHost } from '../harness/outside-host';

/** What each way of writing rules looks like from the outside. */
const NAT = {
  nftables: {
    list: ['nft', 'list', 'table', 'ip', 'twill'],
    flush: ['nft', 'flush', 'table', 'ip', 'twill'],
    podRule: 'ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return',
    nodeRule: (subnet: string) => `ip daddr ${subnet} return`,
    masq: 'masquerade',
    // The tunnel guard's table (ip twill_guard) is another matter: only the NAT table must go.
    gone: async (tc: TwillCluster) => !/^table ip twill$/m.test((await tc.net.exec(0, ['nft', 'list', 'tables'])).stdout),
  },
  iptables: {
    list: ['iptables-save'],
    flush: ['iptables', '-t', 'nat', '-F', 'TWILL-POSTRTG'],
    podRule: '-A TWILL-POSTRTG -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN',
    nodeRule: (subnet: string) => `-d ${subnet} -j RETURN`,
    masq: 'MASQUERADE',
    gone: async (tc: TwillCluster) => !(await tc.net.exec(0, ['iptables-save'])).stdout.includes('TWILL'),
  },
} as const;

for (const natBackend of ['nftables', 'iptables'] as const) {
  const nat = NAT[natBackend];
  describe(`--ip-masq with ${natBackend}: pods reach the outside NATed to their node, pod-to-pod keeps pod addresses`, function () {
    this.timeout(90_000);
    let tc: TwillCluster;
    let outside: { ns: string; ip: string };

    before(async () => {
      tc = await TwillCluster.create({ nodes: 2, config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }, agentArgs: ['--ip-masq', '--iptables-resync', '1', '--nat-backend', natBackend] });
      outside = await addOutsideHost(tc);
    });
    after(async () => {
      await tc?.destroy();
    });

    it('installs its rules in a table or chains of its own', async () => {
      const table = await waitFor('the rules', async () => {
        const r = await tc.net.exec(0, [...nat.list]).catch(() => undefined);
        return r?.stdout.includes(nat.masq) ? r.stdout : undefined;
      }, 5000);
      expect(table).to.contain(nat.podRule);
      expect(table).to.contain(nat.nodeRule(tc.lease(0).subnet));
    });

    it('rewrites the source of a pod\'s packet to an outside host to the node address', async () => {
      const cap = await startCapture(outside.ns, 'eth0', 'icmp');
      const r = await ping(tc.podNs(0), outside.ip, { count: 3, intervalMs: 100, timeoutMs: 5000 });
      const frames = await cap.stop();
      expect(r.received).to.be.greaterThan(0);
      const requests = frames.filter((f) => f.outer.dst === outside.ip && f.icmp?.type === 8);
      expect(requests.length).to.be.greaterThan(0);
      expect(new Set(requests.map((f) => f.outer.src))).to.deep.equal(new Set(['198.18.0.1']));
    });

    it('leaves the pod source address on pod-to-pod traffic', async () => {
      const cap = await startCapture(tc.podNs(1), 'eth0', 'icmp');
      await ping(tc.podNs(0), tc.podIp(1), { count: 3, intervalMs: 100 });
      const frames = await cap.stop();
      const requests = frames.filter((f) => f.outer.dst === tc.podIp(1) && f.icmp?.type === 8);
      expect(requests.length).to.be.greaterThan(0);
      expect(new Set(requests.map((f) => f.outer.src))).to.deep.equal(new Set([tc.podIp(0)]));
    });

    it('puts back a rule set flushed by hand within one resync period', async () => {
      await tc.net.exec(0, [...nat.flush]);
      await waitFor('the rules to return', async () => (await tc.net.exec(0, [...nat.list])).stdout.includes(nat.masq), 4000);
    });

    it('removes its table when restarted with --ip-masq=false --iptables-forward-rules=false', async () => {
      expect(await tc.stopAgent(0)).to.equal(0);
      await tc.startAgent(0, ['--ip-masq=false', '--iptables-forward-rules=false']);
      await waitFor('the rules to go', () => nat.gone(tc), 5000);
    });
  });
}
