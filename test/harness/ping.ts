/**
 * ICMP reachability from inside a namespace, with iputils `ping`.
 *
 * `ping()` is a bounded probe: it sends `count` echoes and reports what came
 * back. `startPingStream()` keeps a steady stream going while a test restarts
 * or migrates something, and on `stop()` says exactly which sequence numbers
 * went unanswered, so a test can assert that nothing was lost.
 *
 * Both refuse targets outside the ranges tests may use (`assertSafeTarget`)
 * and both are bounded in time even if the test process dies: every ping
 * carries a deadline (`-w`).
 */
import { assertSafeTarget } from './cluster';
import { CommandError, NsProcess, nsArgv, run, sleep } from './netns';

export interface PingOptions {
  /** Echo requests to send; default 3. */
  count?: number;
  /** Gap between requests; default 200 ms (root may go lower). */
  intervalMs?: number;
  /** Give up after this long; default count × interval + 2 s. */
  timeoutMs?: number;
}

export interface PingResult {
  sent: number;
  received: number;
  lossPct: number;
  /** Mean round-trip time, null when nothing came back. */
  rttAvgMs: number | null;
}

/** ping could not run at all (no summary printed): bad address, no route, no binary. */
export class PingError extends Error {
  constructor(readonly fromNs: string | null, readonly target: string, readonly detail: string) {
    super(`ping ${target} from ${fromNs ?? 'root namespace'} failed: ${detail}`);
    this.name = 'PingError';
  }
}

/**
 * Sends `count` echo requests from `fromNs` (null = root namespace) to `toIp`.
 * Resolves with the counts whether or not replies came back (100 % loss is a
 * result, not an error); rejects with `PingError` only when ping printed no
 * summary, e.g. "Network is unreachable" before anything was sent.
 */
export async function ping(fromNs: string | null, toIp: string, opts: PingOptions = {}): Promise<PingResult> {
  assertSafeTarget(toIp, fromNs);
  const count = opts.count ?? 3;
  const intervalMs = opts.intervalMs ?? 200;
  const timeoutMs = opts.timeoutMs ?? count * intervalMs + 2000;
  const deadlineS = Math.max(1, Math.ceil(timeoutMs / 1000));
  const argv = nsArgv(fromNs, [
    'ping', '-n', '-q', '-c', String(count), '-i', seconds(intervalMs), '-w', String(deadlineS), toIp,
  ]);
  let stdout: string;
  let stderr = '';
  try {
    stdout = (await run(argv, { timeoutMs: timeoutMs + 5000 })).stdout;
  } catch (e) {
    // Exit 1 means "fewer replies than asked for": still a result.
    if (!(e instanceof CommandError) || e.exitCode !== 1) {
      throw new PingError(fromNs, toIp, e instanceof Error ? e.message : String(e));
    }
    stdout = e.stdout;
    stderr = e.stderr;
  }
  const summary = parseSummary(stdout);
  if (!summary) throw new PingError(fromNs, toIp, `no summary in output: ${(stderr || stdout).trim()}`);
  return summary;
}

/** Parses iputils' closing lines ("N packets transmitted, M received, …" and "rtt min/avg/max/mdev = …"). */
export function parseSummary(text: string): PingResult | null {
  const counts = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(text);
  if (!counts) return null;
  const sent = Number(counts[1]);
  const received = Number(counts[2]);
  const rtt = /(?:rtt|round-trip) min\/avg\/max(?:\/mdev)? = [\d.]+\/([\d.]+)\//.exec(text);
  return {
    sent,
    received,
    lossPct: sent === 0 ? 100 : ((sent - received) / sent) * 100,
    rttAvgMs: rtt ? Number(rtt[1]) : null,
  };
}

export interface PingStreamOptions {
  /** ping stops by itself after this long even if never stopped; default 10 min. */
  maxDurationMs?: number;
  /**
   * On stop, wait up to this long for one fresh reply so that packets merely
   * in flight are not counted as lost; default max(1 s, 3 intervals).
   */
  graceMs?: number;
}

export interface PingStreamReport {
  /** Echo requests ping says it sent. */
  sent: number;
  /** Distinct sequence numbers answered. */
  received: number;
  /** Requests that went unanswered, in-flight ones at stop excepted. */
  lost: number;
  /** Their sequence numbers (iputils counts from 1). */
  lostSeqs: number[];
  /** Unanswered requests sent after the last reply while the path was still working at stop. */
  inFlightAtStop: number;
  lossPct: number;
  duplicates: number;
  /** ICMP errors ping reported (e.g. "Destination Host Unreachable"). */
  errors: number;
  /** Longest time between two consecutive replies, from ping's -D timestamps; the outage a test saw. */
  maxGapMs: number;
}

/** A running `ping -i 1/pps`; see `startPingStream`. */
export class PingStream {
  private readonly replied = new Set<number>();
  private duplicates = 0;
  private errors = 0;
  private lastReplySeq = 0;
  private lastReplyTs: number | null = null;
  private maxGapMs = 0;
  private seqBase = 0;
  private lastRawSeq = -1;
  private waiters: (() => void)[] = [];
  private report: Promise<PingStreamReport> | null = null;

