/**
 * This node's own lease: acquiring it, keeping it alive, getting it back
 * when it is lost.
 *
 * Acquisition follows flanneld: reuse the lease that already carries this
 * node's PublicIP; else the subnet of the previous subnet.env if still
 * free; else a random one of the first 100 free subnets. A new key is
 * created in a transaction on create-revision 0, so two nodes can never
 * both get a subnet; on a collision it tries another (10 times at most).
 *
 * Where twill differs from flanneld (DESIGN §5): reservations (keys with no
 * etcd lease) are never taken over nor given a TTL; renewal keeps the same
 * etcd lease alive rather than granting a new one each day; and when the
 * own lease is deleted or expires, the keeper takes the same subnet back
 * (or, if someone else has taken it, a new one, reported loudly through
 * `onOwnLeaseChanged`) instead of exiting. It learns of a deletion from the
 * lease watch (`noticeLeaseEvents`), of expiry from its renewal.
 */
import type { NetworkConfig } from '../config';
import type { Log } from '../observe/logger';
import { carriesIPv4, heldSubnets, leaseLabel, underlayAddress, type Lease, type LeaseAttrs, type LeaseEvent } from './lease';
import type { EtcdRegistry, LeaseListing, RawKV } from './etcd-registry';
import type { PreviousSubnets } from './subnet-file';
import { encodeLeaseAttrs, formatSubnetKey, parseSubnetKey, SubnetKey } from './lease-codec';
import { leaseFromRaw } from './lease-validation';
import { allocationRange, pickSubnet, wantedSubnet } from './allocator';
import { Backoff } from './backoff';
import { setTimeout as sleep } from 'timers/promises';

export const MAX_CREATE_ATTEMPTS = 10;
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface LeaseKeeperOptions {
  readonly ttlSeconds: number;
  /** Renew this long before expiry (flanneld's --subnet-lease-renew-margin, in seconds here). */
  readonly renewMarginSeconds: number;
  readonly log: Log;
  /** Told when the own lease had to be re-acquired; `previous` differs in subnet when the old one was lost. */
  readonly onOwnLeaseChanged?: (lease: Lease, previous: Lease) => void;
  readonly random?: () => number;
}

export class CollisionLimitError extends Error {
  constructor(attempts: number) {
    super(`could not create a subnet lease after ${attempts} attempts: each chosen subnet was taken by another node at the same moment; will retry`);
    this.name = 'CollisionLimitError';
  }
}

export class LeaseKeeper {
  private own?: Lease;
  private attrs?: LeaseAttrs;
  private config?: NetworkConfig;
  private expiry?: Date;
  private renewTimer?: NodeJS.Timeout;
  private closed = false;
  private recovering?: Promise<void>;
  private readonly renewBackoff = new Backoff(1000, 30_000);
  private readonly stopping = new AbortController();
  /** The listing the last acquisition was decided on; a lease watch can start from it. */
  private acquisitionListing?: LeaseListing;

  constructor(private readonly registry: EtcdRegistry, private readonly opts: LeaseKeeperOptions) {}

  ownLease(): Lease | undefined {
    return this.own;
  }

  leaseExpiry(): Date | undefined {
    return this.expiry;
  }

  /** The listing the last acquisition was decided on, once: watching from it also delivers the own lease's creation. */
  takeAcquisitionListing(): LeaseListing | undefined {
    const listing = this.acquisitionListing;
    this.acquisitionListing = undefined;
    return listing;
  }

  async acquire(config: NetworkConfig, attrs: LeaseAttrs, previous: PreviousSubnets): Promise<Lease> {
    this.config = config;
    this.attrs = attrs;
    const lease = await this.tryAcquire(config, attrs, previous);
    this.setOwn(lease);
    return lease;
  }

  async updateAttrs(attrs: LeaseAttrs): Promise<void> {
    this.attrs = attrs;
    const own = this.own;
    if (!own || encodeLeaseAttrs(own.attrs) === encodeLeaseAttrs(attrs)) return;
    const res = await this.registry.updateIfUnchanged(own.key, encodeLeaseAttrs(attrs), own.etcdLeaseId, own.modRevision);
    if (res.updated) {
      this.own = { ...own, attrs, modRevision: res.revision };
    } else {
      await this.recover('the lease changed under us while updating it');
    }
  }

  /** etcd answers again: a renewal that failed meanwhile is due now. */
  noticeConnectivity(up: boolean): void {
    if (up && this.renewalOverdue()) this.scheduleRenewal(0);
  }

  /** What the lease watch saw of the own lease: deleted, written over by another node, or rewritten. */
  noticeLeaseEvents(events: readonly LeaseEvent[]): void {
    const own = this.own;
    if (!own) return;
    for (const ev of events) {
      if (ev.lease.key !== own.key) continue;
      if (ev.type === 'removed') void this.recover('the lease was deleted from etcd');
      else if (underlayAddress(ev.lease.attrs) !== underlayAddress(own.attrs)) void this.recover(`another node (${underlayAddress(ev.lease.attrs) ?? ev.lease.attrs.publicIP}) wrote over the lease`);
      else if (ev.lease.modRevision > own.modRevision) this.own = { ...own, modRevision: ev.lease.modRevision };
    }
  }

