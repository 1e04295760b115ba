/**
 * The datapath host: a small Node process, forked by EngineSupervisor,
 * that runs the native engine and nothing else. If native code faults, this
 * process dies and twilld notices, logs it and forks a new one; the TUN
 * device is persistent, so its addresses and routes are still there when the
 * new engine adopts it.
 *
 * Protocol in host-protocol.ts. The host exits when its parent goes (the IPC
 * channel closes) and on SIGTERM, stopping the engine first; in both cases
 * the TUN device stays.
 */
import { loadEngine, type NativeEngine } from './native-engine';
import { HOST_EXIT, type HostMessage, type ParentMessage, type WireError } from './host-protocol';
import { clearHandover, recordHandover, takeOverFrom } from './handover';

const COUNTERS_INTERVAL_MS = 1000;
const FATAL_POLL_MS = 100;

let engine: NativeEngine | null = null;
let running = false;
let tunName = '';
let faultInjection = false;
let exiting = false;
/** Set by `detach`: how long to keep forwarding once the parent is gone. */
let detachedGraceMs: number | null = null;
const timers: NodeJS.Timeout[] = [];

function send(msg: HostMessage, then?: () => void): void {
  if (process.connected) process.send!(msg, undefined, {}, () => then?.());
  else then?.();
}

function wireError(err: unknown): WireError {
  const e = err as { code?: unknown; message?: unknown };
  return { code: typeof e?.code === 'string' ? e.code : 'EIO', message: typeof e?.message === 'string' ? e.message : String(err) };
}

/** Stops the engine (the TUN stays), sends `last` and exits once it is out (or after 1 s). */
function exit(code: number, last: HostMessage[] = []): void {
  if (exiting) return;
  exiting = true;
  for (const t of timers) clearInterval(t);
  if (detachedGraceMs !== null) clearHandover(tunName, process.pid);
  if (running) {
    running = false;
    engine!.stop();
  }
  setTimeout(() => process.exit(code), 1000).unref();
  if (last.length === 0) process.exit(code);
  last.forEach((m, i) => send(m, i === last.length - 1 ? () => process.exit(code) : undefined));
}

function start(msg: Extract<ParentMessage, { kind: 'start' }>): void {
  if (running) return send({ kind: 'start-failed', error: { code: 'EBUSY', message: 'the engine is already running in this host' } });
  try {
    engine = loadEngine();
    const info = startTakingOver(engine, msg);
    running = true;
    faultInjection = msg.faultInjection;
    send({ kind: 'started', info });
  } catch (err) {
    return exit(HOST_EXIT.startFailed, [{ kind: 'start-failed', error: wireError(err) }]);
  }
  timers.push(setInterval(() => send({ kind: 'counters', counters: engine!.counters() }), COUNTERS_INTERVAL_MS));
  timers.push(
    setInterval(() => {
      const why = engine!.fatal();
      if (!why) return;
      process.stderr.write(`twill datapath host: engine stopped: ${why}\n`);
      exit(HOST_EXIT.engineFatal, [{ kind: 'counters', counters: engine!.counters() }, { kind: 'fatal', message: why }]);
    }, FATAL_POLL_MS),
  );
}

/** Starts the engine with its table; if a detached predecessor still holds the TUN or the port, ends it and starts again. */
function startTakingOver(e: NativeEngine, msg: Extract<ParentMessage, { kind: 'start' }>) {
  const go = () => {
    const info = e.start(msg.config);
    if (msg.table.length > 0) e.setPeers(Uint32Array.from(msg.table));
    return info;
  };
  try {
    return go();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if ((code !== 'EBUSY' && code !== 'EADDRINUSE') || !takeOverFrom(msg.config.tunName)) throw err;
    return go();
  }
}

function request(msg: Extract<ParentMessage, { kind: 'request' }>): void {
  const reply = (result?: unknown) => send({ kind: 'reply', id: msg.id, ok: true, result });
  const replyAndExit = () => exit(HOST_EXIT.stopped, [{ kind: 'counters', counters: engine!.counters() }, { kind: 'reply', id: msg.id, ok: true }]);
  try {
    if (!running || !engine) throw Object.assign(new Error('the engine is not running'), { code: 'ENOENT' });
    switch (msg.op) {
      case 'setPeers':
        engine.setPeers(Uint32Array.from(msg.table));
        return reply();
      case 'counters':
        return reply(engine.counters());
      case 'stop':
        return replyAndExit();
      case 'destroy': {
        const last: HostMessage = { kind: 'counters', counters: engine.counters() };
        running = false;
        engine.stop();
        engine.deleteTun(tunName);
        return exit(HOST_EXIT.stopped, [last, { kind: 'reply', id: msg.id, ok: true }]);
      }
      case 'detach':
        detachedGraceMs = msg.graceMs;
        recordHandover(tunName, process.pid);
        return reply();
      case 'crash':
        if (!faultInjection) throw Object.assign(new Error('fault injection is off'), { code: 'EPERM' });
        return engine.crash();
    }
  } catch (err) {
    send({ kind: 'reply', id: msg.id, ok: false, error: wireError(err) });
  }
}

function main(): void {
  if (!process.send) {
    process.stderr.write('twill datapath host: start me through EngineSupervisor (child_process.fork), not by hand\n');
    process.exit(HOST_EXIT.usage);
  }
  process.on('message', (msg: ParentMessage) => {
    switch (msg.kind) {
      case 'start':
        tunName = msg.config.tunName;
        return start(msg);
      case 'delete-tun':
        try {
          loadEngine().deleteTun(msg.tunName);
          return exit(HOST_EXIT.stopped, [{ kind: 'reply', id: 0, ok: true }]);
        } catch (err) {
          return exit(HOST_EXIT.stopped, [{ kind: 'reply', id: 0, ok: false, error: wireError(err) }]);
        }
      case 'request':
        return request(msg);
    }
  });
  process.on('disconnect', () => {
    if (detachedGraceMs === null || !running) return exit(HOST_EXIT.stopped);
    // twilld is restarting: forward with the last table until its successor takes over.
    setTimeout(() => exit(HOST_EXIT.stopped), detachedGraceMs);
  });
  // With the parent gone, its pipes are closed: a late write must not kill the engine.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  process.on('SIGTERM', () => exit(HOST_EXIT.stopped));
  process.on('SIGINT', () => exit(HOST_EXIT.stopped));
}

main();