  constructor(
    private readonly proc: NsProcess,
    readonly target: string,
    readonly pps: number,
    private readonly graceMs: number,
  ) {
    proc.onLine((line, stream) => {
      if (stream === 'stdout') this.onLine(line);
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Distinct replies so far. */
  get received(): number {
    return this.replied.size;
  }

  /** Resolves once `n` distinct replies have arrived; rejects after `timeoutMs`. */
  async waitForReplies(n: number, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.replied.size < n) {
      if (Date.now() >= deadline || this.proc.exitedWith) {
        throw new Error(`ping stream to ${this.target}: ${this.replied.size} of ${n} replies after ${timeoutMs} ms`);
      }
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), sleep(Math.max(0, deadline - Date.now()))]);
    }
  }

  /**
   * Stops the stream and reports. Waits (up to the grace period) for a reply
   * newer than the last one seen, so that a request still in flight when the
   * test calls stop is not mistaken for a loss; then SIGINT makes ping print
   * its summary. Safe to call twice.
   */
  stop(): Promise<PingStreamReport> {
    if (!this.report) this.report = this.doStop();
    return this.report;
  }

  private async doStop(): Promise<PingStreamReport> {
    const mark = this.lastReplySeq;
    const deadline = Date.now() + this.graceMs;
    while (this.lastReplySeq <= mark + 1 && Date.now() < deadline && !this.proc.exitedWith) {
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), sleep(Math.max(0, deadline - Date.now()))]);
    }
    const pathWorking = this.lastReplySeq > mark + 1;
    await this.proc.stop(3000, 'SIGINT');
    const summary = parseSummary(this.proc.stdout);
    const sent = summary?.sent ?? this.lastSeenSeq();
    const unanswered: number[] = [];
    for (let seq = 1; seq <= sent; seq++) if (!this.replied.has(seq)) unanswered.push(seq);
    const trailing = pathWorking ? unanswered.filter((s) => s > this.lastReplySeq) : [];
    const lostSeqs = unanswered.filter((s) => !trailing.includes(s));
    const counted = sent - trailing.length;
    return {
      sent,
      received: this.replied.size,
      lost: lostSeqs.length,
      lostSeqs,
      inFlightAtStop: trailing.length,
      lossPct: counted > 0 ? (lostSeqs.length / counted) * 100 : 100,
      duplicates: this.duplicates,
      errors: this.errors,
      maxGapMs: this.maxGapMs,
    };
  }

  private onLine(line: string): void {
    // "[1700000000.123456] 64 bytes from 10.244.1.2: icmp_seq=5 ttl=64 time=0.051 ms (DUP!)"
    // The address may be IPv6 ("from fd00:10:244:2::2: icmp_seq=5"): it ends at the last colon before the space.
    const reply = /^\[(\d+\.\d+)\] \d+ bytes from \S+: icmp_seq=(\d+) .*time=/.exec(line);
    if (reply) {
      const seq = this.unwrap(Number(reply[2]));
      if (this.replied.has(seq) || line.includes('(DUP!)')) {
        this.duplicates++;
        return;
      }
      this.replied.add(seq);
      const ts = Number(reply[1]) * 1000;
      if (this.lastReplyTs !== null) this.maxGapMs = Math.max(this.maxGapMs, ts - this.lastReplyTs);
      this.lastReplyTs = ts;
      this.lastReplySeq = Math.max(this.lastReplySeq, seq);
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
      return;
    }
    // "From 198.18.0.1 icmp_seq=3 Destination Host Unreachable"
    if (/icmp_seq=\d+ /.test(line) && /\bFrom\b/.test(line)) this.errors++;
    const noAnswer = /no answer yet for icmp_seq=(\d+)/.exec(line);
    if (noAnswer) this.unwrap(Number(noAnswer[1]));
  }

  /** icmp_seq is 16 bits; turn it back into a running count. */
  private unwrap(raw: number): number {
    if (this.lastRawSeq >= 0 && raw < this.lastRawSeq - 32768) this.seqBase += 65536;
    if (this.lastRawSeq < 0 || raw > this.lastRawSeq || raw < this.lastRawSeq - 32768) this.lastRawSeq = raw;
    return this.seqBase + raw;
  }

  private lastSeenSeq(): number {
    return Math.max(this.lastReplySeq, this.seqBase + Math.max(0, this.lastRawSeq));
  }
}

/**
 * Starts `ping -D -O -i <1/pps>` from `fromNs` to `toIp` in the background.
 * Resolves once ping is running (not once it has a reply: use
 * `waitForReplies`). pps is 1..1000.
 */
export async function startPingStream(
  fromNs: string | null,
  toIp: string,
  pps: number,
  opts: PingStreamOptions = {},
): Promise<PingStream> {
  assertSafeTarget(toIp, fromNs);
  if (!(pps >= 1 && pps <= 1000)) throw new RangeError(`startPingStream: pps must be 1..1000, got ${pps}`);
  const intervalMs = 1000 / pps;
  const maxS = Math.ceil((opts.maxDurationMs ?? 600_000) / 1000);
  const proc = await NsProcess.spawn(fromNs, [
    'ping', '-n', '-D', '-O', '-i', seconds(intervalMs), '-w', String(maxS), toIp,
  ]);
  return new PingStream(proc, toIp, pps, opts.graceMs ?? Math.max(1000, 3 * intervalMs));
}

/** Milliseconds as the seconds string ping's -i wants. */
function seconds(ms: number): string {
  return (ms / 1000).toFixed(3);
}