  /** Stops renewing and recovering. The lease stays in etcd, so a restart finds it. */
  async close(): Promise<void> {
    this.closed = true;
    this.stopping.abort();
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    await this.recovering?.catch(() => undefined);
  }

  private async tryAcquire(config: NetworkConfig, attrs: LeaseAttrs, previous: PreviousSubnets, prefer?: SubnetKey): Promise<Lease> {
    const range = allocationRange(config);
    const value = encodeLeaseAttrs(attrs);
    for (let attempt = 1; attempt <= MAX_CREATE_ATTEMPTS; attempt++) {
      const listing = await this.registry.listLeases();
      this.acquisitionListing = listing;
      const taken = new Set<string>();
      const mine: RawKV[] = [];
      for (const raw of listing.kvs) {
        let key: SubnetKey;
        try {
          key = parseSubnetKey(raw.key);
        } catch {
          continue; // not a lease key: it occupies nothing
        }
        // What it holds: the empty IPv4 part of an IPv6-only key blocks nothing.
        for (const held of heldSubnets(key)) taken.add(held.toString());
        if (!prefer && this.carriesThisNode(raw, config, attrs)) mine.push(raw);
      }

      // As flanneld, a lease of this node made for the other family plan (IPv6
      // turned on or off since) is given up; a reservation is the operator's and
      // is left alone.
      const unfit = mine.filter((raw) => familyMismatch(raw, config) !== undefined);
      for (const raw of unfit) {
        const why = familyMismatch(raw, config);
        if (raw.leaseId === undefined) {
          this.opts.log.warn('this node\'s reserved subnet does not fit the network config; leaving it and taking another', { key: raw.key, why });
          continue;
        }
        this.opts.log.info('dropping this node\'s lease: it does not fit the network config', { key: raw.key, why });
        await this.registry.deleteLease(raw.key);
        await this.registry.revoke(raw.leaseId).catch(() => undefined); // its etcd lease served only that key
      }
      const existing = mine.filter((raw) => !unfit.includes(raw)).sort((a, b) => Number(a.createRevision - b.createRevision))[0];
      if (existing) {
        const adopted = await this.adopt(existing, config, value);
        if (adopted) return adopted;
        continue; // it vanished or changed meanwhile: look again
      }

      const wanted = prefer ?? previous;
      const candidate: SubnetKey = wantedSubnet(range, taken, wanted) ?? pickSubnet(range, taken, this.opts.random);
      prefer = undefined;
      const key = formatSubnetKey(candidate);
      const leaseId = await this.registry.grant(this.opts.ttlSeconds);
      const res = await this.registry.createIfAbsent(key, value, leaseId);
      if (res.created) {
        this.expiry = new Date(Date.now() + this.opts.ttlSeconds * 1000);
        this.opts.log.info('acquired subnet lease', { subnet: leaseLabel(candidate), ipv6Subnet: candidate.ipv6Subnet?.toString(), ttlSeconds: this.opts.ttlSeconds });
        return { key, subnet: candidate.subnet, ipv6Subnet: candidate.ipv6Subnet, attrs, etcdLeaseId: leaseId, modRevision: res.revision };
      }
      await this.registry.revoke(leaseId).catch(() => undefined);
      this.opts.log.info('subnet taken by another node at the same moment; trying another', { subnet: leaseLabel(candidate), attempt });
    }
    throw new CollisionLimitError(MAX_CREATE_ATTEMPTS);
  }

  /** A lease carrying this node's PublicIP, or, IPv6 only (PublicIP "0.0.0.0"), its PublicIPv6. */
  private carriesThisNode(raw: RawKV, config: NetworkConfig, attrs: LeaseAttrs): boolean {
    const mine = underlayAddress(attrs);
    if (mine === undefined) return false;
    try {
      const lease = leaseFromRaw(raw, config);
      return underlayAddress(lease.attrs) === mine;
    } catch {
      return false;
    }
  }

  /** Takes over an existing lease of this node, keeping its etcd lease (or its lack of one). */
  private async adopt(raw: RawKV, config: NetworkConfig, value: string): Promise<Lease | undefined> {
    let modRevision = raw.modRevision;
    if (raw.leaseId !== undefined) {
      const ttl = await this.registry.keepAliveOnce(raw.leaseId);
      if (ttl <= 0) return undefined;
      this.expiry = new Date(Date.now() + ttl * 1000);
    } else {
      this.expiry = undefined;
    }
    if (raw.value !== value) {
      const res = await this.registry.updateIfUnchanged(raw.key, value, raw.leaseId, raw.modRevision);
      if (!res.updated) return undefined;
      modRevision = res.revision;
    }
    const lease = leaseFromRaw({ ...raw, value, modRevision }, config);
    this.opts.log.info(raw.leaseId === undefined ? 'using reserved subnet' : 'reusing existing subnet lease', { subnet: leaseLabel(lease), ipv6Subnet: lease.ipv6Subnet?.toString() });
    return lease;
  }

  private setOwn(lease: Lease): void {
    this.own = lease;
    this.scheduleRenewal();
  }

