/**
 * Packet capture inside a namespace, and decoding of what the overlay puts on
 * the wire: Ethernet / IPv4 / (ICMP | UDP / VXLAN / inner Ethernet / inner IPv4).
 *
 * libpcap captures in the namespace of the process that opens the device, so
 * `startCapture` runs capture-driver.js inside the namespace with
 * `ip netns exec` and reads its JSON lines. It resolves only after the driver
 * says the capture is active, so traffic sent after `await startCapture(…)`
 * is seen.
 *
 *   const cap = await startCapture(cluster.nodeName(0), 'eth0', 'udp port 8472');
 *   …send traffic…
 *   const frames = await cap.stop();
 *   expect(frames[0].vxlan?.vni).to.equal(1);
 *
 * Failure semantics: `startCapture` rejects with `CaptureError` when the
 * driver reports an error (bad device, bad filter) or is not ready within
 * `readyTimeoutMs`. `stop()` never loses frames already captured: the driver
 * drains libpcap's queue before exiting.
 */
import * as path from 'path';
import { NsProcess } from './netns';
import type { DriverMessage } from './capture-driver';
import {
  DEFAULT_FRAME_PORTS,
  ETHERTYPE_IPV4,
  ETH_LEN,
  FrameParseError,
  PROTO_ICMP,
  PROTO_UDP,
  UDP_LEN,
  VXLAN_LEN,
  mac,
  need,
  parseIpv4,
  type EthernetHeader as FrameEthernetHeader,
  type Ipv4Header as FrameIpv4Header,
} from '../../lib/diagnose/frame';

/** IPv4 header fields tests assert on. */
export type Ipv4Header = FrameIpv4Header;

export type EthernetHeader = FrameEthernetHeader;

export interface UdpHeader {
  srcPort: number;
  dstPort: number;
}

export interface IcmpHeader {
  /** 8 echo request, 0 echo reply, 3 destination unreachable. */
  type: number;
  code: number;
}

/** The frame a VXLAN packet carries. */
export interface VxlanPayload {
  vni: number;
  inner: {
    srcMac: string;
    dstMac: string;
    etherType: number;
    /** Present when the inner frame is IPv4. */
    ip?: { src: string; dst: string; proto: number };
  };
}

/** A captured (or hand-built) IPv4 frame, decoded. */
export interface ParsedFrame {
  eth: EthernetHeader;
  outer: Ipv4Header;
  icmp?: IcmpHeader;
  udp?: UdpHeader;
  /** Set when the UDP destination port is a VXLAN port (8472 or 4789 by default). */
  vxlan?: VxlanPayload;
}

export interface CapturedFrame extends ParsedFrame {
  /** Capture time, ms since the epoch. */
  ts: number;
  raw: Buffer;
}

export { FrameParseError };

export class CaptureError extends Error {
  constructor(readonly ns: string | null, readonly dev: string, detail: string) {
    super(`capture on ${ns ?? 'root namespace'}/${dev}: ${detail}`);
    this.name = 'CaptureError';
  }
}

/** flannel's VXLAN port and the IANA one. */
export const DEFAULT_VXLAN_PORTS: readonly number[] = DEFAULT_FRAME_PORTS.vxlan;

/**
 * Decodes an Ethernet frame. Returns null when it is not IPv4 (ARP, IPv6):
 * those are not what overlay tests look at. Throws `FrameParseError` when an
 * IPv4 frame is cut short. VXLAN is recognised by UDP destination port.
 * Unlike `twill diagnose`'s `parseFrame`, it looks inside VXLAN only: tests
 * assert on the outer ICMP and UDP headers of every other frame.
 */
export function parseFrame(buf: Buffer, vxlanPorts: readonly number[] = DEFAULT_VXLAN_PORTS): ParsedFrame | null {
  need(buf, ETH_LEN, 'Ethernet header');
  const eth: EthernetHeader = { dstMac: mac(buf, 0), srcMac: mac(buf, 6), etherType: buf.readUInt16BE(12) };
  if (eth.etherType !== ETHERTYPE_IPV4) return null;
  const { header: outer, payloadOffset } = parseIpv4(buf, ETH_LEN, 'IPv4 header');
  const frame: ParsedFrame = { eth, outer };
  if (outer.proto === PROTO_ICMP) {
    need(buf, payloadOffset + 2, 'ICMP header');
    frame.icmp = { type: buf[payloadOffset], code: buf[payloadOffset + 1] };
  } else if (outer.proto === PROTO_UDP) {
    need(buf, payloadOffset + UDP_LEN, 'UDP header');
    frame.udp = { srcPort: buf.readUInt16BE(payloadOffset), dstPort: buf.readUInt16BE(payloadOffset + 2) };
    if (vxlanPorts.includes(frame.udp.dstPort)) frame.vxlan = parseVxlan(buf, payloadOffset + UDP_LEN);
  }
  return frame;
}

