/**
 * The etcd key layout and the raw operations on it:
 *   <prefix>/config            the network config JSON
 *   <prefix>/subnets/<key>     one lease per node (see lease-codec.ts)
 * Every call may reject with an etcd3 error when etcd is unreachable; the
 * callers decide whether to retry. Nothing here interprets lease values.
 */
import type { Etcd3, Watcher, IKeyValue } from 'etcd3';

export interface RawKV {
  /** The key with `<prefix>/subnets/` removed. */
  readonly key: string;
  readonly value: string;
  /** etcd lease id as a decimal string; undefined when the key has no lease. */
  readonly leaseId?: string;
  readonly modRevision: bigint;
  readonly createRevision: bigint;
}

export interface LeaseListing {
  readonly kvs: RawKV[];
  /** The store revision the listing is consistent with; watch from revision + 1. */
  readonly revision: bigint;
}

export class EtcdRegistry {
  readonly configKey: string;
  readonly subnetsPrefix: string;

  constructor(readonly client: Etcd3, prefix: string) {
    const p = prefix.replace(/\/+$/, '');
    this.configKey = `${p}/config`;
    this.subnetsPrefix = `${p}/subnets/`;
  }

  async getConfig(): Promise<{ text: string; revision: bigint } | undefined> {
    const res = await this.client.kv.range({ key: Buffer.from(this.configKey) });
    const kv = res.kvs[0];
    return kv ? { text: kv.value.toString('utf8'), revision: BigInt(kv.mod_revision) } : undefined;
  }

  /** Writes the config whatever it held (setting up a fresh etcd); `writeConfigIfUnchanged` for an edit. */
  async putConfig(text: string): Promise<void> {
    await this.client.kv.put({ key: Buffer.from(this.configKey), value: Buffer.from(text) });
  }

  /**
   * Writes the config only while its key is still at `modRevision` (an etcd
   * transaction on the mod revision), so an edit made since it was read is
   * never overwritten and a deleted config is not brought back. `written`
   * is false when someone changed or deleted it: nothing was written.
   */
  async writeConfigIfUnchanged(text: string, modRevision: bigint): Promise<{ written: boolean; revision: bigint }> {
    const key = Buffer.from(this.configKey);
    const res = await this.client.kv.txn({
      compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: modRevision.toString() }],
      success: [{ request_put: { key, value: Buffer.from(text) } }],
      failure: [],
    });
    return { written: res.succeeded, revision: BigInt(res.header.revision) };
  }

  /** The config and the store revision it was read at (the key's own mod revision may lie in the compacted range). */
  async readConfigAt(): Promise<{ found?: { text: string; revision: bigint }; revision: bigint }> {
    const res = await this.client.kv.range({ key: Buffer.from(this.configKey) });
    const kv = res.kvs[0];
    return {
      found: kv ? { text: kv.value.toString('utf8'), revision: BigInt(kv.mod_revision) } : undefined,
      revision: BigInt(res.header.revision),
    };
  }

  async listLeases(): Promise<LeaseListing> {
    const start = Buffer.from(this.subnetsPrefix);
    const res = await this.client.kv.range({ key: start, range_end: prefixEnd(start) });
    return { kvs: res.kvs.map((kv) => this.toRaw(kv)), revision: BigInt(res.header.revision) };
  }

  async getLease(key: string): Promise<RawKV | undefined> {
    const res = await this.client.kv.range({ key: Buffer.from(this.subnetsPrefix + key) });
    return res.kvs[0] ? this.toRaw(res.kvs[0]) : undefined;
  }

  async grant(ttlSeconds: number): Promise<string> {
    const res = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds });
    return String(res.ID);
  }

  async revoke(leaseId: string): Promise<void> {
    await this.client.leaseClient.leaseRevoke({ ID: leaseId });
  }

  /** Seconds the etcd lease has left; -1 when it no longer exists. */
  async timeToLive(leaseId: string): Promise<number> {
    const res = await this.client.leaseClient.leaseTimeToLive({ ID: leaseId });
    return Number(res.TTL);
  }

  /**
   * One keepalive for an existing etcd lease, over a short-lived stream.
   * Resolves to the TTL granted anew; 0 when etcd no longer knows the lease.
   */
  async keepAliveOnce(leaseId: string): Promise<number> {
    const stream = await this.client.leaseClient.leaseKeepAlive();
    try {
      return await new Promise<number>((resolve, reject) => {
        stream.on('data', (res) => resolve(Number(res.TTL)));
        stream.on('error', reject);
        stream.on('end', () => reject(new Error('etcd closed the keepalive stream')));
        stream.write({ ID: leaseId });
      });
    } finally {
      stream.end();
    }
  }

  /**
   * Creates `key` only if it has never existed (create revision 0), bound to
   * `leaseId` (or to none for a reservation). False when someone else has it.
   */
  async createIfAbsent(key: string, value: string, leaseId: string | undefined): Promise<{ created: boolean; revision: bigint }> {
    const full = Buffer.from(this.subnetsPrefix + key);
    const res = await this.client.kv.txn({
      compare: [{ key: full, target: 'Create', result: 'Equal', create_revision: '0' }],
      success: [{ request_put: { key: full, value: Buffer.from(value), lease: leaseId ?? '0' } }],
      failure: [],
    });
    return { created: res.succeeded, revision: BigInt(res.header.revision) };
  }

  /**
   * Rewrites `key` only while it is still at `modRevision`, keeping `leaseId`
   * (none for a reservation). False when someone changed or deleted it meanwhile.
   */
  async updateIfUnchanged(key: string, value: string, leaseId: string | undefined, modRevision: bigint): Promise<{ updated: boolean; revision: bigint }> {
    const full = Buffer.from(this.subnetsPrefix + key);
    const res = await this.client.kv.txn({
      compare: [{ key: full, target: 'Mod', result: 'Equal', mod_revision: modRevision.toString() }],
      success: [{ request_put: { key: full, value: Buffer.from(value), lease: leaseId ?? '0' } }],
      failure: [],
    });
    return { updated: res.succeeded, revision: BigInt(res.header.revision) };
  }

  async deleteLease(key: string): Promise<void> {
    await this.client.kv.deleteRange({ key: Buffer.from(this.subnetsPrefix + key) });
  }

  /** An unconnected watcher (etcd3 `watcher()`) on every lease key from `fromRevision`: see resyncing-watch.ts for why. */
  leaseWatcherAt(fromRevision: bigint): Watcher {
    return this.client.watch().prefix(this.subnetsPrefix).startRevision(fromRevision.toString()).watcher();
  }

  /** An unconnected watcher on the config key from `fromRevision`. */
  configWatcherAt(fromRevision: bigint): Watcher {
    return this.client.watch().key(this.configKey).startRevision(fromRevision.toString()).watcher();
  }

  toRaw(kv: IKeyValue): RawKV {
    const lease = String(kv.lease ?? '0');
    return {
      key: kv.key.toString('utf8').slice(this.subnetsPrefix.length),
      value: kv.value.toString('utf8'),
      leaseId: lease === '0' ? undefined : lease,
      modRevision: BigInt(kv.mod_revision),
      createRevision: BigInt(kv.create_revision),
    };
  }
}

/** The smallest key greater than every key with this prefix (etcd's range_end for a prefix). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
