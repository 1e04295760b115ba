/**
 * A client for BIRD's control socket (what birdc speaks), without birdc.
 *
 * The protocol: BIRD greets with `0001 BIRD 2.0.12 ready.`; each command is
 * one line; the reply is lines `NNNN-text` (more follow), `NNNN text` (the
 * last one) and ` text` (continues the previous code). Codes 0xxx end a
 * command that succeeded, 1xxx carry data, 2xxx table headers, 8xxx are
 * runtime errors and 9xxx parse errors (BIRD's doc/reply_codes).
 *
 * Failure semantics: `connect` rejects with BirdControlError when the socket
 * cannot be reached or BIRD does not greet within the timeout. `command`
 * sends one command at a time (later ones wait) and rejects with
 * BirdCommandError when BIRD answers 8xxx/9xxx (the connection stays
 * usable), with BirdControlError when the connection fails or the answer
 * does not come in time (the connection is then closed: a late answer would
 * be read as the next command's).
 */
import * as net from 'net';

export class BirdControlError extends Error {
  constructor(readonly socketPath: string, message: string) {
    super(message);
    this.name = 'BirdControlError';
  }
}

/** BIRD refused a command (8xxx runtime error, 9xxx parse error). */
export class BirdCommandError extends Error {
  constructor(readonly command: string, readonly code: number, readonly text: string) {
    super(`BIRD refused "${command}": ${text} (code ${String(code).padStart(4, '0')})`);
    this.name = 'BirdCommandError';
  }
}

/**
 * A configuration BIRD cannot read (code 8002, or `bird -p` failing); `file`, `line` and `column`
 * point at the first error, as BIRD reports it.
 */
export class BirdConfigFileError extends BirdCommandError {
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
  constructor(command: string, code: number, text: string) {
    super(command, code, text);
    this.name = 'BirdConfigFileError';
    this.message = `BIRD cannot use the configuration: ${text}`;
    const m = /^(.*?):(\d+):(\d+) /.exec(text);
    if (m) {
      this.file = m[1];
      this.line = Number(m[2]);
      this.column = Number(m[3]);
    }
  }
}

export interface BirdReplyLine {
  readonly code: number;
  readonly text: string;
}

export interface BirdReply {
  readonly lines: readonly BirdReplyLine[];
}

/** One protocol of `show protocols all`; for BGP ones, one session. */
export interface BirdSession {
  name: string;
  /** 'BGP', 'Kernel', 'Static', 'Device', … */
  proto: string;
  /** 'up', 'start', 'down', … */
  state: string;
  /** When the state last changed, as BIRD prints it (its `timeformat protocol`). */
  since: string;
  /** BGP: 'Established', 'Active', 'Connect', 'Idle', … with the reason: 'Active        Socket: Connection refused'. */
  info: string;
  /** Summed over the protocol's channels; absent when no channel reports routes (the channel is down). */
  routesImported?: number;
  routesExported?: number;
  neighbor?: string;
  neighborAs?: number;
  lastError?: string;
}

/** BIRD's reply code for a configuration file it cannot read. */
export const CONFIG_FILE_ERROR = 8002;
const CONNECT_TIMEOUT_MS = 5000;
const COMMAND_TIMEOUT_MS = 10_000;

interface Pending {
  readonly cmd: string;
  readonly lines: BirdReplyLine[];
  readonly resolve: (reply: BirdReply) => void;
  readonly reject: (err: Error) => void;
}

export class BirdControl {
  private buffer = '';
  private lastCode = 0;
  private pending?: Pending;
  /** Commands wait here for the one before to finish. */
  private queue: Promise<unknown> = Promise.resolve();
  private closed?: BirdControlError;

  private constructor(readonly socketPath: string, private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.onData(chunk));
    sock.on('error', (err) => this.fail(new BirdControlError(socketPath, `lost BIRD's control socket ${socketPath}: ${err.message}`)));
    sock.on('close', () => this.fail(new BirdControlError(socketPath, `BIRD closed its control socket ${socketPath}`)));
  }

  /** Connects and waits for BIRD's greeting. */
  static connect(socketPath: string, timeoutMs = CONNECT_TIMEOUT_MS): Promise<BirdControl> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(socketPath);
      const control = new BirdControl(socketPath, sock);
      const timer = setTimeout(() => {
        control.pending = undefined;
        control.close();
        reject(new BirdControlError(socketPath, `BIRD did not greet on ${socketPath} within ${timeoutMs} ms`));
      }, timeoutMs);
      control.pending = {
        cmd: '(greeting)',
        lines: [],
        resolve: () => {
          clearTimeout(timer);
          resolve(control);
        },
        reject: (err) => {
          clearTimeout(timer);
          control.close();
          reject(err instanceof BirdControlError ? new BirdControlError(socketPath, `cannot reach BIRD on ${socketPath}: ${err.message}`) : err);
        },
      };
    });
  }

  /** Sends `cmd` (one line) and resolves with BIRD's whole reply. */
  command(cmd: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<BirdReply> {
    if (/[\r\n]/.test(cmd)) return Promise.reject(new TypeError(`a BIRD command is one line: ${JSON.stringify(cmd)}`));
    const run = this.queue.then(() => this.send(cmd, timeoutMs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.fail(new BirdControlError(this.socketPath, `the connection to ${this.socketPath} was closed`));
    this.sock.destroy();
  }

  private send(cmd: string, timeoutMs: number): Promise<BirdReply> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        reject(new BirdControlError(this.socketPath, `BIRD did not answer "${cmd}" on ${this.socketPath} within ${timeoutMs} ms`));
        this.close();
      }, timeoutMs);
      this.pending = {
        cmd,
        lines: [],
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.lastCode = 0;
      this.sock.write(`${cmd}\n`);
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      this.onLine(line);
    }
  }

  private onLine(line: string): void {
    const p = this.pending;
    if (!p) return;
    const m = /^(\d{4})([ -])(.*)$/.exec(line);
    if (!m) {
      // ` text` continues the previous code; anything else is kept the same way rather than lost.
      p.lines.push({ code: this.lastCode, text: line.startsWith(' ') ? line.slice(1) : line });
      return;
    }
    const code = Number(m[1]);
    this.lastCode = code;
    p.lines.push({ code, text: m[3] });
    if (m[2] === '-') return;
    this.pending = undefined;
    const error = p.lines.find((l) => l.code >= 8000);
    if (!error) p.resolve({ lines: p.lines });
    else if (error.code === CONFIG_FILE_ERROR) p.reject(new BirdConfigFileError(p.cmd, error.code, error.text));
    else p.reject(new BirdCommandError(p.cmd, error.code, error.text));
  }

  private fail(err: BirdControlError): void {
    if (this.closed) return;
    this.closed = err;
    const p = this.pending;
    this.pending = undefined;
    p?.reject(err);
  }
}

