/**
 * grpc-js in twilld's bundle gets lib/subnet/grpc-net.ts for `net`: its
 * isIPv6 must answer as Node's does for every address etcd could be given,
 * and everything else must be Node's own.
 */
import { expect } from 'chai';
import * as net from 'net';
import { grpcNet, isIPv6 } from '../../lib/subnet/grpc-net';

describe('grpc-js net for the daemon bundle', () => {
  const texts = [
    '127.0.0.1', '198.18.0.1', '0.0.0.0', '255.255.255.255', '1.2.3', '1.2.3.4.5', '',
    'localhost', 'etcd-0.etcd.kube-system.svc', '::', '::1', 'fe80::1', 'fe80::1%eth0', '2001:db8::2:1',
    '2001:0db8:0000:0000:0000:ff00:0042:8329', '::ffff:198.18.0.1', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9',
    ':', ':::', '[::1]', '::1:2379', 'g::1', '2001:db8::/32', '1::2::3', 'abc:',
  ];

  it("answers isIPv6 as Node's net does", () => {
    for (const text of texts) expect(isIPv6(text), JSON.stringify(text)).to.equal(net.isIPv6(text));
    expect(texts.filter((t) => isIPv6(t)).length).to.be.greaterThan(5);
  });

  it("hands on the rest of Node's net module", () => {
    expect(grpcNet.isIPv6).to.equal(isIPv6);
    expect(grpcNet.isIPv4).to.equal(net.isIPv4);
    expect(grpcNet.connect).to.equal(net.connect);
    expect(grpcNet.Socket).to.equal(net.Socket);
    expect(grpcNet.createServer).to.equal(net.createServer);
  });
});
