/**
 * When a backend that is neither configured nor carrying any peer goes:
 * after RETIRE_MS idle it leaves the lease (peers stop choosing it); after
 * RETIRE_MS more, when peers have stopped sending over it, its kernel
 * objects are removed. A peer that needs it again in between brings it back
 * into the lease. Pure: the caller keeps the timestamps and acts.
 */

/** How long an unused backend stays advertised, then how long it keeps receiving after leaving the lease. */
export const RETIRE_MS = 3000;

export interface RetirementState {
  /** Since when it has carried no peer while not configured. */
  readonly idleSince?: number;
  /** When it left the lease. */
  readonly withdrawnAt?: number;
}

export type RetirementStep =
  | { readonly action: 'keep'; readonly state: RetirementState; readonly readvertised: boolean }
  | { readonly action: 'wait'; readonly state: RetirementState; readonly inMs: number }
  | { readonly action: 'withdraw'; readonly state: RetirementState; readonly inMs: number }
  | { readonly action: 'remove'; readonly state: RetirementState };

export function retirementStep(state: RetirementState, needed: boolean, now: number): RetirementStep {
  if (needed) return { action: 'keep', state: {}, readvertised: state.withdrawnAt !== undefined };
  const idleSince = state.idleSince ?? now;
  if (state.withdrawnAt === undefined) {
    if (now - idleSince >= RETIRE_MS) return { action: 'withdraw', state: { idleSince, withdrawnAt: now }, inMs: RETIRE_MS };
    return { action: 'wait', state: { idleSince }, inMs: idleSince + RETIRE_MS - now };
  }
  if (now - state.withdrawnAt >= RETIRE_MS) return { action: 'remove', state: { idleSince, withdrawnAt: state.withdrawnAt } };
  return { action: 'wait', state: { idleSince, withdrawnAt: state.withdrawnAt }, inMs: state.withdrawnAt + RETIRE_MS - now };
}
