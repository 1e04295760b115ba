/**
 * One rtnetlink socket with many requests in flight.
 *
 * Why not the package's `RtNetlinkSocket`: its `request()` turns kernel
 * errors into a plain `Error('Request rejected: ENOTSUP')` (the errno number
 * is lost and named the libuv way), a request whose answer never comes stays
 * registered forever (keeping the process alive), and it decodes every
 * incoming message with `rt.parseMessage`, which throws (stack trace and all)
 * on each acknowledgement — a third of the CPU time of a large batch. So this
 * class uses the plain `NetlinkSocket`, decodes replies itself and matches
 * them to requests by sequence number.
 *
 * Pipelining. `request()` may be called thousands of times without waiting:
 * at most `window` requests are in the kernel's hands at once, the others wait
 * in FIFO order. The bound matters for more than speed: each answer occupies
 * the socket's receive buffer until read, and when that buffer overflows the
 * kernel flags the socket with ENOBUFS, which the package's native poll
 * handler turns into a C++ exception that aborts the whole process. The
 * window is therefore capped at what the receive buffer can hold, counting
 * `bytesPerRequest` per request (an acknowledgement measures ~700 bytes of
 * skb truesize, an error echoes the request, a GET reply carries a whole
 * object).
 *
 * Dumps. A dump's multipart reply must not interleave with other replies (the
 * package splits a multipart reply at the first foreign message), so a dump
 * waits until no request is in flight and holds the socket until its reply is
 * complete. `Netlink` keeps a second socket for dumps so that reads do not
 * wait behind a large batch of writes.
 *
 * Failure: every request settles exactly once, with its replies or with a
 * `NetlinkError` (kernel errno; ETIMEDOUT when no answer came within
 * `timeoutMs`; ECANCELED when the socket was closed first; EBADMSG when a
 * reply could not be decoded).
 */
import { createNetlink, ErrnoException, Flags, FlagsGet, NetlinkMessage, NetlinkSocket, parseError, Protocol, rt } from './package';
import { NetlinkError } from './errors';

const NLMSG_ERROR = 2;

/** Receive-buffer bytes to reserve per change in flight: its acknowledgement, or its error echoing the request. */
export const ACK_BUDGET_BYTES = 2048;
/** Receive-buffer bytes to reserve per GET in flight: a whole link with its statistics plus the acknowledgement (measured 4–8 KiB). */
export const GET_BUDGET_BYTES = 32768;

export interface RtSocketOptions {
  /** Most requests awaiting their acknowledgement at once (default 256; lowered to what the receive buffer holds). */
  window?: number;
  /** SO_RCVBUF to ask for (default 1 MiB; the kernel caps it at net.core.rmem_max, then doubles it). */
  recvBufferSize?: number;
  /** Receive-buffer bytes reserved per request in flight (default ACK_BUDGET_BYTES; GET_BUDGET_BYTES for GETs). */
  bytesPerRequest?: number;
  /** A request (or a whole dump) without an answer after this long fails with ETIMEDOUT (default 30 s). */
  timeoutMs?: number;
}

/** What a request does, for error messages: operation 'replace route', object '10.244.2.0/24 via … dev flannel.1'. */
export interface Describe {
  operation: string;
  object: string;
}

/** Turns one reply's bytes into what the caller keeps; undefined drops it. Throwing fails the request with EBADMSG. */
export type ReplyDecoder<T> = (type: number, data: Buffer) => T | undefined;

const parseReply: ReplyDecoder<rt.Message> = (type, data) => rt.parseMessage(type as rt.MessageType, data);

interface Pending {
  readonly describe: Describe;
  readonly sentAt: number;
  readonly replies: unknown[];
  /** How replies are decoded: the package's parser unless the dump brings its own. */
  readonly decode: ReplyDecoder<unknown>;
  /** for a dump: set when the kernel marked it NLM_F_DUMP_INTR (the table changed while it was read). */
  readonly dumpState?: { interrupted: boolean };
  resolve(replies: unknown[]): void;
  reject(err: NetlinkError): void;
}

interface Waiter {
  readonly kind: 'request' | 'dump';
  readonly start: () => void;
  readonly cancel: (code: string) => void;
}

const MAX_DUMP_RETRIES = 5;

export class RtSocket {
  /** Most requests in flight at once, after capping by the receive buffer. */
  readonly window: number;
  private readonly nl: NetlinkSocket;
  /** Our netlink port id, for message headers (the package would call getsockname() per message). */
  private readonly port: number;
  private readonly timeoutMs: number;
  private readonly pending = new Map<number, Pending>();
  private readonly queue: Waiter[] = [];
  private queueHead = 0;
  private inFlight = 0;
  private dump_: { seq: number; pending: Pending } | undefined;
  private dumping = false;
  private referenced = false;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(nl: NetlinkSocket, options: RtSocketOptions) {
    this.nl = nl;
    this.port = nl.address().port;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    const affordable = Math.floor(nl.getRecvBufferSize() / (options.bytesPerRequest ?? ACK_BUDGET_BYTES));
    this.window = Math.max(1, Math.min(options.window ?? 256, affordable));
    nl.on('message', (msgs) => this.onMessage(msgs));
    nl.on('invalid', (err: unknown, msg: Buffer | NetlinkMessage[]) => this.onInvalid(err, msg));
    // Answers may have been lost (e.g. ENOBUFS): what is in flight can no
    // longer be matched reliably. Queued requests were not sent and proceed.
    nl.on('error', (err: ErrnoException) => this.failInFlight(err.code || 'EIO'));
  }

