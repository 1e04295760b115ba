/**
 * twill decodes neighbour, FDB and route messages straight from their bytes
 * (lib/netlink): the same records the `netlink` package's own parsers would
 * give, checked here against them on messages the package itself encodes.
 */
import { expect } from 'chai';
import { AttrStream, rt } from '../../lib/netlink/package';
import { decodeNeighbor } from '../../lib/netlink/neighbors';
import { decodeFdb } from '../../lib/netlink/fdb';
import { decodeRoute } from '../../lib/netlink/routes';
import { decodeIp, decodeMac, flagNames, formatCidr, ipFamilyOf } from '../../lib/netlink/wire-format';

function bytesOf(format: (out: AttrStream) => void): Buffer {
  const out = new AttrStream();
  format(out);
  return Buffer.concat(out.bufs);
}

/** What the package's parser says, in the records' terms (the decoders twill had before). */
function viaPackage(kind: 'neighbor' | 'fdb' | 'route', type: rt.MessageType, data: Buffer): object | undefined {
  const m = rt.parseMessage(type, data);
  if (m.kind === 'neighbor' && kind === 'fdb') {
    const { data: d, attrs } = m;
    if (d.family !== 7 || !attrs.lladdr || attrs.lladdr.length !== 6) return undefined;
    const e: Record<string, unknown> = { mac: decodeMac(attrs.lladdr), ifindex: d.ifindex ?? 0, permanent: flagNames(d.state).includes('permanent'), self: d.flags?.self === true };
    if (attrs.dst) e.dst = decodeIp(attrs.dst);
    if (attrs.vni && attrs.vni.length === 4) e.vni = attrs.vni.readUInt32LE(0);
    if (attrs.port && attrs.port.length === 2) e.port = attrs.port.readUInt16BE(0);
    return e;
  }
  if (m.kind === 'neighbor') {
    const family = ipFamilyOf(m.data.family ?? 0);
    if (!family || !m.attrs.dst) return undefined;
    const state = flagNames(m.data.state);
    const n: Record<string, unknown> = { family, ip: decodeIp(m.attrs.dst), ifindex: m.data.ifindex ?? 0, state, permanent: state.includes('permanent') };
    if (m.attrs.lladdr && m.attrs.lladdr.length === 6) n.mac = decodeMac(m.attrs.lladdr);
    return n;
  }
  if (m.kind === 'route') {
    const { data: d, attrs } = m;
    const family = ipFamilyOf(d.family ?? 0);
    if (!family) return undefined;
    // The package gives enum members by number or by name.
    const num = (values: Record<string, string | number>, v: unknown): number => (typeof v === 'number' ? v : typeof v === 'string' ? Number(values[v] ?? 0) : 0);
    const t = num(rt.RouteType, d.type);
    const r: Record<string, unknown> = {
      family,
      dst: formatCidr(attrs.dst ? decodeIp(attrs.dst) : family === 4 ? '0.0.0.0' : '::', d.dstLen ?? 0),
      onlink: ((d.flags?.__unknown ?? 0) & 4) !== 0,
      protocol: num(rt.RouteProtocol, d.protocol), scope: num(rt.RouteScope, d.scope),
      table: attrs.table ?? d.table ?? 0,
      type: (rt.RouteType[t] ?? String(t)).toLowerCase(),
    };
    if (attrs.gateway) r.gateway = decodeIp(attrs.gateway);
    if (attrs.oif) r.ifindex = attrs.oif;
    if (attrs.priority !== undefined) r.metric = attrs.priority;
    if (attrs.prefsrc) r.src = decodeIp(attrs.prefsrc);
    return r;
  }
  return undefined;
}

const ip4 = (s: string) => Buffer.from(s.split('.').map(Number));
const mac = (s: string) => Buffer.from(s.split(':').map((h) => parseInt(h, 16)));

