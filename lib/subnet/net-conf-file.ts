/**
 * The network config from a file (`--net-config-path`, in Kubernetes a
 * ConfigMap mounted at /etc/kube-flannel/net-conf.json), read and watched.
 *
 * flanneld reads the file once; twill watches it, so that a changed
 * ConfigMap migrates live as a changed etcd key does. The kubelet updates a
 * ConfigMap mount by writing a new directory and swapping the `..data`
 * symlink, so the file itself is never written in place: the watch is on
 * the directory (fs.watch), and every burst of events leads to one re-read
 * after a short pause. Because an inotify watch can be lost (the directory
 * replaced, the watch limit reached), the file is also re-read every
 * `pollMs`. The revision is a counter that goes up each time the text seen
 * changes.
 */
import { watch, FSWatcher, promises as fs } from 'fs';
import * as path from 'path';
import type { NetworkConfigWatch, NetworkConfigWatchHooks } from './manager';

/** flanneld's --net-config-path default: where its DaemonSet mounts the ConfigMap. */
export const FLANNELD_NET_CONF_PATH = '/etc/kube-flannel/net-conf.json';
import { callListener, warnSafely } from './listeners';

export interface NetConfReading {
  readonly text: string;
  readonly revision: bigint;
}

export class NetConfFile {
  private last: string | undefined;
  private revision = 0n;

  constructor(readonly file: string) {}

  /** The file's text, or undefined when it does not exist; other read errors reject. */
  async read(): Promise<NetConfReading | undefined> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.note(undefined);
        return undefined;
      }
      throw err;
    }
    this.note(text);
    return { text, revision: this.revision };
  }

  /** The revision of the text read last (a change counts up). */
  private note(text: string | undefined): void {
    if (text !== this.last) {
      this.last = text;
      this.revision++;
    }
  }

  get current(): NetConfReading | undefined {
    return this.last === undefined ? undefined : { text: this.last, revision: this.revision };
  }

  /**
   * Reports each text newer than revision `fromRevision` − 1 once, and
   * undefined once when the file goes away. Resolves at once; never rejects.
   */
  watch(fromRevision: bigint, hooks: NetworkConfigWatchHooks, opts: { debounceMs?: number; pollMs?: number } = {}): NetworkConfigWatch {
    return new NetConfWatch(this, fromRevision - 1n, hooks, opts.debounceMs ?? 200, opts.pollMs ?? 10_000);
  }
}

class NetConfWatch implements NetworkConfigWatch {
  private watcher?: FSWatcher;
  private debounce?: NodeJS.Timeout;
  private readonly poll: NodeJS.Timeout;
  private rewatch?: NodeJS.Timeout;
  private reading: Promise<void> = Promise.resolve();
  private stopped = false;
  /** The revision the listener holds; undefined once told the file is gone. */
  private held: bigint | undefined;
  private failing = false;

  constructor(private readonly conf: NetConfFile, held: bigint, private readonly hooks: NetworkConfigWatchHooks, private readonly debounceMs: number, pollMs: number) {
    this.held = held;
    this.poll = setInterval(() => this.schedule(0), pollMs);
    this.open();
    // A change between the caller's read and this watch is not missed.
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.poll);
    if (this.debounce) clearTimeout(this.debounce);
    if (this.rewatch) clearTimeout(this.rewatch);
    this.watcher?.close();
    await this.reading;
  }

  private open(): void {
    if (this.stopped) return;
    try {
      const w = watch(path.dirname(this.conf.file), { persistent: false }, () => this.schedule(this.debounceMs));
      w.on('error', (err) => {
        w.close();
        if (this.watcher === w) this.watcher = undefined;
        this.warn(`stopped watching ${path.dirname(this.conf.file)} (${err.message}); re-reading ${this.conf.file} every few seconds until the watch is back`);
        this.retryOpen();
      });
      this.watcher = w;
    } catch (err) {
      this.warn(`cannot watch ${path.dirname(this.conf.file)} (${(err as Error).message}); re-reading ${this.conf.file} every few seconds until it can`);
      this.retryOpen();
    }
  }

  private retryOpen(): void {
    if (this.stopped || this.rewatch) return;
    this.rewatch = setTimeout(() => {
      this.rewatch = undefined;
      this.open();
      this.schedule(0);
    }, 5000);
  }

  private schedule(ms: number): void {
    if (this.stopped || this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.reading = this.reading.then(() => this.check());
    }, ms);
  }

  private async check(): Promise<void> {
    if (this.stopped) return;
    let found: NetConfReading | undefined;
    try {
      found = await this.conf.read();
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.warn(`cannot read ${this.conf.file} (${(err as Error).message}); keeping the running config`);
      this.failing = true;
      return;
    }
    if (this.stopped) return;
    if (found ? this.held !== undefined && found.revision <= this.held : this.held === undefined) return;
    this.held = found?.revision;
    callListener(() => this.hooks.onChange(found), 'the network config listener', this.hooks.onWarning);
  }

  private warn(message: string): void {
    warnSafely(this.hooks.onWarning, message);
  }
}
