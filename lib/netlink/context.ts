/**
 * What every operation module (links, addresses, routes, neighbours, FDB)
 * needs: a socket for changes, a socket for reads, and the translation of
 * link names to interface indexes that the kernel speaks.
 */
import { AttrStream, rt } from './package';
import { NetlinkError } from './errors';
import { Describe, RtSocket } from './socket';

/** A link named by its name ('flannel.1') or by its interface index. */
export type LinkRef = string | number;

export class RtContext {
  private readonly lookups = new Map<string, Promise<number>>();

  constructor(
    /** carries changes, many in flight at once */
    readonly writer: RtSocket,
    /** carries dumps and single reads, so that they do not queue behind a batch of changes */
    readonly reader: RtSocket,
  ) {}

  /**
   * The interface index of `ref`. Lookups of one name that overlap share one
   * request, so a batch of thousands of entries on 'flannel.1' asks once; the
   * answer is not cached beyond that, because a device can be recreated with
   * a new index at any time. A missing link fails the caller's operation
   * (`describe`) with ENODEV.
   */
  async ifindex(ref: LinkRef, describe: Describe): Promise<number> {
    if (typeof ref === 'number') return ref;
    let lookup = this.lookups.get(ref);
    if (!lookup) {
      lookup = this.lookupIndex(ref);
      this.lookups.set(ref, lookup);
      const forget = (): void => { this.lookups.delete(ref); };
      lookup.then(forget, forget);
    }
    try {
      return await lookup;
    } catch (err) {
      if (err instanceof NetlinkError && err.code === 'ENODEV') {
        throw new NetlinkError(describe.operation, describe.object, 'ENODEV', `no link named "${ref}"`);
      }
      throw err;
    }
  }

  /** ifindex → name of every link, to print dumps the way `ip` does. */
  async linkNames(): Promise<Map<number, string>> {
    const out = new AttrStream();
    rt.formatLinkMessage({ kind: 'link', data: {}, attrs: {} }, out);
    const replies = await this.reader.dump(rt.MessageType.GETLINK, out.bufs, { operation: 'list links', object: '' });
    const names = new Map<number, string>();
    for (const m of replies) {
      if (m.kind === 'link' && m.data.index !== undefined && m.attrs.ifname !== undefined) names.set(m.data.index, m.attrs.ifname);
    }
    return names;
  }

  private async lookupIndex(name: string): Promise<number> {
    const out = new AttrStream();
    rt.formatLinkMessage({ kind: 'link', data: {}, attrs: { ifname: name } }, out);
    const replies = await this.reader.request(rt.MessageType.GETLINK, out.bufs, 0, { operation: 'find link', object: name });
    const link = replies.find((m): m is rt.LinkMessage => m.kind === 'link');
    if (!link || link.data.index === undefined) throw new NetlinkError('find link', name, 'ENODEV');
    return link.data.index;
  }
}
