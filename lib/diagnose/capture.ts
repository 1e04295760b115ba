/**
 * Packet capture with libpcap (the `cap` package) in this process, and so
 * in the network namespace twill diagnose runs in. Frames are decoded as
 * they arrive (frame.ts); only IPv4 frames are kept.
 *
 *   const cap = PacketCapture.open('eth0', 'host 198.18.0.2', ports);
 *   …send…
 *   const frames = await cap.stop();
 *
 * Failure semantics: `open` throws `CaptureError` when libpcap cannot open
 * the device or compile the filter (no such device, no permission, no
 * libpcap) or when the device is not Ethernet (the decoder needs Ethernet
 * framing). `stop()` waits a moment for frames libpcap has queued, then
 * closes the handle; it never throws.
 */
import { FramePorts, ParsedFrame, parseFrame } from './frame';
import type { CapHandle, CapModule } from './cap-binding';


export class CaptureError extends Error {
  constructor(readonly dev: string, detail: string) {
    super(`cannot capture on ${dev}: ${detail}`);
    this.name = 'CaptureError';
  }
}

export interface CapturedFrame extends ParsedFrame {
  /** Capture time, ms since the epoch. */
  readonly ts: number;
}

/** Time given to libpcap's queue before closing. */
const DRAIN_MS = 100;
const BUFFER_BYTES = 4 * 1024 * 1024;

export class PacketCapture {
  private readonly kept: CapturedFrame[] = [];
  private closed = false;
  /** Frames that were not IPv4 or could not be decoded. */
  skipped = 0;

  private constructor(private readonly handle: CapHandle, readonly dev: string) {}

  /** Starts capturing `dev` with the BPF `filter` (tcpdump syntax); frames from now on are seen. */
  static open(dev: string, filter: string, ports: FramePorts): PacketCapture {
    let mod: CapModule;
    try {
      mod = require('cap') as CapModule;
    } catch (err) {
      throw new CaptureError(dev, `the cap package (libpcap binding) cannot be loaded: ${(err as Error).message}`);
    }
    const handle = new mod.Cap();
    const buffer = Buffer.alloc(65535);
    let linkType: string;
    try {
      linkType = handle.open(dev, filter, BUFFER_BYTES, buffer);
    } catch (err) {
      throw new CaptureError(dev, `libpcap refused (filter "${filter}"): ${(err as Error).message}`);
    }
    if (linkType !== 'ETHERNET') {
      handle.close();
      throw new CaptureError(dev, `its link type is ${linkType}, not Ethernet; frames cannot be decoded`);
    }
    handle.setMinBytes?.(0);
    const capture = new PacketCapture(handle, dev);
    handle.on('packet', (nbytes) => capture.take(buffer, nbytes, ports));
    return capture;
  }

  /** IPv4 frames captured so far. */
  get frames(): readonly CapturedFrame[] {
    return this.kept;
  }

  async stop(): Promise<CapturedFrame[]> {
    if (!this.closed) {
      await new Promise((resolve) => setTimeout(resolve, DRAIN_MS));
      this.closed = true;
      this.handle.close();
    }
    return [...this.kept];
  }

  private take(buffer: Buffer, nbytes: number, ports: FramePorts): void {
    if (this.closed) return;
    try {
      // `buffer` is reused for the next packet: parse it now (parsing copies out what it keeps).
      const frame = parseFrame(buffer.subarray(0, nbytes), ports);
      if (frame) this.kept.push({ ...frame, ts: Date.now() });
      else this.skipped++;
    } catch {
      this.skipped++;
    }
  }
}