describe('netlink messages decoded from their bytes, as the netlink package parses them', () => {
  it('neighbours: IPv4 and IPv6, permanent and not, with and without a MAC, with attributes twill ignores', () => {
    const cases: rt.NeighborMessage[] = [
      { kind: 'neighbor', data: { family: 2, ifindex: 7, state: { permanent: true } }, attrs: { dst: ip4('10.244.3.0'), lladdr: mac('0e:fa:c6:12:00:03') } },
      { kind: 'neighbor', data: { family: 2, ifindex: 2, state: { reachable: true } }, attrs: { dst: ip4('198.18.0.2'), lladdr: mac('aa:bb:cc:dd:ee:ff'), cacheInfo: { confirmed: 1, used: 2, updated: 3, refcnt: 1 }, probes: 3 } },
      { kind: 'neighbor', data: { family: 2, ifindex: 2, state: { incomplete: true } }, attrs: { dst: ip4('198.18.0.9') } },
      { kind: 'neighbor', data: { family: 10, ifindex: 9, state: { permanent: true, noarp: true } }, attrs: { dst: Buffer.from('fe80000000000000 0cfac6fffe120003'.replace(' ', ''), 'hex'), lladdr: mac('0e:fa:c6:12:00:03') } },
      { kind: 'neighbor', data: { family: 2, ifindex: 3 }, attrs: { lladdr: mac('00:00:00:00:00:01') } },
    ];
    for (const c of cases) {
      const data = bytesOf((out) => rt.formatNeighborMessage(c, out));
      expect(decodeNeighbor(data), JSON.stringify(c.attrs.dst)).to.deep.equal(viaPackage('neighbor', rt.MessageType.NEWNEIGH, data));
    }
    expect(decodeNeighbor(bytesOf((out) => rt.formatNeighborMessage(cases[0], out)))).to.include({ ip: '10.244.3.0', mac: '0e:fa:c6:12:00:03', ifindex: 7, permanent: true });
  });

  it('FDB entries: VTEP, VNI and port, self and permanent flags; IP neighbours are not FDB entries', () => {
    const vni = Buffer.alloc(4);
    vni.writeUInt32LE(4096);
    const cases: rt.NeighborMessage[] = [
      { kind: 'neighbor', data: { family: 7, ifindex: 8, state: { permanent: true }, flags: { self: true } }, attrs: { lladdr: mac('0e:fa:c6:12:00:02'), dst: ip4('198.18.0.2') } },
      { kind: 'neighbor', data: { family: 7, ifindex: 8, state: { permanent: true }, flags: { self: true } }, attrs: { lladdr: mac('00:00:00:00:00:00'), dst: ip4('198.18.0.3'), vni, port: Buffer.from([0x21, 0x18]), master: 4 } },
      { kind: 'neighbor', data: { family: 7, ifindex: 8, state: { reachable: true } }, attrs: { lladdr: mac('0e:fa:c6:12:00:04') } },
      { kind: 'neighbor', data: { family: 2, ifindex: 8, state: { permanent: true } }, attrs: { lladdr: mac('0e:fa:c6:12:00:04'), dst: ip4('10.244.4.0') } },
    ];
    for (const c of cases) {
      const data = bytesOf((out) => rt.formatNeighborMessage(c, out));
      expect(decodeFdb(data)).to.deep.equal(viaPackage('fdb', rt.MessageType.NEWNEIGH, data));
    }
    expect(decodeFdb(bytesOf((out) => rt.formatNeighborMessage(cases[1], out)))).to.deep.equal({ mac: '00:00:00:00:00:00', ifindex: 8, permanent: true, self: true, dst: '198.18.0.3', vni: 4096, port: 8472 });
  });

  it('routes: onlink via a gateway, a table above 255, metrics and sources, IPv6, a default route', () => {
    const prio = (n: number) => n;
    const cases: rt.RouteMessage[] = [
      { kind: 'route', data: { family: 2, dstLen: 24, table: 254, protocol: 117 as rt.RouteProtocol, scope: 0, type: 1, flags: { __unknown: 4 } }, attrs: { dst: ip4('10.244.3.0'), gateway: ip4('10.244.3.0'), oif: 8 } },
      { kind: 'route', data: { family: 2, dstLen: 24, table: 252, protocol: 118 as rt.RouteProtocol, scope: 0, type: 1 }, attrs: { dst: ip4('10.244.5.0'), gateway: ip4('198.18.0.5'), oif: 2, table: 1000, priority: prio(100), prefsrc: ip4('198.18.0.1') } },
      { kind: 'route', data: { family: 2, dstLen: 0, table: 254, protocol: 3, scope: 0, type: 1 }, attrs: { gateway: ip4('198.18.0.254'), oif: 2 } },
      { kind: 'route', data: { family: 10, dstLen: 64, table: 254, protocol: 117 as rt.RouteProtocol, scope: 0, type: 1, flags: { __unknown: 4 } }, attrs: { dst: Buffer.from('fd0010244000700000000000000000000'.slice(0, 32), 'hex'), gateway: Buffer.from('fe800000000000000cfac6fffe120007', 'hex'), oif: 9 } },
      { kind: 'route', data: { family: 2, dstLen: 32, table: 255, protocol: 2, scope: 254, type: 2 }, attrs: { dst: ip4('198.18.0.1'), oif: 2, prefsrc: ip4('198.18.0.1') } },
      { kind: 'route', data: { family: 2, dstLen: 16, table: 254, protocol: 4, scope: 253, type: 6 }, attrs: { dst: ip4('10.99.0.0') } },
    ];
    for (const c of cases) {
      const data = bytesOf((out) => rt.formatRouteMessage(c, out));
      expect(decodeRoute(data)).to.deep.equal(viaPackage('route', rt.MessageType.NEWROUTE, data));
    }
    expect(decodeRoute(bytesOf((out) => rt.formatRouteMessage(cases[1], out)))).to.deep.equal({
      family: 4, dst: '10.244.5.0/24', gateway: '198.18.0.5', ifindex: 2, onlink: false, protocol: 118 as rt.RouteProtocol, scope: 0, table: 1000, type: 'unicast', metric: 100, src: '198.18.0.1',
    });
    expect(decodeRoute(bytesOf((out) => rt.formatRouteMessage(cases[0], out)))).to.include({ dst: '10.244.3.0/24', onlink: true, table: 254 });
  });

  it('refuses a message shorter than its header, or an attribute running past the end, naming it', () => {
    expect(() => decodeRoute(Buffer.from([2, 24, 0]))).to.throw(/route message.*12-byte header/);
    const good = bytesOf((out) => rt.formatRouteMessage({ kind: 'route', data: { family: 2, dstLen: 24 }, attrs: { dst: ip4('10.244.3.0') } }, out));
    const cut = good.subarray(0, good.length - 2);
    expect(() => decodeRoute(cut)).to.throw(/route attribute at byte 12/);
  });
});
