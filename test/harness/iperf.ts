/** iperf3 between two namespaces, for tests that carry a real TCP stream over a datapath. */
import { assertSafeTarget } from './cluster';
import { NsProcess, nsArgv, run } from './netns';
import { waitFor } from './wait';

export interface IperfResult {
  gbps: number;
  retransmits: number;
}

/** iperf3 -c from `clientNs` to a one-shot server in `serverNs`; the whole JSON report is parsed. */
export async function iperf(serverNs: string, clientNs: string, serverIp: string, seconds: number, streams = 1): Promise<IperfResult> {
  assertSafeTarget(serverIp, clientNs);
  const server = await NsProcess.spawn(serverNs, ['iperf3', '-s', '-1', '-B', serverIp]);
  try {
    await waitFor('iperf3 to listen', async () => (await run(nsArgv(serverNs, ['ss', '-Hltn', 'sport = :5201']))).stdout.includes('5201'), 5000);
    const out = await run(nsArgv(clientNs, ['iperf3', '-c', serverIp, '-t', String(seconds), '-P', String(streams), '-J']), { timeoutMs: (seconds + 30) * 1000 });
    const report = JSON.parse(out.stdout) as { end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } } };
    return { gbps: report.end.sum_received.bits_per_second / 1e9, retransmits: report.end.sum_sent.retransmits ?? 0 };
  } finally {
    await server.stop(2000);
  }
}

export interface IperfStreamReport extends IperfResult {
  /** Longest run of 100 ms intervals in which the receiver got nothing, in ms (0: never stalled). */
  maxStallMs: number;
  intervals: number;
}

/** A running iperf3 TCP stream that reports per-100 ms progress, for "never stalls" assertions. */
export interface IperfStream {
  readonly done: Promise<IperfStreamReport>;
}

/** Starts iperf3 for `seconds` from `clientNs` to `serverIp`; resolves once the server listens. */
export async function startIperfStream(serverNs: string, clientNs: string, serverIp: string, seconds: number): Promise<IperfStream> {
  assertSafeTarget(serverIp, clientNs);
  const server = await NsProcess.spawn(serverNs, ['iperf3', '-s', '-1', '-B', serverIp]);
  try {
    await waitFor('iperf3 to listen', async () => (await run(nsArgv(serverNs, ['ss', '-Hltn', 'sport = :5201']))).stdout.includes('5201'), 5000);
  } catch (err) {
    await server.stop(2000);
    throw err;
  }
  const done = (async () => {
    try {
      const out = await run(nsArgv(clientNs, ['iperf3', '-c', serverIp, '-t', String(seconds), '-i', '0.1', '-J']), { timeoutMs: (seconds + 30) * 1000 });
      const report = JSON.parse(out.stdout) as {
        intervals: { sum: { bytes: number; seconds: number } }[];
        end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } };
      };
      let run0 = 0;
      let longest = 0;
      for (const i of report.intervals) {
        run0 = i.sum.bytes === 0 ? run0 + i.sum.seconds * 1000 : 0;
        longest = Math.max(longest, run0);
      }
      return {
        gbps: report.end.sum_received.bits_per_second / 1e9,
        retransmits: report.end.sum_sent.retransmits ?? 0,
        maxStallMs: Math.round(longest),
        intervals: report.intervals.length,
      };
    } finally {
      await server.stop(2000);
    }
  })();
  done.catch(() => undefined);
  return { done };
}
