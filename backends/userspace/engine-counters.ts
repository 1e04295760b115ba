/**
 * What the engine counted, as twilld reports it: the program's counters
 * (native-engine.ts EngineCounters) summed over every program the supervisor
 * ran for one TUN (a restarted program counts from 0 again), and the summary
 * /metrics shows.
 */
import type { EngineCounters } from './native-engine';

export interface DatapathCounters {
  /** Inner packets received from peers and written to the TUN. */
  readonly rxPackets: number;
  /** Inner packets sent to peers (a TSO super-packet counts as the packets it was cut into). */
  readonly txPackets: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  /**
   * Dropped for any reason other than "no route": TTL expired, not IPv4, malformed, a sender that is no peer, an
   * inner source outside the sender's subnet, refused by socket or TUN.
   */
  readonly drops: number;
  /** Packets for a destination no peer holds (each answered with ICMP net unreachable). */
  readonly noRoute: number;
  readonly icmpSent: number;
  /** Every engine counter, summed over programs. */
  readonly detail: EngineCounters;
}

export const ZERO_COUNTERS: EngineCounters = {
  txPackets: 0, txBytes: 0, noRoute: 0, icmpSent: 0, ttlExpired: 0, notIpv4: 0, malformedTx: 0, sendErrors: 0, tunReads: 0, superPackets: 0,
  rxPackets: 0, rxBytes: 0, unknownSource: 0, spoofedSource: 0, malformedRx: 0, writeErrors: 0, datagrams: 0, tunWrites: 0, merged: 0,
};

/** A field an older program does not report counts as 0. */
export function addCounters(a: EngineCounters, b: EngineCounters): EngineCounters {
  const out = { ...a };
  for (const k of Object.keys(ZERO_COUNTERS) as (keyof EngineCounters)[]) out[k] = (a[k] ?? 0) + (b[k] ?? 0);
  return out;
}

export function summarizeCounters(c: EngineCounters): DatapathCounters {
  return {
    rxPackets: c.rxPackets,
    txPackets: c.txPackets,
    rxBytes: c.rxBytes,
    txBytes: c.txBytes,
    drops: c.ttlExpired + c.notIpv4 + c.malformedTx + c.sendErrors + c.unknownSource + c.spoofedSource + c.malformedRx + c.writeErrors,
    noRoute: c.noRoute,
    icmpSent: c.icmpSent,
    detail: c,
  };
}