  /** Opens a socket in the caller's network namespace. Throws if the process may not open netlink sockets. */
  static open(options: RtSocketOptions = {}): RtSocket {
    const nl = createNetlink(Protocol.ROUTE);
    nl.setRecvBufferSize(options.recvBufferSize ?? 1 << 20);
    return new RtSocket(nl, options);
  }

  /**
   * Sends one request (NLM_F_REQUEST|NLM_F_ACK plus `flags`) and resolves with
   * the messages the kernel returned before its acknowledgement (none for a
   * change, one for a GET).
   */
  async request(type: rt.MessageType, body: Uint8Array[], flags: number, describe: Describe): Promise<rt.Message[]> {
    return this.requestDecoded(type, body, flags, describe, parseReply);
  }

  /** `request`, with the replies turned into the caller's records by `decode` instead of the package's parser. */
  async requestDecoded<T>(type: rt.MessageType, body: Uint8Array[], flags: number, describe: Describe, decode: ReplyDecoder<T>): Promise<T[]> {
    await this.acquire('request', describe);
    return new Promise<T[]>((resolve, reject) => {
      const seq = this.nl.generateSeq();
      this.pending.set(seq, { describe, sentAt: Date.now(), replies: [], decode, resolve: (r) => resolve(r as T[]), reject });
      this.armSweeper();
      this.send(type, body, Flags.REQUEST | Flags.ACK | flags, seq);
    });
  }

  /**
   * Dumps a table (NLM_F_DUMP) and resolves with every entry. Retried when
   * the kernel marks the dump inconsistent (the table changed meanwhile).
   */
  async dump(type: rt.MessageType, body: Uint8Array[], describe: Describe): Promise<rt.Message[]> {
    return this.dumpDecoded(type, body, describe, parseReply);
  }

  /**
   * A dump whose replies `decode` turns into the caller's own records as they
   * arrive, skipping the package's parser: for the tables a repair reads by
   * the thousand (decodeNeighbor, decodeFdb, decodeRoute).
   */
  async dumpDecoded<T>(type: rt.MessageType, body: Uint8Array[], describe: Describe, decode: ReplyDecoder<T>): Promise<T[]> {
    for (let attempt = 0; ; attempt++) {
      const { messages, interrupted } = await this.dumpOnce(type, body, describe, decode);
      if (!interrupted || attempt >= MAX_DUMP_RETRIES) return messages as T[];
    }
  }

  /** Fails everything queued or in flight with ECANCELED and closes the socket. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failQueued('ECANCELED');
    this.failInFlight('ECANCELED');
    if (this.sweeper) clearInterval(this.sweeper);
    this.nl.close();
  }

  private async dumpOnce(type: rt.MessageType, body: Uint8Array[], describe: Describe, decode: ReplyDecoder<unknown>): Promise<{ messages: unknown[]; interrupted: boolean }> {
    await this.acquire('dump', describe);
    const dumpState = { interrupted: false };
    const messages = await new Promise<unknown[]>((resolve, reject) => {
      const seq = this.nl.generateSeq();
      this.dump_ = { seq, pending: { describe, sentAt: Date.now(), replies: [], decode, resolve, reject, dumpState } };
      this.armSweeper();
      this.send(type, body, Flags.REQUEST | FlagsGet.DUMP, seq);
    });
    return { messages, interrupted: dumpState.interrupted };
  }

  private send(type: number, body: Uint8Array[], flags: number, seq: number): void {
    if (this.closed) {
      this.settle(seq, 'ECANCELED');
      return;
    }
    try {
      this.nl.send(type, body, { flags, seq, localPort: this.port }, (err?: ErrnoException) => {
        if (err) this.settle(seq, err.code || 'EIO');
      });
    } catch (err) {
      this.settle(seq, (err as ErrnoException).code || 'EIO');
    }
  }

  private onMessage(msgs: NetlinkMessage[]): void {
    const dump = this.dump_;
    if (dump) {
      // The package strips NLMSG_DONE, so an empty dump arrives as []. Nothing
      // else is in flight while a dump runs; a late answer to a timed-out
      // request is recognised by its sequence number.
      if (msgs.length > 0 && msgs[0].seq !== dump.seq) return;
      if (msgs.length > 0 && msgs[0].type === NLMSG_ERROR) {
        const { errno } = parseError(msgs[0].data, msgs[0].flags);
        this.settle(dump.seq, errno === 0 ? undefined : -errno);
        return;
      }
      if (dump.pending.dumpState && msgs.some((m) => (m.flags & Flags.DUMP_INTR) !== 0)) dump.pending.dumpState.interrupted = true;
      if (this.decodeInto(dump.pending, msgs)) this.settle(dump.seq);
      return;
    }
    if (msgs.length === 0) return;
    const seq = msgs[0].seq;
    const pending = this.pending.get(seq);
    if (!pending) return;
    for (const m of msgs) {
      if (m.type === NLMSG_ERROR) {
        const { errno } = parseError(m.data, m.flags);
        this.settle(seq, errno === 0 ? undefined : -errno);
        return;
      }
      if (!this.decodeInto(pending, [m])) return;
    }
  }

  /** Decodes replies into `pending.replies`; on failure settles it with EBADMSG and returns false. */
  private decodeInto(pending: Pending, msgs: NetlinkMessage[]): boolean {
    for (const m of msgs) {
      try {
        const reply = pending.decode(m.type, m.data);
        if (reply !== undefined) pending.replies.push(reply);
      } catch (err) {
        const seq = m.seq;
        this.settle(seq, 'EBADMSG', `reply could not be decoded: ${(err as Error).message}`);
        return false;
      }
    }
    return true;
  }

