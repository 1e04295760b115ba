/**
 * Messages between EngineSupervisor (in twilld) and the datapath host
 * process, over the IPC channel child_process.fork opens.
 *
 *   parent: start ──► host: started | start-failed
 *   parent: request{id, op} ──► host: reply{id}
 *   host: counters (every second, unasked) — a heartbeat that also keeps
 *         the counters of a host that later dies
 *   host: fatal (the engine's threads gave up) — then the host exits 70
 *
 * The host exits when the channel closes: a datapath never outlives the
 * agent that supervises it, except after `detach` (a restart of twilld),
 * for a bounded grace until the next host takes over.
 */
import type { EngineConfig, EngineCounters, EngineInfo } from './native-engine';

export type HostOp =
  | { op: 'setPeers'; table: number[] }
  | { op: 'counters' }
  /** Stops the engine and exits 0; the TUN device stays. */
  | { op: 'stop' }
  /** Stops the engine, deletes the TUN device and exits 0. */
  | { op: 'destroy' }
  /**
   * Keeps forwarding with the current table after the parent goes, for up
   * to graceMs, until a successor's host takes the TUN over (twilld restart).
   */
  | { op: 'detach'; graceMs: number }
  /** Fault injection: a NULL dereference in native code (only if started with faultInjection). */
  | { op: 'crash' };

export type ParentMessage =
  /** `table` is in force from the engine's first packet; a detached predecessor holding the TUN is ended first. */
  | { kind: 'start'; config: EngineConfig; faultInjection: boolean; table: number[] }
  /** Deletes a TUN device without starting an engine, then exits. */
  | { kind: 'delete-tun'; tunName: string }
  | ({ kind: 'request'; id: number } & HostOp);

export interface WireError {
  code: string;
  message: string;
}

export type HostMessage =
  | { kind: 'started'; info: EngineInfo }
  | { kind: 'start-failed'; error: WireError }
  | { kind: 'reply'; id: number; ok: true; result?: unknown }
  | { kind: 'reply'; id: number; ok: false; error: WireError }
  | { kind: 'counters'; counters: EngineCounters }
  | { kind: 'fatal'; message: string };

/** Exit codes of the host. */
export const HOST_EXIT = {
  stopped: 0,
  startFailed: 1,
  usage: 2,
  /** The engine's threads stopped on their own (the TUN device was deleted, say). */
  engineFatal: 70,
} as const;
