/**
 * Capture driver: a tiny program that captures on one device with libpcap
 * (the `cap` package) and prints what it sees, one JSON object per line.
 *
 *   ip netns exec <ns> node dist/test/harness/capture-driver.js <dev> <bpf filter> <maxPackets> <timeoutMs>
 *
 * libpcap opens devices in the calling process's network namespace, which is
 * why capturing inside a node needs a separate process started by
 * `ip netns exec` (capture.ts does that).
 *
 * Output lines (see `DriverMessage`):
 *   {"type":"ready","linkType":"ETHERNET"}  once the capture is active: packets from now on are seen
 *   {"type":"frame","ts":<ms>,"len":<n>,"truncated":false,"hex":"…"}  per frame
 *   {"type":"end","reason":"count"|"timeout"|"signal","frames":<n>}  then exit 0
 *   {"type":"error","message":"…"}  then exit 2 (bad device or filter)
 *
 * SIGTERM/SIGINT end the capture cleanly after a short drain, so frames the
 * kernel already queued are still printed.
 */

import type { CapModule } from '../../lib/diagnose/cap-binding';

export type DriverMessage =
  | { type: 'ready'; linkType: string }
  | { type: 'frame'; ts: number; len: number; truncated: boolean; hex: string }
  | { type: 'end'; reason: 'count' | 'timeout' | 'signal'; frames: number }
  | { type: 'error'; message: string };

/** Time given to libpcap's queue after a stop signal before closing. */
const DRAIN_MS = 100;

function emit(msg: DriverMessage): void {
  // stdout is a pipe: writes are synchronous on Linux, so nothing is lost at exit.
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}

function main(argv: string[]): void {
  const [dev, filter, maxText, timeoutText] = argv;
  const maxPackets = Number(maxText);
  const timeoutMs = Number(timeoutText);
  if (!dev || filter === undefined || !(maxPackets > 0) || !(timeoutMs > 0)) {
    emit({ type: 'error', message: 'usage: capture-driver <dev> <bpf filter> <maxPackets> <timeoutMs>' });
    process.exit(2);
  }

  const { Cap } = require('cap') as CapModule;
  const cap = new Cap();
  const buffer = Buffer.alloc(65535);
  let linkType: string;
  try {
    linkType = cap.open(dev, filter, 10 * 1024 * 1024, buffer);
  } catch (e) {
    emit({ type: 'error', message: `cannot capture on ${dev} with filter "${filter}": ${e instanceof Error ? e.message : String(e)}` });
    process.exit(2);
  }
  cap.setMinBytes?.(0);

  let frames = 0;
  let ended = false;
  const finish = (reason: 'count' | 'timeout' | 'signal'): void => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    cap.close();
    emit({ type: 'end', reason, frames });
    process.exit(0);
  };

  cap.on('packet', (nbytes, truncated) => {
    if (ended) return;
    frames++;
    // `buffer` is reused for the next packet, so it is copied out (as hex) right here.
    emit({ type: 'frame', ts: Date.now(), len: nbytes, truncated, hex: buffer.toString('hex', 0, nbytes) });
    if (frames >= maxPackets) finish('count');
  });

  const timer = setTimeout(() => finish('timeout'), timeoutMs);
  const onSignal = (): void => {
    setTimeout(() => finish('signal'), DRAIN_MS);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  // open() has activated the capture (immediate mode, filter set): say so.
  emit({ type: 'ready', linkType });
}

if (require.main === module) main(process.argv.slice(2));
