/**
 * Whether a repair may trust that the kernel still holds what the last full
 * reconcile found or put there, instead of reading it all again.
 *
 * Why: every repair re-read the routes, neighbours and FDB entries of every
 * peer. With 5000 peers that is ~45 MB of short-lived objects every 5 s, a
 * few percent of a core, and a heap V8 lets grow to 150–200 MB, all to find
 * nothing changed. The kernel announces every change of those objects on
 * the notification socket (deletions in full, additions and changes as a
 * summary of what they touched), and says so when it lost some; so a repair
 * can skip the read while no announcement touched twill's objects since a
 * full reconcile, its inputs (config, leases) are the same objects, and the
 * last full read is younger than `fullCheckMs`. Anything else, or any doubt
 * (no socket, a closed socket, lost notifications, a failed reconcile), reads
 * the kernel as before.
 *
 * The tunnel guard keeps one per nft table, fed by nftables' announcements
 * instead (GuardController), so that an idle repair lists no table either.
 */
import { sameInputs } from '../last-result';

export class KernelWatch {
  private epoch = 0;
  private watching = false;
  private verified?: { epoch: number; at: number; inputs: readonly unknown[] };

  constructor(private readonly fullCheckMs: number, private readonly now: () => number = Date.now) {}

  /** The notification socket delivers from now on. */
  started(): void {
    this.watching = true;
    this.epoch++;
  }

  /** The notification socket is gone: no repair is skipped again. */
  stopped(): void {
    this.watching = false;
    this.verified = undefined;
  }

  /** Something twill owns may have changed (or notifications were lost). */
  changed(): void {
    this.epoch++;
  }

  /** Taken before a reconcile reads the kernel: what it will have seen, if it succeeds. */
  mark(): number | undefined {
    return this.watching ? this.epoch : undefined;
  }

  /** The reconcile that took `mark` read the kernel for these inputs and left it as planned. */
  verify(mark: number | undefined, inputs: readonly unknown[]): void {
    this.verified = mark === undefined ? undefined : { epoch: mark, at: this.now(), inputs };
  }

  /** The last reconcile failed somewhere: the next one reads the kernel. */
  forget(): void {
    this.verified = undefined;
  }

  /** Whether the kernel holds what the last full reconcile verified for the same inputs (compared as LastResult compares them). */
  unchanged(inputs: readonly unknown[]): boolean {
    const v = this.verified;
    return !!v && this.watching && v.epoch === this.epoch && this.now() - v.at < this.fullCheckMs && sameInputs(v.inputs, inputs);
  }
}
