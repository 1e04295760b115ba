/**
 * wireguard-go's configuration protocol (the cross-platform UAPI): text
 * lines `key=value` over its Unix socket. `get=1` answers the device and
 * its peers; `set=1` followed by changes applies them. Every answer ends
 * with `errno=N` and an empty line; errno 0 is success. Keys are hex here
 * (base64 everywhere else in twill).
 *
 * Failure semantics: every call opens its own connection and rejects with
 * UapiError — `errno` set when wireguard-go refused the request, unset when
 * the socket cannot be reached (wireguard-go not running) or stays silent
 * past the timeout.
 */
import * as net from 'net';

export class UapiError extends Error {
  constructor(readonly socketPath: string, message: string, readonly errno?: number) {
    super(message);
    this.name = 'UapiError';
  }
}

/** A peer as wireguard-go reports it. */
export interface DevicePeer {
  /** hex */
  readonly publicKey: string;
  /** hex; all zeros when none */
  readonly presharedKey: string;
  readonly endpoint?: string;
  readonly allowedIPs: readonly string[];
  readonly keepalive: number;
  /** Seconds since the epoch; 0 when never. */
  readonly lastHandshakeSec: number;
  readonly rxBytes: number;
  readonly txBytes: number;
}

export interface DeviceState {
  /** hex; undefined when none set */
  readonly privateKey?: string;
  readonly listenPort: number;
  readonly peers: readonly DevicePeer[];
}

const TIMEOUT_MS = 5000;

/** Sends one request and resolves with the answer's lines (without `errno=` and the empty line). */
function exchange(socketPath: string, request: string, timeoutMs = TIMEOUT_MS): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let text = '';
    const done = (err?: UapiError, lines?: string[]) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(lines!);
    };
    const timer = setTimeout(() => done(new UapiError(socketPath, `wireguard-go did not answer on ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(request));
    sock.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\n\n');
      if (end < 0) return;
      const lines = text.slice(0, end).split('\n');
      const last = lines.pop() ?? '';
      const m = /^errno=(-?\d+)$/.exec(last);
      if (!m) return done(new UapiError(socketPath, `wireguard-go answered without errno on ${socketPath}: ${JSON.stringify(last)}`));
      const errno = Number(m[1]);
      if (errno !== 0) return done(new UapiError(socketPath, `wireguard-go refused the configuration (errno ${errno})`, errno));
      done(undefined, lines);
    });
    sock.on('error', (err) => done(new UapiError(socketPath, `cannot reach wireguard-go on ${socketPath}: ${err.message}`)));
    sock.on('close', () => done(new UapiError(socketPath, `wireguard-go closed ${socketPath} before answering`)));
  });
}

export async function getDevice(socketPath: string, timeoutMs?: number): Promise<DeviceState> {
  const lines = await exchange(socketPath, 'get=1\n\n', timeoutMs);
  let privateKey: string | undefined;
  let listenPort = 0;
  const peers: DevicePeer[] = [];
  let peer: { -readonly [K in keyof DevicePeer]: DevicePeer[K] } | undefined;
  for (const line of lines) {
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'public_key') {
      peer = { publicKey: value, presharedKey: '', allowedIPs: [], keepalive: 0, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 };
      peers.push(peer);
    } else if (!peer) {
      if (key === 'private_key') privateKey = value;
      else if (key === 'listen_port') listenPort = Number(value);
    } else if (key === 'preshared_key') peer.presharedKey = value;
    else if (key === 'endpoint') peer.endpoint = value;
    else if (key === 'allowed_ip') peer.allowedIPs = [...peer.allowedIPs, value];
    else if (key === 'persistent_keepalive_interval') peer.keepalive = Number(value);
    else if (key === 'last_handshake_time_sec') peer.lastHandshakeSec = Number(value);
    else if (key === 'rx_bytes') peer.rxBytes = Number(value);
    else if (key === 'tx_bytes') peer.txBytes = Number(value);
  }
  return { ...(privateKey !== undefined ? { privateKey } : {}), listenPort, peers };
}

/** Applies `lines` (without `set=1` and the closing empty line). */
export async function setDevice(socketPath: string, lines: readonly string[], timeoutMs?: number): Promise<void> {
  if (lines.length === 0) return;
  await exchange(socketPath, `set=1\n${lines.join('\n')}\n\n`, timeoutMs);
}
