/**
 * The compiled engine, twill-dataplane (build/Release/twill-dataplane, built
 * from binding.gyp), and the TypeScript shape of what it is given and
 * reports. twilld never loads native code: the engine is a program of its
 * own (native/main.c), so a fault there cannot take twilld down with it.
 */
import { findNativeBuild, nativeBuildCandidates } from '../../lib/native-build';

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
  /** Packets from a peer whose inner source lies outside that peer's subnet. */
  spoofedSource: number;
  malformedRx: number;
  writeErrors: number;
  datagrams: number;
  tunWrites: number;
  merged: number;
}

const PROGRAM = 'twill-dataplane';

/** Where the program may be (build/Release or build/Debug). */
export function dataplaneCandidates(): string[] {
  return nativeBuildCandidates(PROGRAM);
}

export function findDataplane(): string | null {
  return findNativeBuild(PROGRAM) ?? null;
}
