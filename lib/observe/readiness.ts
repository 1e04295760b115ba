/**
 * Whether this node is ready to carry pod traffic, for `/readyz` (DESIGN §5).
 *
 * The agent reports facts as they happen — a lease is held or lost, an etcd
 * request succeeded or failed, a reconcile finished — and `status()` turns
 * them into a verdict with one human sentence per thing that is wrong. The
 * class does no I/O and reads time only through an injectable clock, so
 * every transition is testable without waiting.
 *
 * Ready means all of:
 * - a subnet lease is held;
 * - etcd is reachable, or was reachable within the renewal window (default
 *   60 s): a blip shorter than that does not endanger the lease, so it does
 *   not flap readiness, while a longer outage does;
 * - the last reconcile succeeded (so the datapath is programmed for the
 *   leases known).
 *
 * Before anything is reported the node is not ready, with a reason for each
 * missing fact.
 */

export interface ReadinessStatus {
  ready: boolean;
  /** Why not ready, one sentence each; empty when ready. */
  reasons: string[];
}

export interface ReadinessOptions {
  /** How long etcd may be unreachable before the node stops being ready; default 60 s. */
  renewalWindowMs?: number;
  /** The time source; tests pass a fake one. */
  clock?: () => Date;
}

const DEFAULT_RENEWAL_WINDOW_MS = 60_000;

export class Readiness {
  private lease: 'never' | 'held' | 'lost' = 'never';
  private etcdOk = false;
  private lastContact?: Date;
  private reconcile?: { ok: true } | { ok: false; error: string };
  private renewalWindowMs: number;
  private readonly clock: () => Date;

  constructor(opts: ReadinessOptions = {}) {
    this.clock = opts.clock ?? (() => new Date());
    this.renewalWindowMs = DEFAULT_RENEWAL_WINDOW_MS;
    if (opts.renewalWindowMs !== undefined) this.setRenewalWindowMs(opts.renewalWindowMs);
  }

  /** The own subnet lease was acquired (true) or lost (false). */
  leaseHeld(held: boolean): void {
    if (held) this.lease = 'held';
    else if (this.lease === 'held') this.lease = 'lost';
  }

  /**
   * An etcd request or watch succeeded (`ok`) or failed. A success moves the
   * last contact to `at` (default: now; never backwards); a failure starts
   * the outage that `status()` measures from the last contact. Report a
   * failure as soon as it is seen — while the last report was a success
   * etcd counts as reachable however long ago that was.
   */
  etcdContact(ok: boolean, at?: Date): void {
    this.etcdOk = ok;
    if (!ok) return;
    const when = at ?? this.clock();
    if (!this.lastContact || when.getTime() > this.lastContact.getTime()) this.lastContact = when;
  }

  /** A reconcile finished; `error` is what made it fail. */
  reconciled(ok: boolean, error?: string): void {
    this.reconcile = ok ? { ok: true } : { ok: false, error: error?.trim() || 'unknown error' };
  }

  /**
   * How long etcd may be unreachable before the node is not ready; the agent
   * derives it from the lease renewal margin. Throws a RangeError for a
   * value that is not a positive number of milliseconds, and keeps the old one.
   */
  setRenewalWindowMs(ms: number): void {
    if (!Number.isFinite(ms) || ms <= 0) throw new RangeError(`renewal window must be a positive number of milliseconds, not ${ms}`);
    this.renewalWindowMs = ms;
  }

  status(now: Date = this.clock()): ReadinessStatus {
    const reasons: string[] = [];
    if (this.lease === 'never') reasons.push('no subnet lease held yet');
    else if (this.lease === 'lost') reasons.push('subnet lease lost; re-acquiring it');

    const etcd = this.etcdReason(now);
    if (etcd) reasons.push(etcd);

    if (!this.reconcile) reasons.push('no reconcile has completed yet');
    else if (!this.reconcile.ok) reasons.push(`last reconcile failed: ${this.reconcile.error}`);

    return { ready: reasons.length === 0, reasons };
  }

  private etcdReason(now: Date): string | undefined {
    if (!this.lastContact) return 'etcd not reached yet';
    if (this.etcdOk) return undefined;
    const downMs = now.getTime() - this.lastContact.getTime();
    if (downMs <= this.renewalWindowMs) return undefined;
    return `etcd unreachable for ${Math.floor(downMs / 1000)} s (last contact ${this.lastContact.toISOString()})`;
  }
}