  /** A reply the package could not frame (e.g. a multipart reply cut short): fails the dump it belongs to. */
  private onInvalid(err: unknown, msg: Buffer | NetlinkMessage[]): void {
    const dump = this.dump_;
    if (!dump) return;
    const seq = Array.isArray(msg) && msg.length > 0 ? msg[0].seq : dump.seq;
    if (seq === dump.seq) this.settle(dump.seq, 'EBADMSG', `malformed reply: ${err instanceof Error ? err.message : String(err)}`);
  }

  /**
   * Settles the request `seq`: success when `outcome` is undefined, else with
   * the errno (number) or errno name (string). Releases its slot.
   */
  private settle(seq: number, outcome?: number | string, detail?: string): void {
    let pending: Pending | undefined;
    let kind: 'request' | 'dump';
    if (this.dump_ && this.dump_.seq === seq) {
      pending = this.dump_.pending;
      this.dump_ = undefined;
      kind = 'dump';
    } else {
      pending = this.pending.get(seq);
      if (!pending) return;
      this.pending.delete(seq);
      kind = 'request';
    }
    if (outcome === undefined) pending.resolve(pending.replies);
    else if (typeof outcome === 'number') pending.reject(NetlinkError.fromKernel(pending.describe.operation, pending.describe.object, -outcome));
    else pending.reject(new NetlinkError(pending.describe.operation, pending.describe.object, outcome, detail));
    this.release(kind);
  }

  private failInFlight(code: string): void {
    if (this.dump_) this.settle(this.dump_.seq, code);
    for (const seq of [...this.pending.keys()]) this.settle(seq, code);
  }

  private failQueued(code: string): void {
    const waiters = this.queue.slice(this.queueHead);
    this.queue.length = 0;
    this.queueHead = 0;
    for (const waiter of waiters) waiter.cancel(code);
  }

  private acquire(kind: 'request' | 'dump', describe: Describe): Promise<void> {
    if (this.closed) return Promise.reject(new NetlinkError(describe.operation, describe.object, 'ECANCELED'));
    return new Promise<void>((start, reject) => {
      this.queue.push({
        kind,
        start,
        cancel: (code) => reject(new NetlinkError(describe.operation, describe.object, code)),
      });
      this.pump();
    });
  }

  private release(kind: 'request' | 'dump'): void {
    if (kind === 'request') this.inFlight--;
    else this.dumping = false;
    this.pump();
  }

  /** Starts waiters in FIFO order while the head may start: requests up to the window, a dump alone. */
  private pump(): void {
    while (!this.closed && this.queueHead < this.queue.length) {
      const head = this.queue[this.queueHead];
      const canStart = !this.dumping && (head.kind === 'request' ? this.inFlight < this.window : this.inFlight === 0);
      if (!canStart) break;
      this.queueHead++;
      if (head.kind === 'request') this.inFlight++;
      else this.dumping = true;
      head.start();
    }
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
    this.updateRef();
  }

  /** Keeps the event loop alive exactly while something is queued or in flight. */
  private updateRef(): void {
    if (this.closed) return;
    const busy = this.inFlight > 0 || this.dumping || this.queueHead < this.queue.length;
    if (busy !== this.referenced) {
      this.referenced = busy;
      this.nl.ref(busy);
    }
  }

  private armSweeper(): void {
    if (this.sweeper) return;
    const period = Math.max(10, Math.min(1000, this.timeoutMs / 4));
    this.sweeper = setInterval(() => this.sweep(), period);
    this.sweeper.unref();
  }

  private sweep(): void {
    const deadline = Date.now() - this.timeoutMs;
    if (this.dump_ && this.dump_.pending.sentAt < deadline) this.settle(this.dump_.seq, 'ETIMEDOUT');
    for (const [seq, pending] of this.pending) {
      if (pending.sentAt < deadline) this.settle(seq, 'ETIMEDOUT');
    }
    if (this.pending.size === 0 && !this.dump_ && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}