/** Protocols of a `show protocols all` (or `show protocols`) reply, in BIRD's order. */
export function parseProtocols(reply: BirdReply): BirdSession[] {
  const out: BirdSession[] = [];
  let current: BirdSession | undefined;
  for (const { code, text } of reply.lines) {
    if (code === 1002) {
      // Summary: name proto table state since info; `since` may be a date and a time (timeformat iso long).
      const m = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?|\S+)\s*(.*?)\s*$/.exec(text);
      if (!m) continue;
      current = { name: m[1], proto: m[2], state: m[4], since: m[5], info: m[6] };
      out.push(current);
    } else if (code === 1006 && current) {
      detail(current, text);
    }
  }
  return out;
}

function detail(s: BirdSession, text: string): void {
  const m = /^\s*([A-Za-z][A-Za-z -]*?):\s+(.*?)\s*$/.exec(text);
  if (!m) return;
  const [, key, value] = m;
  if (key === 'Neighbor address') s.neighbor = value;
  else if (key === 'Neighbor AS') s.neighborAs = Number(value);
  else if (key === 'Last error') s.lastError = value;
  else if (key === 'Routes') {
    const imported = /(\d+) imported/.exec(value);
    const exported = /(\d+) exported/.exec(value);
    if (imported) s.routesImported = (s.routesImported ?? 0) + Number(imported[1]);
    if (exported) s.routesExported = (s.routesExported ?? 0) + Number(exported[1]);
  }
}

/** Runs one command on a connection of its own. */
export async function birdCommand(socketPath: string, cmd: string, timeoutMs?: number): Promise<BirdReply> {
  const control = await BirdControl.connect(socketPath, timeoutMs);
  try {
    return await control.command(cmd, timeoutMs);
  } finally {
    control.close();
  }
}

/** The BGP sessions of the BIRD on `socketPath` (its other protocols left out). */
export async function birdSessions(socketPath: string, timeoutMs?: number): Promise<BirdSession[]> {
  return parseProtocols(await birdCommand(socketPath, 'show protocols all', timeoutMs)).filter((s) => s.proto === 'BGP');
}

/**
 * How `configure` ended: applied (`reconfigured`), being applied while
 * protocols shut down (`in-progress`), queued behind another one (`queued`),
 * or there was nothing to apply (`nothing-to-do`).
 */
export type ConfigureOutcome = 'reconfigured' | 'in-progress' | 'queued' | 'nothing-to-do' | 'checked';

const CONFIGURE_OUTCOMES: Readonly<Record<number, ConfigureOutcome>> = {
  3: 'reconfigured',
  4: 'in-progress',
  5: 'queued',
  17: 'queued',
  19: 'nothing-to-do',
  20: 'checked',
};

/** The outcome of a `configure` reply; BirdCommandError when BIRD answered otherwise (shutting down, …). */
export function parseConfigure(cmd: string, reply: BirdReply): ConfigureOutcome {
  const last = reply.lines[reply.lines.length - 1];
  const outcome = last ? CONFIGURE_OUTCOMES[last.code] : undefined;
  if (!outcome) throw new BirdCommandError(cmd, last?.code ?? 0, last?.text ?? 'empty reply');
  return outcome;
}

function quoted(file: string): string {
  if (/["\r\n]/.test(file)) throw new TypeError(`BIRD cannot name the file ${JSON.stringify(file)}`);
  return `"${file}"`;
}

/**
 * Reloads BIRD's configuration (from `file`, which then becomes the one BIRD
 * reloads from, or from the current one). A file BIRD cannot read rejects
 * with BirdConfigFileError and leaves the running configuration as it was.
 */
export async function birdConfigure(control: BirdControl, file?: string): Promise<ConfigureOutcome> {
  const cmd = file === undefined ? 'configure' : `configure ${quoted(file)}`;
  return parseConfigure(cmd, await control.command(cmd));
}

/** Parses `file` as BIRD would, without applying it; BirdConfigFileError names the first error. */
export async function birdConfigureCheck(control: BirdControl, file: string): Promise<void> {
  const cmd = `configure check ${quoted(file)}`;
  parseConfigure(cmd, await control.command(cmd));
}
