/**
 * etcd comes back fast: after an outage the agent is talking to etcd again
 * within a second of etcd's first answer (etcd3's default circuit breaker
 * kept it away for 5 s), and while etcd is down it knocks at a bounded rate,
 * not in a storm. The agent reaches etcd through a proxy that counts its
 * connection attempts.
 */
import { expect } from 'chai';
import * as http from 'http';
import { TwillCluster } from '../harness/twill-cluster';
import { UNDERLAY } from '../harness/cluster';
import { sleep, waitFor } from '../harness/wait';
import { startTcpProxy, type TcpProxy } from '../harness/tcp-proxy';

const OUTAGE_MS = 20_000;
/** Connection attempts per second while etcd is down that still count as "no storm". */
const MAX_ATTEMPTS_PER_S = 10;

/** Resolves when etcd first answers as a working server: /health says 200 (it has a leader and serves requests). */
function etcdAnswers(port: number): Promise<number> {
  return new Promise((resolve) => {
    const poll = () => {
      const req = http.get({ host: '127.0.0.1', port, path: '/health', timeout: 200 }, (res) => {
        res.resume();
        if (res.statusCode === 200) resolve(Date.now());
        else setTimeout(poll, 5);
      });
      req.on('error', () => setTimeout(poll, 5));
      req.on('timeout', () => req.destroy());
    };
    poll();
  });
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe('etcd reconnect: an agent after a 20 s etcd outage', function () {
  this.timeout(120_000);
  let tc: TwillCluster | undefined;
  let proxy: TcpProxy | undefined;

  after(async () => {
    await proxy?.close();
    await tc?.destroy();
  });

  it('reaches etcd again within 1 s of etcd answering, logs one line each way, and does not storm meanwhile', async () => {
    tc = await TwillCluster.create({ nodes: 1, config: { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } }, start: false });
    proxy = await startTcpProxy(tc.etcd.port, { listenHost: UNDERLAY.bridgeIp });
    await tc.startAgent(0, ['--etcd-endpoints', proxy.endpoint]);
    const before = tc.logs(0).length;

    await tc.etcd.stop();
    await waitFor('the agent to notice the outage', () => tc!.logs(0).slice(before).includes('lost contact with etcd'), 15_000, 20);
    const attemptsAtStop = proxy.attempts();
    await sleep(OUTAGE_MS);
    const attemptsDuringOutage = proxy.attempts() - attemptsAtStop;

    const answered = etcdAnswers(tc.etcd.port);
    const restarted = tc.etcd.start();
    const firstAnswer = await answered;
    const reconnected = (await waitFor('the agent to reach etcd again', () => tc!.logs(0).slice(before).includes('etcd reachable again') ? Date.now() : undefined, 30_000, 5)) as number;
    await restarted;
    const reconnectMs = reconnected - firstAnswer;
    const rate = attemptsDuringOutage / (OUTAGE_MS / 1000);
    console.log(`      figures: reconnected ${reconnectMs} ms after etcd's first answer; ${attemptsDuringOutage} connection attempts in ${OUTAGE_MS / 1000} s of outage (${rate.toFixed(1)}/s)`);

    expect(reconnectMs, 'ms from etcd answering to the agent logging "etcd reachable again"').to.be.at.most(1000);
    expect(rate, 'connection attempts per second while etcd was down').to.be.at.most(MAX_ATTEMPTS_PER_S);
    await sleep(1000);
    const said = tc.logs(0).slice(before);
    expect(count(said, 'lost contact with etcd'), said).to.equal(1);
    expect(count(said, 'etcd reachable again'), said).to.equal(1);
  });
});