/** VXLAN header (RFC 7348: flags, 24 reserved bits, 24-bit VNI, 8 reserved bits) and the inner frame. */
function parseVxlan(buf: Buffer, off: number): VxlanPayload {
  need(buf, off + VXLAN_LEN + ETH_LEN, 'VXLAN header and inner Ethernet header');
  const vni = buf.readUIntBE(off + 4, 3);
  const e = off + VXLAN_LEN;
  const inner: VxlanPayload['inner'] = { dstMac: mac(buf, e), srcMac: mac(buf, e + 6), etherType: buf.readUInt16BE(e + 12) };
  if (inner.etherType === ETHERTYPE_IPV4) {
    const { header } = parseIpv4(buf, e + ETH_LEN, 'inner IPv4 header');
    inner.ip = { src: header.src, dst: header.dst, proto: header.proto };
  }
  return { vni, inner };
}

export interface CaptureOptions {
  /** The driver exits after this many frames; default 10 000. */
  maxPackets?: number;
  /** The driver exits after this long whatever happens; default 60 s. */
  timeoutMs?: number;
  /** How long to wait for the driver's "ready"; default 10 s. */
  readyTimeoutMs?: number;
  vxlanPorts?: readonly number[];
}

/** A capture running in a namespace. */
export class Capture {
  private readonly frames: CapturedFrame[] = [];
  private readonly others: { ts: number; raw: Buffer }[] = [];
  private nonIpv4 = 0;
  private endReason: string | null = null;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly proc: NsProcess,
    readonly ns: string | null,
    readonly dev: string,
    private readonly vxlanPorts: readonly number[],
  ) {}

  /** IPv4 frames captured so far. */
  get captured(): readonly CapturedFrame[] {
    return this.frames;
  }

  /** How many frames were not IPv4 (ARP, IPv6). */
  get skipped(): number {
    return this.nonIpv4;
  }

  /** The frames that were not IPv4 (ARP, IPv6), undecoded: tests that look at IPv6 read them. */
  get otherFrames(): readonly { ts: number; raw: Buffer }[] {
    return this.others;
  }

  /** Why the driver ended ('count', 'timeout', 'signal'), null while running. */
  get ended(): string | null {
    return this.endReason;
  }

  /** Resolves once `n` IPv4 frames (matching `pred`, if given) are captured; rejects after `timeoutMs`. */
  async waitForFrames(n: number, timeoutMs = 5000, pred: (f: CapturedFrame) => boolean = () => true): Promise<CapturedFrame[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const matching = this.frames.filter(pred);
      if (matching.length >= n) return matching;
      if (Date.now() >= deadline || this.proc.exitedWith) {
        throw new CaptureError(this.ns, this.dev, `saw ${matching.length} of ${n} expected frames within ${timeoutMs} ms`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Ends the capture (the driver drains what libpcap holds first) and returns every IPv4 frame seen. */
  async stop(): Promise<CapturedFrame[]> {
    await this.proc.stop(5000, 'SIGTERM');
    return [...this.frames];
  }

  /** Handles one driver line; returns the message for startCapture's readiness logic. */
  handle(line: string): DriverMessage | null {
    let msg: DriverMessage;
    try {
      msg = JSON.parse(line) as DriverMessage;
    } catch {
      return null; // not ours (a stray warning from libpcap or node)
    }
    if (msg.type === 'frame') {
      const raw = Buffer.from(msg.hex, 'hex');
      const parsed = parseFrame(raw, this.vxlanPorts);
      if (parsed) this.frames.push({ ...parsed, ts: msg.ts, raw });
      else {
        this.nonIpv4++;
        this.others.push({ ts: msg.ts, raw });
      }
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    } else if (msg.type === 'end') {
      this.endReason = msg.reason;
    }
    return msg;
  }
}

/** Path of the compiled driver, beside this module in dist/. */
const DRIVER = path.join(__dirname, 'capture-driver.js');

/**
 * Starts capturing on `dev` inside `ns` (null: the root namespace, e.g. on the
 * cluster's bridge to see every node's underlay traffic) with a BPF `filter`
 * (tcpdump syntax). Resolves when the capture is listening.
 */
export async function startCapture(ns: string | null, dev: string, filter: string, opts: CaptureOptions = {}): Promise<Capture> {
  const maxPackets = opts.maxPackets ?? 10_000;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 10_000;
  const proc = await NsProcess.spawn(ns, [process.execPath, DRIVER, dev, filter, String(maxPackets), String(timeoutMs)]);
  const capture = new Capture(proc, ns, dev, opts.vxlanPorts ?? DEFAULT_VXLAN_PORTS);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new CaptureError(ns, dev, `driver not ready after ${readyTimeoutMs} ms`)),
        readyTimeoutMs,
      );
      proc.onLine((line, stream) => {
        if (stream !== 'stdout') return;
        const msg = capture.handle(line);
        if (msg?.type === 'ready') {
          clearTimeout(timer);
          if (msg.linkType !== 'ETHERNET') {
            reject(new CaptureError(ns, dev, `link type ${msg.linkType} is not Ethernet; capture a real device, not "any"`));
          } else resolve();
        } else if (msg?.type === 'error') {
          clearTimeout(timer);
          reject(new CaptureError(ns, dev, msg.message));
        }
      });
      void proc.exited.then((st) => {
        clearTimeout(timer);
        reject(new CaptureError(ns, dev, `driver exited (${st.code ?? st.signal}) before ready: ${proc.stderr.trim()}`));
      });
    });
  } catch (e) {
    await proc.stop(2000);
    throw e;
  }
  return capture;
}
