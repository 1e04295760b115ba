/**
 * The NAT rules as text (the netns tests run them): with dual stack, the
 * IPv6 rules mirror the IPv4 ones for the IPv6 network and subnet, as
 * flanneld's MasqIP6Rules, with ff00::/8 where IPv4 has 224.0.0.0/4.
 */
import { expect } from 'chai';
import { IPNet } from '../../lib/ip';
import { renderRestore, renderRules, type MasqPolicy } from '../../lib/masq';
import { asLibraryCall } from '../../lib/masq/nftables';

const v4: MasqPolicy = { ipv4: { podNetwork: IPNet.parse('10.244.0.0/16'), nodeSubnet: IPNet.parse('10.244.1.0/24') }, masquerade: true, forwardRules: true };
const dual: MasqPolicy = { ...v4, ipv6: { podNetwork: IPNet.parse('fd00:10:244::/56'), nodeSubnet: IPNet.parse('fd00:10:244:1::/64') } };

describe('NAT rules for IPv6', () => {
  it('nftables: table ip6 twill holds the IPv4 rules\' IPv6 twins, in the same script', () => {
    const script = renderRules(dual);
    expect(script).to.contain('table ip twill {').and.to.contain('table ip6 twill {');
    const v6 = script.slice(script.indexOf('table ip6 twill {'));
    expect(v6).to.contain('ip6 saddr fd00:10:244::/56 ip6 daddr fd00:10:244::/56 return');
    expect(v6).to.contain('ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade fully-random');
    expect(v6).to.contain('ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244:1::/64 return');
    expect(v6).to.contain('ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244::/56 masquerade fully-random');
    expect(v6).to.contain('ip6 saddr fd00:10:244::/56 accept');
    expect(v6).to.not.contain('10.244.');
  });

  it('nftables: without IPv6, the script removes an ip6 twill table left from a dual-stack run', () => {
    expect(renderRules(v4)).to.contain('delete table ip6 twill').and.to.not.contain('ip6 saddr');
  });

  it('nftables: an IPv6-only network gets table ip6 twill alone, and the script removes an ip twill table left from before', () => {
    const script = renderRules({ masquerade: true, forwardRules: false, ipv6: dual.ipv6 });
    expect(script).to.contain('delete table ip twill').and.to.not.contain('ip saddr');
    expect(script).to.contain('ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade fully-random');
  });

  it('iptables: the ip6tables-restore script has the same chains for the IPv6 networks', () => {
    const script = renderRestore(dual, 'ipv6');
    expect(script).to.contain('-A TWILL-POSTRTG -s fd00:10:244::/56 ! -d ff00::/8 -j MASQUERADE --random-fully');
    expect(script).to.contain('-A TWILL-POSTRTG ! -s fd00:10:244::/56 -d fd00:10:244:1::/64 -j RETURN');
    expect(script).to.contain('-A TWILL-FWD -d fd00:10:244::/56 -j ACCEPT');
    expect(renderRestore(dual)).to.contain('! -d 224.0.0.0/4').and.to.not.contain('fd00');
    expect(() => renderRestore({ masquerade: true, forwardRules: true, ipv6: dual.ipv6 })).to.throw('no IPv4 networks');
  });
});

describe('nft command lines run through libnftables', () => {
  it('takes JSON output, a script on stdin, or a command\'s words', () => {
    expect(asLibraryCall(['-j', 'list', 'table', 'ip', 'twill_guard'])).to.deep.equal({ json: true, commands: 'list table ip twill_guard' });
    expect(asLibraryCall(['-f', '-'], 'add element ip t s { 10.0.0.1 }\n')).to.deep.equal({ json: false, commands: 'add element ip t s { 10.0.0.1 }\n' });
    expect(asLibraryCall(['delete', 'table', 'ip', 'twill'])).to.deep.equal({ json: false, commands: 'delete table ip twill' });
  });

  it('leaves to the nft command what only it understands', () => {
    expect(asLibraryCall(['-a', 'list', 'ruleset'])).to.equal(undefined);
    expect(asLibraryCall(['-f', '/etc/nftables.conf'])).to.equal(undefined);
    expect(asLibraryCall(['-f', '-'])).to.equal(undefined);
    expect(asLibraryCall(['list', 'ruleset'], 'stdin nobody reads')).to.equal(undefined);
    expect(asLibraryCall(['-j'])).to.equal(undefined);
  });
});
