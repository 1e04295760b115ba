/**
 * The control socket between twilld (EngineSupervisor) and twill-dataplane:
 * frames, request kinds, where the socket is, and the program's command
 * line. The C side is native/control.h, which documents each request; the
 * two must agree byte for byte.
 *
 * Frame, both ways: u32 LE length of what follows, u8 kind, u8 status
 * (replies: 0 ok, 1 error), u16 0, u32 LE request id, payload. Payloads
 * are JSON text, but for SET_PEERS (u32 LE quadruples), ATTACH (arguments,
 * NUL-separated) and DETACH (u32 LE grace in ms).
 */
import { statSync } from 'fs';
import * as path from 'path';
import type { EngineConfig } from './native-engine';

export const RUN_DIR = '/run/twill';
export const FRAME_HEADER = 12;

export enum Request {
  Attach = 1,
  SetPeers = 2,
  Counters = 3,
  /** Stops the engine (the TUN stays); the program exits after the reply. */
  Stop = 4,
  /** Stops the engine and deletes the TUN; the program exits after the reply. */
  Destroy = 5,
  /** Keep forwarding once this controller is gone, for the grace given, until the next twilld attaches. */
  Detach = 6,
  /** Fault injection: a NULL dereference in the program (only with --fault-injection). */
  Crash = 7,
}

export enum Message {
  Reply = 0x81,
  /** Every second, unasked: a heartbeat that also keeps the counters of a program that later dies. */
  Counters = 0x82,
  /** The engine gave up ({message}); the program exits 70. */
  Fatal = 0x83,
}

/** Exit codes of twill-dataplane. */
export const DATAPLANE_EXIT = { stopped: 0, startFailed: 1, usage: 2, engineFatal: 70 } as const;

export interface Frame {
  readonly kind: number;
  readonly status: number;
  readonly id: number;
  readonly payload: Buffer;
}

export function encodeFrame(kind: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(FRAME_HEADER + payload.length);
  out.writeUInt32LE(FRAME_HEADER - 4 + payload.length, 0);
  out[4] = kind;
  out.writeUInt32LE(id, 8);
  payload.copy(out, FRAME_HEADER);
  return out;
}

/** Cuts complete frames off the front of a stream; keeps the rest for the next chunk. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const frames: Frame[] = [];
    let at = 0;
    while (this.pending.length - at >= 4) {
      const n = this.pending.readUInt32LE(at);
      if (n < FRAME_HEADER - 4) throw new Error(`twill-dataplane sent a malformed frame (length ${n})`);
      if (this.pending.length - at < 4 + n) break;
      const f = this.pending.subarray(at, at + 4 + n);
      frames.push({ kind: f[4], status: f[5], id: f.readUInt32LE(8), payload: Buffer.from(f.subarray(FRAME_HEADER)) });
      at += 4 + n;
    }
    this.pending = this.pending.subarray(at);
    return frames;
  }
}

/** The peer table as the program reads it: [subnet, prefixLen, publicIP, port] quadruples, u32 LE. */
export function encodeTable(table: readonly number[]): Buffer {
  const out = Buffer.alloc(table.length * 4);
  table.forEach((v, i) => out.writeUInt32LE(v >>> 0, i * 4));
  return out;
}

/** The program's arguments for this config (the same list goes with ATTACH, to compare configs). */
export function dataplaneArgs(config: EngineConfig, faultInjection: boolean): string[] {
  return [
    '--mode', config.mode,
    '--tun', config.tunName,
    '--local-ip', config.localIP,
    '--port', String(config.port),
    '--mtu', String(config.mtu),
    '--gateway', config.gateway,
    '--offload', config.offload ? '1' : '0',
    '--outer-ttl', String(config.outerTtl),
    '--sockbuf', String(config.sockbuf),
    ...(faultInjection ? ['--fault-injection'] : []),
  ];
}

/**
 * Where the dataplane for `tunName` listens: named after its network
 * namespace's inode, since several namespaces (nodes of a test, say) may
 * share /run and each have a flannel0. `netns`: a named namespace
 * (/run/netns/<name>); default this process's own. native/instance.c
 * makes the same name from inside the namespace.
 */
export function dataplaneSocketPath(tunName: string, netns?: string): string {
  const ino = statSync(netns ? path.join('/run/netns', netns) : '/proc/self/ns/net').ino;
  return path.join(RUN_DIR, `dataplane-${ino}-${tunName}.sock`);
}
