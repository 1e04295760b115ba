/**
 * When a repair may skip reading the kernel (lib/agent/kernel-watch.ts), and
 * the summary of skipped notifications it learns that from
 * (lib/netlink/events.ts `decodeSkipped`, the addon's layout).
 */
import { expect } from 'chai';
import { KernelWatch } from '../../lib/agent/kernel-watch';
import { decodeSkipped } from '../../lib/netlink/events';

describe('KernelWatch: repairs trust notifications only while nothing could have changed', () => {
  let now = 0;
  const config = { network: '10.244.0.0/16' };
  const lease = { key: 'a' };
  const watched = (): KernelWatch => {
    now = 1000;
    const w = new KernelWatch(60_000, () => now);
    w.started();
    return w;
  };
  const verifiedOnce = (): KernelWatch => {
    const w = watched();
    w.verify(w.mark(), [config, lease]);
    return w;
  };

  it('trusts the kernel after a full reconcile, for the same inputs', () => {
    expect(verifiedOnce().unchanged([config, lease])).to.equal(true);
  });

  it('reads again once anything it owns changed, even during the reconcile that verified', () => {
    const w = watched();
    const mark = w.mark();
    w.changed(); // a notification that arrived while the reconcile read the kernel
    w.verify(mark, [config, lease]);
    expect(w.unchanged([config, lease])).to.equal(false);
    w.verify(w.mark(), [config, lease]);
    expect(w.unchanged([config, lease])).to.equal(true);
    w.changed();
    expect(w.unchanged([config, lease])).to.equal(false);
  });

  it('reads again when a lease or the config is another object, or one more or fewer', () => {
    const w = verifiedOnce();
    expect(w.unchanged([config, { ...lease }])).to.equal(false);
    expect(w.unchanged([{ ...config }, lease])).to.equal(false);
    expect(w.unchanged([config, lease, { key: 'b' }])).to.equal(false);
    expect(w.unchanged([config])).to.equal(false);
  });

  it('reads the whole kernel at least once per full-check period', () => {
    const w = verifiedOnce();
    now += 59_999;
    expect(w.unchanged([config, lease])).to.equal(true);
    now += 1;
    expect(w.unchanged([config, lease])).to.equal(false);
  });

  it('never trusts without a notification socket, before it delivers or after it closed', () => {
    const w = new KernelWatch(60_000, () => now);
    w.verify(w.mark(), [config]);
    expect(w.unchanged([config]), 'not watching yet').to.equal(false);
    w.started();
    w.verify(w.mark(), [config]);
    expect(w.unchanged([config])).to.equal(true);
    w.stopped();
    expect(w.unchanged([config]), 'socket closed').to.equal(false);
    w.verify(w.mark(), [config]);
    expect(w.unchanged([config]), 'a reconcile after the socket closed').to.equal(false);
  });

  it('reads again after a failed reconcile', () => {
    const w = verifiedOnce();
    w.forget();
    expect(w.unchanged([config, lease])).to.equal(false);
  });
});

describe('decodeSkipped: the addon\'s summary of additions and changes', () => {
  const summary = (protocols: number[], unknown: boolean, ifindexes: number[]): Buffer => {
    const b = Buffer.alloc(36 + 4 * ifindexes.length);
    for (const p of protocols) b[p >> 3] |= 1 << (p & 7);
    b.writeUInt32LE(unknown ? 1 : 0, 32);
    ifindexes.forEach((i, k) => b.writeInt32LE(i, 36 + 4 * k));
    return b;
  };

  it('names the route protocols and interface indexes touched', () => {
    const ev = decodeSkipped(summary([0, 3, 117, 255], false, [2, 7]));
    expect(ev).to.deep.equal({ type: 'changes', routeProtocols: [0, 3, 117, 255], ifindexes: [2, 7], unknown: false });
  });

  it('says when some change could not be told', () => {
    expect(decodeSkipped(summary([], true, []))).to.deep.equal({ type: 'changes', routeProtocols: [], ifindexes: [], unknown: true });
  });
});
