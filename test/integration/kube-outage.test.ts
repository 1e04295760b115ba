/**
 * twilld --kube-subnet-mgr while the Kubernetes API server is down for a
 * minute: the datapath stays as it is (every pod keeps reaching every pod,
 * no probe lost), each agent says once that it lost the API and once that
 * it is back, and a change made after the outage reaches every agent.
 * Skips, saying where it looked, when the kube-apiserver binary is absent.
 */
import { expect } from 'chai';
import { kubeApiserverOrSkip } from '../harness/kube-apiserver';
import { TwillCluster } from '../harness/twill-cluster';
import { Probes, type ProbeReport } from '../harness/migration';
import { waitFor, sleep } from '../harness/wait';

const NODES = [0, 1, 2];
const OUTAGE_MS = 60_000;

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe('twilld --kube-subnet-mgr: the API server stopped for 60 s', function () {
  this.timeout(60_000);
  let tc: TwillCluster | undefined;

  before(async function () {
    this.timeout(90_000);
    const binary = kubeApiserverOrSkip(this);
    tc = await TwillCluster.create({
      nodes: NODES.length,
      config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } },
      kube: { binary: binary },
      agentArgs: ['--repair-interval', '2'],
    });
  });

  after(async () => {
    await tc?.destroy();
  });

  it('keeps every pod reaching every pod with 0 lost probes, says so once each way, and follows Nodes again afterwards', async function () {
    this.timeout(OUTAGE_MS + 90_000);
    const t = tc!;
    const api = t.kube!;
    const probes = await Probes.start(t, 50);
    let report: ProbeReport | undefined;
    try {
      await api.stop();
      await waitFor('every agent to notice', () => NODES.every((i) => t.logs(i).includes('lost contact with the Kubernetes API')), 20_000, 200);
      await sleep(OUTAGE_MS);
      for (const i of NODES) {
        expect(count(t.logs(i), 'lost contact with the Kubernetes API'), `node ${i}:\n${t.logs(i)}`).to.equal(1);
        expect(t.agents.get(i)?.exitedWith, `node ${i}`).to.equal(null);
      }
      await api.start();
      await waitFor('every agent to be back', () => NODES.every((i) => t.logs(i).includes('the Kubernetes API reachable again')), 40_000, 200);
      report = await probes.stop();
      console.log(`      ${OUTAGE_MS / 1000} s without the API server: ${report.sent} probes, ${report.lost} lost, longest reply gap ${Math.round(report.maxGapMs)} ms`);
      expect(report.lost, report.lines.join('\n')).to.equal(0);
    } finally {
      if (!report) await probes.stop().catch(() => undefined);
      await api.start().catch(() => undefined);
    }
    // The watch is live again: a Node made now is seen (and skipped, having no annotations) by every agent.
    await api.createNode('after-outage', { podCIDR: '10.244.50.0/24' });
    await waitFor('every agent to see the new Node', () => NODES.every((i) => t.logs(i).includes('skipping Node "after-outage"')), 10_000, 200);
  });
});
