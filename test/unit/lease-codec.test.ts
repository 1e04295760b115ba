import { expect } from 'chai';
import { readdirSync, readFileSync } from 'fs';
import * as path from 'path';
import { IPNet } from '../../lib/ip';
import type { LeaseAttrs } from '../../lib/subnet/lease';
import {
  LeaseFormatError,
  MAX_LEASE_VALUE_BYTES,
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  formatSubnetKey,
  parseSubnetKey,
  type SubnetKey,
} from '../../lib/subnet/lease-codec';
import { fixturesDir } from '../harness/fixtures';


function fixture(name: string): string {
  return readFileSync(path.join(fixturesDir(), name), 'utf8');
}

/** Runs `fn`, expecting a LeaseFormatError; returns it. */
function refused(fn: () => unknown): LeaseFormatError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(LeaseFormatError);
    return err as LeaseFormatError;
  }
  throw new Error('expected a LeaseFormatError, but nothing was thrown');
}

const PUBLIC_IP = '198.18.0.3';

describe('lease codec', () => {
  describe("flanneld's lease values", () => {
    const files = readdirSync(fixturesDir()).filter((f) => /^lease-.*\.json$/.test(f)).sort();

    it('are all present: vxlan, host-gw and udp', () => {
      expect(files).to.include.members(['lease-vxlan.json', 'lease-host-gw.json', 'lease-udp.json']);
    });

    for (const file of files) {
      it(`decodes ${file} and re-encodes it byte for byte`, () => {
        const bytes = fixture(file);
        const attrs = decodeLeaseAttrs(bytes);
        expect(attrs.publicIP).to.equal(PUBLIC_IP);
        expect(attrs.publicIPv6).to.equal(null);
        expect(Buffer.from(encodeLeaseAttrs(attrs))).to.deep.equal(Buffer.from(bytes));
      });
    }

    const expected: { file: string; attrs: LeaseAttrs }[] = [
      {
        file: 'lease-vxlan.json',
        attrs: { publicIP: PUBLIC_IP, publicIPv6: null, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '5e:ec:40:e1:80:98' } },
      },
      { file: 'lease-host-gw.json', attrs: { publicIP: PUBLIC_IP, publicIPv6: null, backendType: 'host-gw' } },
      { file: 'lease-udp.json', attrs: { publicIP: PUBLIC_IP, publicIPv6: null } },
    ];
    for (const c of expected) {
      it(`reads ${c.file} as the attributes flanneld meant`, () => {
        const attrs = decodeLeaseAttrs(fixture(c.file));
        expect(attrs).to.deep.include(c.attrs);
        expect(attrs.backends).to.equal(undefined);
      });

      it(`writes the attributes of ${c.file} as flanneld did`, () => {
        expect(encodeLeaseAttrs(c.attrs)).to.equal(fixture(c.file));
      });
    }

    it('writes an alloc lease (no BackendType, no BackendData) as the udp fixture, as flanneld does', () => {
      expect(encodeLeaseAttrs({ publicIP: PUBLIC_IP, publicIPv6: null })).to.equal(fixture('lease-udp.json'));
    });
  });

  describe('encoding', () => {
    const cases: { name: string; attrs: LeaseAttrs; json: string }[] = [
      {
        name: 'puts "PublicIPv6":null in even when the node has no IPv6 address',
        attrs: { publicIP: '0.0.0.0', publicIPv6: null },
        json: '{"PublicIP":"0.0.0.0","PublicIPv6":null}',
      },
      {
        name: 'omits an empty BackendType, a null BackendData and an empty BackendV6Data',
        attrs: { publicIP: PUBLIC_IP, publicIPv6: null, backendType: '', backendData: null, backendV6Data: {} },
        json: '{"PublicIP":"198.18.0.3","PublicIPv6":null}',
      },
      {
        name: "keeps flanneld's field order whatever order the attributes were built in",
        attrs: {
          backendV6Data: { VNI: 1, VtepMAC: 'aa:bb:cc:dd:ee:ff' },
          backendData: { VNI: 1, VtepMAC: '5e:ec:40:e1:80:98' },
          backendType: 'vxlan',
          publicIPv6: 'fc00::3',
          publicIP: PUBLIC_IP,
        },
        json:
          '{"PublicIP":"198.18.0.3","PublicIPv6":"fc00::3","BackendType":"vxlan",' +
          '"BackendData":{"VNI":1,"VtepMAC":"5e:ec:40:e1:80:98"},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}',
      },
      {
        name: "puts twill's TwillBackends after flanneld's fields, without empty Data",
        attrs: {
          publicIP: PUBLIC_IP, publicIPv6: null, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '5e:ec:40:e1:80:98' },
          backends: [{ type: 'vxlan', data: { VNI: 1, VtepMAC: '5e:ec:40:e1:80:98' } }, { type: 'host-gw', data: {} }, { type: 'udp' }],
        },
        json:
          '{"PublicIP":"198.18.0.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5e:ec:40:e1:80:98"},' +
          '"TwillBackends":[{"Type":"vxlan","Data":{"VNI":1,"VtepMAC":"5e:ec:40:e1:80:98"}},{"Type":"host-gw"},{"Type":"udp"}]}',
      },
      {
        name: 'omits an empty TwillBackends list',
        attrs: { publicIP: PUBLIC_IP, publicIPv6: null, backendType: 'udp', backends: [] },
        json: '{"PublicIP":"198.18.0.3","PublicIPv6":null,"BackendType":"udp"}',
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const json = encodeLeaseAttrs(c.attrs);
        expect(json).to.equal(c.json);
        // What is written reads back as the same lease, and writes out the same again.
        expect(encodeLeaseAttrs(decodeLeaseAttrs(json))).to.equal(json);
      });
    }
  });

  describe('decoding', () => {
    it('matches field names case-insensitively, as Go does', () => {
      const attrs = decodeLeaseAttrs('{"publicip":"198.18.0.3"}');
      expect(attrs.publicIP).to.equal(PUBLIC_IP);
      expect(attrs.publicIPv6).to.equal(null);
      const mixed = decodeLeaseAttrs('{"PUBLICIP":"198.18.0.3","publicIPv6":"fc00::3","backendtype":"vxlan","backenddata":{"VNI":7}}');
      expect(mixed).to.deep.include({ publicIP: PUBLIC_IP, publicIPv6: 'fc00::3', backendType: 'vxlan', backendData: { VNI: 7 } });
    });

    it('ignores fields it does not know, and does not write them back', () => {
      const attrs = decodeLeaseAttrs('{"PublicIP":"198.18.0.3","PublicIPv6":null,"Future":{"x":1},"Extra":[1,2]}');
      expect(encodeLeaseAttrs(attrs)).to.equal(fixture('lease-udp.json'));
    });

    it('takes the last of two spellings of one field, as Go does', () => {
      expect(decodeLeaseAttrs('{"PublicIP":"198.18.0.1","publicip":"198.18.0.3"}').publicIP).to.equal(PUBLIC_IP);
    });

    it('reads a missing PublicIPv6 as null', () => {
      expect(decodeLeaseAttrs('{"PublicIP":"198.18.0.3"}').publicIPv6).to.equal(null);
    });

    it('reads TwillBackends, with and without Data', () => {
      const attrs = decodeLeaseAttrs('{"PublicIP":"198.18.0.3","TwillBackends":[{"type":"vxlan","data":{"VNI":1}},{"Type":"udp","Data":null}]}');
      expect(attrs.backends).to.deep.equal([{ type: 'vxlan', data: { VNI: 1 } }, { type: 'udp' }]);
    });

    it(`accepts a value of exactly ${MAX_LEASE_VALUE_BYTES} bytes`, () => {
      const base = '{"PublicIP":"198.18.0.3"}';
      const padded = base.slice(0, -1) + ' '.repeat(MAX_LEASE_VALUE_BYTES - base.length) + '}';
      expect(Buffer.byteLength(padded)).to.equal(MAX_LEASE_VALUE_BYTES);
      expect(decodeLeaseAttrs(padded).publicIP).to.equal(PUBLIC_IP);
    });
  });

  describe('refuses a malformed value', () => {
    const big = `{"PublicIP":"198.18.0.3","Pad":"${'x'.repeat(MAX_LEASE_VALUE_BYTES)}"}`;
    // Under the limit in characters, over it in bytes: the limit is on bytes.
    const bigInBytes = `{"PublicIP":"198.18.0.3","Pad":"${'é'.repeat(MAX_LEASE_VALUE_BYTES / 2)}"}`;
    const cases: { fault: string; value: string; what: string; message: RegExp }[] = [
      { fault: 'text that is not JSON', value: '{"PublicIP":"198.18.0.3"', what: 'value', message: /not JSON/ },
      { fault: 'the empty string', value: '', what: 'value', message: /not JSON/ },
      { fault: 'a JSON array', value: '["198.18.0.3"]', what: 'value', message: /not a JSON object/ },
      { fault: 'a JSON number', value: '42', what: 'value', message: /not a JSON object/ },
      { fault: 'a JSON string', value: '"198.18.0.3"', what: 'value', message: /not a JSON object/ },
      { fault: 'JSON null', value: 'null', what: 'value', message: /not a JSON object/ },
      { fault: 'a missing PublicIP', value: '{"PublicIPv6":null,"BackendType":"udp"}', what: 'PublicIP', message: /PublicIP must be a string, got nothing/ },
      { fault: 'a null PublicIP', value: '{"PublicIP":null}', what: 'PublicIP', message: /PublicIP must be a string, got null/ },
      { fault: 'a number as PublicIP', value: '{"PublicIP":3322019843}', what: 'PublicIP', message: /PublicIP must be a string, got number 3322019843/ },
      { fault: 'a PublicIP that is not an address', value: '{"PublicIP":"198.18.0.300"}', what: 'PublicIP', message: /PublicIP "198\.18\.0\.300" is not an IPv4 address/ },
      { fault: 'a host name as PublicIP', value: '{"PublicIP":"node-1.example"}', what: 'PublicIP', message: /PublicIP "node-1\.example" is not an IPv4 address/ },
      { fault: 'an IPv6 address as PublicIP', value: '{"PublicIP":"fc00::3"}', what: 'PublicIP', message: /PublicIP "fc00::3" is not an IPv4 address/ },
      { fault: 'a CIDR network as PublicIP', value: '{"PublicIP":"198.18.0.3/32"}', what: 'PublicIP', message: /PublicIP "198\.18\.0\.3\/32" is not an IPv4 address/ },
      { fault: 'a PublicIPv6 that is not an address', value: '{"PublicIP":"198.18.0.3","PublicIPv6":"fc00::zz"}', what: 'PublicIPv6', message: /PublicIPv6 "fc00::zz" is not an IPv6 address/ },
      { fault: 'an IPv4 address as PublicIPv6', value: '{"PublicIP":"198.18.0.3","PublicIPv6":"198.18.0.3"}', what: 'PublicIPv6', message: /PublicIPv6 "198\.18\.0\.3" is not an IPv6 address/ },
      { fault: 'a PublicIPv6 that is neither string nor null', value: '{"PublicIP":"198.18.0.3","PublicIPv6":false}', what: 'PublicIPv6', message: /PublicIPv6 must be a string or null, got boolean false/ },
      { fault: 'a number as BackendType', value: '{"PublicIP":"198.18.0.3","BackendType":1}', what: 'BackendType', message: /BackendType must be a string, got number 1/ },
      {
        fault: 'a BackendType with shell metacharacters',
        value: '{"PublicIP":"198.18.0.3","BackendType":"vxlan; rm -rf / #"}',
        what: 'BackendType',
        message: /BackendType "vxlan; rm -rf \/ #" is not a backend name/,
      },
      { fault: 'a BackendType with a path in it', value: '{"PublicIP":"198.18.0.3","BackendType":"../vxlan"}', what: 'BackendType', message: /BackendType "\.\.\/vxlan" is not a backend name/ },
      { fault: 'an over-long BackendType', value: `{"PublicIP":"198.18.0.3","BackendType":"${'a'.repeat(33)}"}`, what: 'BackendType', message: /BackendType "a+" is not a backend name/ },
      { fault: `a value of more than ${MAX_LEASE_VALUE_BYTES} bytes`, value: big, what: 'value', message: new RegExp(`${Buffer.byteLength(big)} bytes, more than the ${MAX_LEASE_VALUE_BYTES} allowed`) },
      { fault: `a value of more than ${MAX_LEASE_VALUE_BYTES} bytes in fewer characters`, value: bigInBytes, what: 'value', message: /more than the 65536 allowed/ },
      { fault: 'TwillBackends that is not a list', value: '{"PublicIP":"198.18.0.3","TwillBackends":{"Type":"vxlan"}}', what: 'TwillBackends', message: /TwillBackends must be a list, got object/ },
      { fault: 'a TwillBackends entry without Type', value: '{"PublicIP":"198.18.0.3","TwillBackends":[{"Data":{}}]}', what: 'TwillBackends', message: /TwillBackends entry .* has no valid Type/ },
      { fault: 'a TwillBackends entry that is not an object', value: '{"PublicIP":"198.18.0.3","TwillBackends":["vxlan"]}', what: 'TwillBackends', message: /TwillBackends entry "vxlan" has no valid Type/ },
      { fault: 'a TwillBackends Type with shell metacharacters', value: '{"PublicIP":"198.18.0.3","TwillBackends":[{"Type":"$(reboot)"}]}', what: 'TwillBackends', message: /has no valid Type/ },
    ];
    for (const c of cases) {
      it(`with ${c.fault}, naming ${c.what}`, () => {
        const err = refused(() => decodeLeaseAttrs(c.value));
        expect(err.what).to.equal(c.what);
        expect(err.message).to.match(c.message);
        expect(err.message.length, 'the message stays one readable line').to.be.below(300);
      });
    }
  });

  describe('subnet keys', () => {
    const roundTrips: { key: string; subnet: string; ipv6Subnet?: string }[] = [
      { key: '10.244.1.0-24', subnet: '10.244.1.0/24' },
      { key: '10.1.31.0-24', subnet: '10.1.31.0/24' },
      { key: '10.0.0.0-8', subnet: '10.0.0.0/8' },
      { key: '172.16.8.4-30', subnet: '172.16.8.4/30' },
      { key: '10.244.1.0-24&fc00:0:0:1::-64', subnet: '10.244.1.0/24', ipv6Subnet: 'fc00:0:0:1::/64' },
      { key: '10.244.255.0-24&fc00:0:0:ff::-64', subnet: '10.244.255.0/24', ipv6Subnet: 'fc00:0:0:ff::/64' },
      { key: '10.244.1.128-25&2001:db8:0:1:8000::-65', subnet: '10.244.1.128/25', ipv6Subnet: '2001:db8:0:1:8000::/65' },
    ];
    for (const c of roundTrips) {
      it(`reads ${c.key} and writes it back unchanged`, () => {
        const parsed = parseSubnetKey(c.key);
        expect(parsed.subnet.toString()).to.equal(c.subnet);
        expect(parsed.ipv6Subnet?.toString()).to.equal(c.ipv6Subnet);
        expect(formatSubnetKey(parsed)).to.equal(c.key);
      });
    }

    it('writes a key from subnets, in the form flanneld uses', () => {
      const single: SubnetKey = { subnet: IPNet.parse('10.244.7.0/24') };
      expect(formatSubnetKey(single)).to.equal('10.244.7.0-24');
      const dual: SubnetKey = { subnet: IPNet.parse('10.244.7.0/24'), ipv6Subnet: IPNet.parse('fc00:0:0:7:0:0:0:0/64') };
      expect(formatSubnetKey(dual)).to.equal('10.244.7.0-24&fc00:0:0:7::-64');
    });

    const bad: { fault: string; key: string; message: RegExp }[] = [
      { fault: 'a key without a length', key: '10.244.1.0', message: /not of the form a\.b\.c\.d-len/ },
      { fault: 'a key in CIDR form', key: '10.244.1.0/24', message: /not of the form/ },
      { fault: 'a key with host bits set', key: '10.244.1.1-24', message: /host bits clear \(did you mean 10\.244\.1\.0\/24\?\)/ },
      { fault: 'a key with a length above 32', key: '10.244.1.0-33', message: /bad prefix length/ },
      { fault: 'a key with a three-digit length', key: '10.244.1.0-100', message: /not of the form/ },
      { fault: 'a key with an octet above 255', key: '10.244.256.0-24', message: /not an IPv4 network/ },
      { fault: 'a key with a leading zero in an octet', key: '10.244.01.0-24', message: /not an IPv4 network/ },
      { fault: 'a key with a garbage suffix', key: '10.244.1.0-24x', message: /not of the form/ },
      { fault: 'a key with a garbage prefix', key: 'x10.244.1.0-24', message: /not of the form/ },
      { fault: 'a key with a trailing newline', key: '10.244.1.0-24\n', message: /not of the form/ },
      { fault: 'a key that climbs directories', key: '../../etc', message: /not of the form/ },
      { fault: 'a key that is a path', key: '10.244.1.0-24/../../config', message: /not of the form/ },
      { fault: 'the empty key', key: '', message: /not of the form/ },
      { fault: 'a dual-stack key with an empty IPv6 part', key: '10.244.1.0-24&', message: /not of the form/ },
      { fault: 'a dual-stack key with IPv6 host bits set', key: '10.244.1.0-24&fc00:0:0:1::1-64', message: /host bits clear/ },
      { fault: 'a dual-stack key with an IPv6 length above 128', key: '10.244.1.0-24&fc00:0:0:1::-129', message: /bad prefix length/ },
      { fault: 'a dual-stack key with IPv4 in the IPv6 part', key: '10.244.1.0-24&10.244.1.0-24', message: /not of the form/ },
      { fault: 'a dual-stack key with a malformed IPv6 address', key: '10.244.1.0-24&fc00:::1-64', message: /not an IPv6 network/ },
      { fault: 'a key with the families swapped', key: 'fc00:0:0:1::-64&10.244.1.0-24', message: /not of the form/ },
    ];
    for (const c of bad) {
      it(`refuses ${c.fault}, quoting the key`, () => {
        const err = refused(() => parseSubnetKey(c.key));
        expect(err.what).to.equal('key');
        expect(err.message).to.include(JSON.stringify(c.key));
        expect(err.message).to.match(c.message);
      });
    }
  });
});