  private scheduleRenewal(delayMs?: number): void {
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    const own = this.own;
    if (this.closed || !own || own.etcdLeaseId === undefined) return;
    const ttlMs = this.opts.ttlSeconds * 1000;
    const margin = Math.min(this.opts.renewMarginSeconds * 1000, ttlMs / 2);
    const due = delayMs ?? Math.max(0, (this.expiry?.getTime() ?? Date.now() + ttlMs) - margin - Date.now());
    // setTimeout fires at once for delays past 2^31−1 ms (24.8 days); an early
    // renewal of a very long lease is harmless, a renewal loop is not.
    this.renewTimer = setTimeout(() => void this.renew(), Math.min(due, MAX_TIMER_MS));
  }

  /** True when a renewal failed and is waiting for its retry (etcd was away). */
  private renewalOverdue(): boolean {
    const own = this.own;
    if (!own?.etcdLeaseId || !this.expiry) return false;
    const ttlMs = this.opts.ttlSeconds * 1000;
    const margin = Math.min(this.opts.renewMarginSeconds * 1000, ttlMs / 2);
    return Date.now() >= this.expiry.getTime() - margin;
  }

  private async renew(): Promise<void> {
    const own = this.own;
    if (this.closed || !own?.etcdLeaseId) return;
    try {
      const ttl = await this.registry.keepAliveOnce(own.etcdLeaseId);
      if (ttl <= 0) {
        await this.recover('the etcd lease had expired');
        return;
      }
      this.expiry = new Date(Date.now() + ttl * 1000);
      this.renewBackoff.reset();
      this.opts.log.debug('renewed subnet lease', { subnet: leaseLabel(own), expires: this.expiry.toISOString() });
      this.scheduleRenewal();
    } catch (err) {
      this.opts.log.debug('lease renewal failed; retrying', { error: (err as Error).message });
      // Back off, but never past the point where the lease could expire
      // between two attempts: as expiry nears, retries come closer together.
      const left = (this.expiry?.getTime() ?? Date.now()) - Date.now();
      this.scheduleRenewal(Math.min(this.renewBackoff.next(), Math.max(200, left / 4)));
    }
  }

  /**
   * Gets the own lease back after it was lost: the same subnet if it is
   * still free, else a new one. Retries with backoff while etcd is away.
   */
  private recover(reason: string): Promise<void> {
    if (!this.recovering) {
      this.recovering = this.doRecover(reason).finally(() => {
        this.recovering = undefined;
      });
    }
    return this.recovering;
  }

  private async doRecover(reason: string): Promise<void> {
    const previous = this.own;
    const config = this.config;
    const attrs = this.attrs;
    if (!previous || !config || !attrs) return;
    this.opts.log.warn('own subnet lease lost; acquiring it again', { subnet: leaseLabel(previous), reason });
    const backoff = new Backoff(500, 15_000);
    while (!this.closed) {
      try {
        const stillOurs = await this.registry.getLease(previous.key);
        if (stillOurs && this.carriesThisNode(stillOurs, config, attrs) && stillOurs.leaseId !== undefined) {
          const adopted = await this.adopt(stillOurs, config, encodeLeaseAttrs(attrs));
          if (adopted) {
            this.setOwn(adopted);
            return;
          }
        }
        const lease = await this.tryAcquire(config, attrs, {}, { subnet: previous.subnet, ipv6Subnet: previous.ipv6Subnet });
        this.setOwn(lease);
        if (lease.key !== previous.key) {
          this.opts.log.error('own subnet was taken by another node; moved to a new subnet — pods on the old subnet must be restarted', {
            old: leaseLabel(previous),
            new: leaseLabel(lease),
          });
        } else {
          this.opts.log.info('own subnet lease re-acquired', { subnet: leaseLabel(lease) });
        }
        this.opts.onOwnLeaseChanged?.(lease, previous);
        return;
      } catch (err) {
        this.opts.log.debug('re-acquiring the lease failed; retrying', { error: (err as Error).message });
        await sleep(backoff.next(), undefined, { signal: this.stopping.signal }).catch(() => undefined);
      }
    }
  }
}

/**
 * Why a lease key does not fit the config's address families: an IPv6
 * subnet is wanted exactly when EnableIPv6 (flanneld's
 * isIPv6SubnetConfigCompat). Undefined when it fits.
 */
export function familyMismatch(raw: RawKV, config: NetworkConfig): string | undefined {
  let key: SubnetKey;
  try {
    key = parseSubnetKey(raw.key);
  } catch {
    return 'not a lease key';
  }
  const hasIPv4 = carriesIPv4(key);
  if (config.enableIPv4 && !hasIPv4) return 'EnableIPv4 is true but the lease has no IPv4 subnet';
  if (!config.enableIPv4 && hasIPv4) return 'EnableIPv4 is false but the lease has an IPv4 subnet';
  if (config.enableIPv6 && !key.ipv6Subnet) return 'EnableIPv6 is true but the lease has no IPv6 subnet';
  if (!config.enableIPv6 && key.ipv6Subnet) return 'EnableIPv6 is false but the lease has an IPv6 subnet';
  return undefined;
}
