/**
 * Loading the native engine (build/Release/twill_userspace.node, built from
 * binding.gyp) and its TypeScript shape. Only the datapath host process
 * loads it: a fault in native code must never take twilld down with it.
 */
import { existsSync } from 'fs';
import * as path from 'path';
import { EngineNotBuiltError } from './errors';

export interface EngineConfig {
  mode: 'udp' | 'ipip';
  tunName: string;
  localIP: string;
  /** UDP port (udp mode). */
  port: number;
  mtu: number;
  /** Source address of the ICMP errors written back into the TUN. */
  gateway: string;
  /** TSO and checksum offload on the TUN, UDP GSO/GRO on the socket (each only if the kernel agrees). */
  offload: boolean;
  /** ipip: TTL of the outer header. */
  outerTtl: number;
  /** Socket buffer size in bytes (SO_RCVBUFFORCE/SO_SNDBUFFORCE as root). */
  sockbuf: number;
}

/** What the engine ended up with. */
export interface EngineInfo {
  ifindex: number;
  /** This start created the TUN device (false: it adopted an existing one). */
  tunCreated: boolean;
  mtu: number;
  /** net.ipv4.conf.<tun>.accept_local could be set: without it the kernel drops our ICMP errors (they come from the TUN's own address). */
  acceptLocal: boolean;
  tunOffload: boolean;
  udpGso: boolean;
  udpGro: boolean;
  rcvbuf: number;
  sndbuf: number;
}

/** Raw engine counters, since the engine started. */
export interface EngineCounters {
  txPackets: number;
  txBytes: number;
  noRoute: number;
  icmpSent: number;
  ttlExpired: number;
  notIpv4: number;
  malformedTx: number;
  sendErrors: number;
  tunReads: number;
  superPackets: number;
  rxPackets: number;
  rxBytes: number;
  unknownSource: number;
  malformedRx: number;
  writeErrors: number;
  datagrams: number;
  tunWrites: number;
  merged: number;
}

export interface NativeEngine {
  start(config: EngineConfig): EngineInfo;
  /** Quadruples [subnet, prefixLen, publicIP, port], addresses as unsigned host-order integers. */
  setPeers(table: Uint32Array): void;
  counters(): EngineCounters;
  /** Why the engine's threads stopped on their own, or null while they run. */
  fatal(): string | null;
  stop(): void;
  /** Clears the persistent flag of a TUN device, which then disappears. */
  deleteTun(name: string): void;
  /** Dereferences NULL: a native fault on purpose, for fault-injection tests. */
  crash(): void;
}

const ADDON = 'twill_userspace.node';

/** Where the addon may be: the repository root is three levels above dist/backends/userspace. */
export function addonCandidates(): string[] {
  const roots = [path.resolve(__dirname, '../../..'), path.resolve(__dirname, '../..')];
  return roots.flatMap((r) => [path.join(r, 'build', 'Release', ADDON), path.join(r, 'build', 'Debug', ADDON)]);
}

export function findAddon(): string | null {
  return addonCandidates().find((p) => existsSync(p)) ?? null;
}

export function loadEngine(): NativeEngine {
  const file = findAddon();
  if (!file) throw new EngineNotBuiltError(addonCandidates());
  return require(file) as NativeEngine;
}
