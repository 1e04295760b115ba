import { expect } from 'chai';
import { ConfigError, parseNetworkConfig, setting, type BackendConfig, type NetworkConfig } from '../../lib/config';

/** Deliberately unsorted, to check that error messages sort them. */
const KNOWN = ['vxlan', 'udp', 'host-gw', 'ipip', 'alloc'];

/** A config as JSON text, or as a value to serialise. */
type Input = string | object;

function parse(config: Input): NetworkConfig {
  return parseNetworkConfig(typeof config === 'string' ? config : JSON.stringify(config), KNOWN);
}

/** The parsed config with addresses as text, so that cases compare plain values. */
interface Summary {
  enableIPv4: boolean;
  enableIPv6: boolean;
  network?: string;
  subnetLen: number;
  subnetMin?: string;
  subnetMax?: string;
  ipv6Network?: string;
  ipv6SubnetLen: number;
  ipv6SubnetMin?: string;
  ipv6SubnetMax?: string;
  backend: BackendConfig;
  warnings: readonly string[];
}

function summarize(c: NetworkConfig): Summary {
  return {
    enableIPv4: c.enableIPv4,
    enableIPv6: c.enableIPv6,
    network: c.network?.toString(),
    subnetLen: c.subnetLen,
    subnetMin: c.subnetMin?.toString(),
    subnetMax: c.subnetMax?.toString(),
    ipv6Network: c.ipv6Network?.toString(),
    ipv6SubnetLen: c.ipv6SubnetLen,
    ipv6SubnetMin: c.ipv6SubnetMin?.toString(),
    ipv6SubnetMax: c.ipv6SubnetMax?.toString(),
    backend: c.backend,
    warnings: c.warnings,
  };
}

const UDP: BackendConfig = { type: 'udp', settings: {} };
const VXLAN: BackendConfig = { type: 'vxlan', settings: {} };

describe('parseNetworkConfig', () => {
  describe('accepts', () => {
    const cases: { name: string; config: Input; expected: Partial<Summary> }[] = [
      {
        name: "flanneld's vxlan fixture, with every default filled in",
        config: '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}',
        expected: {
          enableIPv4: true, enableIPv6: false, network: '10.244.0.0/16', subnetLen: 24,
          subnetMin: '10.244.1.0', subnetMax: '10.244.255.0', ipv6Network: undefined, ipv6SubnetLen: 0,
          backend: VXLAN, warnings: [],
        },
      },
      {
        name: "flanneld's /8 fixture with explicit SubnetLen, SubnetMin and SubnetMax",
        config: '{"Network":"10.0.0.0/8","SubnetLen":24,"SubnetMin":"10.1.0.0","SubnetMax":"10.1.255.0","Backend":{"Type":"vxlan"}}',
        expected: { network: '10.0.0.0/8', subnetLen: 24, subnetMin: '10.1.0.0', subnetMax: '10.1.255.0', backend: VXLAN, warnings: [] },
      },
      {
        name: 'a /8 network with SubnetMin the second /24 and SubnetMax the last',
        config: { Network: '10.0.0.0/8' },
        expected: { subnetLen: 24, subnetMin: '10.0.1.0', subnetMax: '10.255.255.0' },
      },
      {
        name: 'a /16 network with SubnetLen 24',
        config: { Network: '10.3.0.0/16' },
        expected: { subnetLen: 24, subnetMin: '10.3.1.0', subnetMax: '10.3.255.0' },
      },
      {
        name: 'a /22 network with SubnetLen 24, the smallest network still cut into /24s',
        config: { Network: '10.0.0.0/22' },
        expected: { subnetLen: 24, subnetMin: '10.0.1.0', subnetMax: '10.0.3.0' },
      },
      {
        name: 'a /24 network with SubnetLen 26 (prefix + 2)',
        config: { Network: '192.168.7.0/24' },
        expected: { subnetLen: 26, subnetMin: '192.168.7.64', subnetMax: '192.168.7.192' },
      },
      {
        name: 'a /26 network with SubnetLen 28 (prefix + 2)',
        config: { Network: '10.0.0.0/26' },
        expected: { subnetLen: 28, subnetMin: '10.0.0.16', subnetMax: '10.0.0.48' },
      },
      {
        name: 'a /28 network, the smallest, with SubnetLen 30',
        config: { Network: '10.0.0.0/28' },
        expected: { subnetLen: 30, subnetMin: '10.0.0.4', subnetMax: '10.0.0.12' },
      },
      {
        name: "flanneld's own override test: SubnetLen 28 with SubnetMin and SubnetMax",
        config: { Network: '10.3.0.0/16', SubnetMin: '10.3.5.0', SubnetMax: '10.3.8.0', SubnetLen: 28 },
        expected: { subnetLen: 28, subnetMin: '10.3.5.0', subnetMax: '10.3.8.0' },
      },
      {
        name: 'SubnetLen 30 for a /16, the longest allowed',
        config: { Network: '10.244.0.0/16', SubnetLen: 30 },
        expected: { subnetLen: 30, subnetMin: '10.244.0.4', subnetMax: '10.244.255.252' },
      },
      {
        name: 'SubnetLen of exactly prefix + 2',
        config: { Network: '10.244.0.0/16', SubnetLen: 18 },
        expected: { subnetLen: 18, subnetMin: '10.244.64.0', subnetMax: '10.244.192.0' },
      },
      {
        name: 'the first subnet as an explicit SubnetMin, as flanneld does',
        config: { Network: '10.244.0.0/16', SubnetMin: '10.244.0.0' },
        expected: { subnetMin: '10.244.0.0', subnetMax: '10.244.255.0' },
      },
      {
        name: 'SubnetMin equal to SubnetMax, a single subnet',
        config: { Network: '10.244.0.0/16', SubnetMin: '10.244.7.0', SubnetMax: '10.244.7.0' },
        expected: { subnetMin: '10.244.7.0', subnetMax: '10.244.7.0' },
      },
      {
        name: 'keys in lower case, as Go matches them case-insensitively',
        config: '{"network":"10.244.0.0/16","subnetlen":25,"subnetmin":"10.244.0.128","subnetmax":"10.244.1.0","enableipv4":true,"backend":{"type":"vxlan"}}',
        expected: { network: '10.244.0.0/16', subnetLen: 25, subnetMin: '10.244.0.128', subnetMax: '10.244.1.0', backend: VXLAN, warnings: [] },
      },
      {
        name: 'keys in upper case',
        config: '{"NETWORK":"10.244.0.0/16","SUBNETLEN":24,"BACKEND":{"TYPE":"vxlan"}}',
        expected: { network: '10.244.0.0/16', subnetLen: 24, backend: VXLAN, warnings: [] },
      },
      {
        name: 'a repeated key with the same spelling, keeping the last as Go does',
        config: '{"Network":"10.1.0.0/16","Network":"10.2.0.0/16"}',
        expected: { network: '10.2.0.0/16' },
      },
      {
        name: 'a config without Backend as the udp backend',
        config: { Network: '10.244.0.0/16' },
        expected: { backend: UDP },
      },
      {
        name: 'a Backend type in any case, lowercased',
        config: { Network: '10.244.0.0/16', Backend: { Type: 'Host-GW' } },
        expected: { backend: { type: 'host-gw', settings: {} } },
      },
      {
        name: 'every other Backend key as a setting, spelled as written',
        config: { Network: '10.244.0.0/16', Backend: { type: 'vxlan', VNI: 4, port: 4789, DirectRouting: true, GBP: { nested: [1] } } },
        expected: { backend: { type: 'vxlan', settings: { VNI: 4, port: 4789, DirectRouting: true, GBP: { nested: [1] } } } },
      },
      {
        name: 'SubnetLen 0 as unset, as flanneld does',
        config: { Network: '10.0.0.0/24', SubnetLen: 0 },
        expected: { subnetLen: 26 },
      },
      {
        name: 'SubnetMin and SubnetMax of 0.0.0.0 as unset, as flanneld does',
        config: { Network: '10.244.0.0/16', SubnetMin: '0.0.0.0', SubnetMax: '0.0.0.0' },
        expected: { subnetMin: '10.244.1.0', subnetMax: '10.244.255.0' },
      },
      {
        name: 'null values as absent',
        config: { Network: '10.244.0.0/16', EnableIPv4: null, EnableIPv6: null, SubnetLen: null, SubnetMin: null, Backend: null },
        expected: { enableIPv4: true, enableIPv6: false, subnetLen: 24, subnetMin: '10.244.1.0', backend: UDP },
      },
      {
        name: 'unknown keys, with a warning naming each',
        config: { Network: '10.244.0.0/16', EnableNFTables: false, Netwrok: '10.0.0.0/8' },
        expected: { warnings: ['unknown key "EnableNFTables" is ignored', 'unknown key "Netwrok" is ignored'] },
      },
      {
        name: 'an unknown key repeated in different case, which is ignored anyway',
        config: '{"Network":"10.244.0.0/16","Comment":"a","comment":"b"}',
        expected: { warnings: ['unknown key "Comment" is ignored', 'unknown key "comment" is ignored'] },
      },
      {
        name: 'IPv6 keys while EnableIPv6 is off, with a warning that they are ignored',
        config: { Network: '10.244.0.0/16', IPv6Network: 'fc00::/48', IPv6SubnetLen: 64 },
        expected: {
          enableIPv6: false, ipv6Network: undefined, ipv6SubnetLen: 0, ipv6SubnetMin: undefined,
          warnings: ['IPv6Network is ignored because EnableIPv6 is false', 'IPv6SubnetLen is ignored because EnableIPv6 is false'],
        },
      },
      {
        name: 'a dual-stack config with both families defaulted',
        config: { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: { Type: 'vxlan' } },
        expected: {
          enableIPv4: true, enableIPv6: true,
          network: '10.244.0.0/16', subnetLen: 24, subnetMin: '10.244.1.0', subnetMax: '10.244.255.0',
          ipv6Network: 'fc00::/48', ipv6SubnetLen: 64, ipv6SubnetMin: 'fc00:0:0:1::', ipv6SubnetMax: 'fc00:0:0:ffff::',
          backend: VXLAN, warnings: [],
        },
      },
      {
        name: 'an IPv6-only config, as in flanneld\'s own defaults test',
        config: '{ "enableIPv6": true, "ipv6Network": "fc00::/48", "enableIPv4": false }',
        expected: {
          enableIPv4: false, enableIPv6: true, network: undefined, subnetLen: 0, subnetMin: undefined, subnetMax: undefined,
          ipv6Network: 'fc00::/48', ipv6SubnetLen: 64, ipv6SubnetMin: 'fc00:0:0:1::', ipv6SubnetMax: 'fc00:0:0:ffff::',
          warnings: [],
        },
      },
      {
        name: "an IPv6 config with explicit bounds, as in flanneld's own override test",
        config: { EnableIPv6: true, IPv6Network: 'fc00::/48', IPv6SubnetMin: 'fc00:0:0:1::', IPv6SubnetMax: 'fc00:0:0:f::', IPv6SubnetLen: 124, EnableIPv4: false },
        expected: { ipv6SubnetLen: 124, ipv6SubnetMin: 'fc00:0:0:1::', ipv6SubnetMax: 'fc00:0:0:f::' },
      },
      {
        name: 'a /62 IPv6 network with IPv6SubnetLen 64, the smallest still cut into /64s',
        config: { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/62' },
        expected: { ipv6SubnetLen: 64, ipv6SubnetMin: 'fc00:0:0:1::', ipv6SubnetMax: 'fc00:0:0:3::' },
      },
      {
        name: 'a /64 IPv6 network with IPv6SubnetLen 66 (prefix + 2)',
        config: { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/64' },
        expected: { ipv6SubnetLen: 66, ipv6SubnetMin: 'fc00::4000:0:0:0', ipv6SubnetMax: 'fc00::c000:0:0:0' },
      },
      {
        name: 'a /124 IPv6 network, the smallest, with IPv6SubnetLen 126',
        config: { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/124' },
        expected: { ipv6SubnetLen: 126, ipv6SubnetMin: 'fc00::4', ipv6SubnetMax: 'fc00::c' },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        expect(summarize(parse(c.config))).to.deep.include(c.expected);
      });
    }
  });

  describe('refuses', () => {
    const cases: { name: string; config: Input; field: string; says: string[] }[] = [
      // The text itself
      { name: 'text that is not JSON, with the parser\'s message', config: '{"Network":', field: 'config', says: ['not valid JSON', 'Unexpected end of JSON input'] },
      { name: 'empty text', config: '', field: 'config', says: ['not valid JSON'] },
      { name: 'a JSON array', config: '[{"Network":"10.244.0.0/16"}]', field: 'config', says: ['[{"Network":', 'not a JSON object'] },
      { name: 'a JSON string', config: '"10.244.0.0/16"', field: 'config', says: ['"10.244.0.0/16"', 'not a JSON object'] },
      { name: 'JSON null', config: 'null', field: 'config', says: ['null', 'not a JSON object'] },
      { name: 'a key given twice in different case, naming both spellings', config: '{"Network":"10.1.0.0/16","network":"10.2.0.0/16"}', field: 'Network', says: ['"Network"', '"network"', 'given twice'] },

      // Types
      { name: 'EnableIPv6 "yes", asking for true or false', config: { Network: '10.244.0.0/16', EnableIPv6: 'yes' }, field: 'EnableIPv6', says: ['"yes"', 'true or false'] },
      { name: 'EnableIPv4 1, asking for true or false', config: { Network: '10.244.0.0/16', EnableIPv4: 1 }, field: 'EnableIPv4', says: ['1', 'true or false'] },
      { name: 'SubnetLen "24" given as a string, asking for a whole number', config: { Network: '10.0.0.0/8', SubnetLen: '24' }, field: 'SubnetLen', says: ['"24"', 'whole number'] },
      { name: 'SubnetLen 24.5, asking for a whole number', config: { Network: '10.0.0.0/8', SubnetLen: 24.5 }, field: 'SubnetLen', says: ['24.5', 'whole number'] },
      { name: 'SubnetLen -1, asking for a whole number', config: { Network: '10.0.0.0/8', SubnetLen: -1 }, field: 'SubnetLen', says: ['-1', 'whole number'] },
      { name: 'IPv6SubnetLen "64" given as a string', config: { EnableIPv6: true, IPv6Network: 'fc00::/48', Network: '10.0.0.0/8', IPv6SubnetLen: '64' }, field: 'IPv6SubnetLen', says: ['"64"', 'whole number'] },
      { name: 'Network given as a number, asking for a string', config: { Network: 10 }, field: 'Network', says: ['10', 'not a string', 'CIDR'] },
      { name: 'SubnetMin given as an array', config: { Network: '10.244.0.0/16', SubnetMin: ['10.244.1.0'] }, field: 'SubnetMin', says: ['["10.244.1.0"]', 'not a string'] },

      // Families
      { name: 'a config with both families disabled', config: { Network: '10.244.0.0/16', EnableIPv4: false, EnableIPv6: false }, field: 'EnableIPv4', says: ['false', 'EnableIPv6', 'at least one'] },
      { name: 'a config without Network while IPv4 is on', config: { Backend: { Type: 'vxlan' } }, field: 'Network', says: ['missing', 'EnableIPv4'] },
      { name: 'the whole address space, which flanneld takes for no Network', config: { Network: '0.0.0.0/0' }, field: 'Network', says: ['"0.0.0.0/0"'] },
      { name: 'an EnableIPv6 config without IPv6Network', config: { Network: '10.244.0.0/16', EnableIPv6: true }, field: 'IPv6Network', says: ['missing', 'EnableIPv6'] },

      // Network
      { name: 'a prefix length of 33', config: { Network: '10.244.0.0/33' }, field: 'Network', says: ['Network: "10.244.0.0/33" is not an IPv4 network in CIDR form'] },
      { name: 'a Network without a prefix length', config: { Network: '10.244.0.0' }, field: 'Network', says: ['"10.244.0.0"', 'no /prefix length'] },
      { name: 'an IPv6 network as Network', config: { Network: 'fc00::/48' }, field: 'Network', says: ['"fc00::/48"', 'IPv4 network'] },
      { name: 'a Network with host bits set, suggesting the network', config: { Network: '10.244.1.0/16' }, field: 'Network', says: ['"10.244.1.0/16"', 'did you mean 10.244.0.0/16?'] },
      { name: 'a /29 Network, naming the smallest of /28', config: { Network: '10.0.0.0/29' }, field: 'Network', says: ['"10.0.0.0/29"', '/28'] },
      { name: 'a /29 Network even with an explicit SubnetLen', config: { Network: '10.0.0.0/29', SubnetLen: 30 }, field: 'Network', says: ['"10.0.0.0/29"', '/28'] },

      // SubnetLen
      { name: 'SubnetLen 31 naming the limit of 30', config: { Network: '10.244.0.0/16', SubnetLen: 31 }, field: 'SubnetLen', says: ['SubnetLen: 31 is too large: it must be at most 30'] },
      { name: 'SubnetLen 17 in a /16, naming the minimum of 18', config: { Network: '10.244.0.0/16', SubnetLen: 17 }, field: 'SubnetLen', says: ['17', 'at least 18', '10.244.0.0/16'] },
      { name: 'SubnetLen 16 equal to the network prefix', config: { Network: '10.244.0.0/16', SubnetLen: 16 }, field: 'SubnetLen', says: ['16', 'at least 18'] },

      // SubnetMin / SubnetMax
      { name: 'a SubnetMin outside the Network', config: { Network: '10.244.0.0/16', SubnetMin: '10.245.0.0' }, field: 'SubnetMin', says: ['"10.245.0.0"', 'not inside Network 10.244.0.0/16'] },
      { name: 'a SubnetMax outside the Network', config: { Network: '10.244.0.0/16', SubnetMax: '10.0.0.0' }, field: 'SubnetMax', says: ['"10.0.0.0"', 'not inside Network 10.244.0.0/16'] },
      { name: 'a SubnetMin off a SubnetLen boundary, suggesting the aligned address', config: { Network: '10.244.0.0/16', SubnetMin: '10.244.1.128' }, field: 'SubnetMin', says: ['"10.244.1.128"', '/24 boundary', 'did you mean "10.244.1.0"?'] },
      { name: 'a SubnetMax off a SubnetLen boundary', config: { Network: '10.244.0.0/16', SubnetLen: 26, SubnetMax: '10.244.9.32' }, field: 'SubnetMax', says: ['"10.244.9.32"', '/26 boundary', '"10.244.9.0"'] },
      { name: 'a SubnetMin above SubnetMax', config: { Network: '10.244.0.0/16', SubnetMin: '10.244.9.0', SubnetMax: '10.244.8.0' }, field: 'SubnetMin', says: ['"10.244.9.0"', 'SubnetMax 10.244.8.0'] },
      { name: 'a SubnetMax below the default SubnetMin', config: { Network: '10.244.0.0/16', SubnetMax: '10.244.0.0' }, field: 'SubnetMax', says: ['"10.244.0.0"', 'SubnetMin 10.244.1.0 (the default)'] },
      { name: 'a SubnetMin above the default SubnetMax', config: { Network: '10.244.0.0/24', SubnetMax: '10.244.0.64', SubnetMin: '10.244.0.128' }, field: 'SubnetMin', says: ['"10.244.0.128"', 'SubnetMax 10.244.0.64'] },
      { name: 'a SubnetMin that is not an address', config: { Network: '10.244.0.0/16', SubnetMin: '10.244.1' }, field: 'SubnetMin', says: ['"10.244.1"', 'IPv4 address'] },
      { name: 'a SubnetMin written as a CIDR network', config: { Network: '10.244.0.0/16', SubnetMin: '10.244.1.0/24' }, field: 'SubnetMin', says: ['"10.244.1.0/24"', 'IPv4 address'] },
      { name: 'an IPv6 address as SubnetMax', config: { Network: '10.244.0.0/16', SubnetMax: 'fc00::' }, field: 'SubnetMax', says: ['"fc00::"', 'IPv4 address'] },

      // IPv6
      { name: 'an IPv4 network as IPv6Network', config: { EnableIPv6: true, Network: '10.244.0.0/16', IPv6Network: '10.0.0.0/8' }, field: 'IPv6Network', says: ['"10.0.0.0/8"', 'IPv6 network'] },
      { name: 'a malformed IPv6Network even while EnableIPv6 is off, as flanneld does', config: { Network: '10.244.0.0/16', IPv6Network: 'fc00::/200' }, field: 'IPv6Network', says: ['"fc00::/200"'] },
      { name: 'an IPv6Network with host bits set', config: { EnableIPv6: true, EnableIPv4: false, IPv6Network: 'fc00::1/48' }, field: 'IPv6Network', says: ['"fc00::1/48"', 'did you mean fc00::/48?'] },
      { name: 'a /125 IPv6Network, naming the smallest of /124', config: { EnableIPv6: true, EnableIPv4: false, IPv6Network: 'fc00::/125' }, field: 'IPv6Network', says: ['"fc00::/125"', '/124'] },
      { name: 'IPv6SubnetLen 127 naming the limit of 126', config: { EnableIPv6: true, EnableIPv4: false, IPv6Network: 'fc00::/48', IPv6SubnetLen: 127 }, field: 'IPv6SubnetLen', says: ['127 is too large', 'at most 126'] },
      { name: 'IPv6SubnetLen 49 in a /48, naming the minimum of 50', config: { EnableIPv6: true, EnableIPv4: false, IPv6Network: 'fc00::/48', IPv6SubnetLen: 49 }, field: 'IPv6SubnetLen', says: ['49', 'at least 50'] },
      { name: 'an IPv6SubnetMin outside the IPv6Network', config: { EnableIPv6: true, EnableIPv4: false, IPv6Network: 'fc00::/48', IPv6SubnetMin: 'fc00:1::' }, field: 'IPv6SubnetMin', says: ['"fc00:1::"', 'not inside IPv6Network fc00::/48'] },
      { name: 'an IPv6SubnetMax off an IPv6SubnetLen boundary', config: { EnableIPv6: true, EnableIPv4: false, IPv6Network: 'fc00::/48', IPv6SubnetMax: 'fc00:0:0:5:8000::' }, field: 'IPv6SubnetMax', says: ['"fc00:0:0:5:8000::"', '/64 boundary', '"fc00:0:0:5::"'] },
      { name: 'an IPv6SubnetMin above IPv6SubnetMax', config: { EnableIPv6: true, EnableIPv4: false, IPv6Network: 'fc00::/48', IPv6SubnetMin: 'fc00:0:0:9::', IPv6SubnetMax: 'fc00:0:0:8::' }, field: 'IPv6SubnetMin', says: ['"fc00:0:0:9::"', 'IPv6SubnetMax fc00:0:0:8::'] },
      { name: 'an IPv4 address as IPv6SubnetMin', config: { EnableIPv6: true, EnableIPv4: false, IPv6Network: 'fc00::/48', IPv6SubnetMin: '10.0.0.1' }, field: 'IPv6SubnetMin', says: ['"10.0.0.1"', 'IPv6 address'] },

      // Backend
      { name: 'an unknown Backend type, listing the known types sorted', config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlam' } }, field: 'Backend.Type', says: ['Backend.Type: "vxlam" is not a known backend; known types: alloc, host-gw, ipip, udp, vxlan'] },
      { name: 'a Backend without Type, as flanneld does', config: { Network: '10.244.0.0/16', Backend: { VNI: 2 } }, field: 'Backend.Type', says: ['missing', 'known types: alloc, host-gw, ipip, udp, vxlan'] },
      { name: 'an empty Backend type', config: { Network: '10.244.0.0/16', Backend: { Type: '' } }, field: 'Backend.Type', says: ['""', 'not a known backend'] },
      { name: 'a Backend type that is not a string', config: { Network: '10.244.0.0/16', Backend: { Type: 1 } }, field: 'Backend.Type', says: ['1', 'not a string'] },
      { name: 'a Backend given as a string', config: { Network: '10.244.0.0/16', Backend: 'vxlan' }, field: 'Backend', says: ['"vxlan"', 'not an object'] },
      { name: 'a Backend given as an array', config: { Network: '10.244.0.0/16', Backend: [{ Type: 'vxlan' }] }, field: 'Backend', says: ['[{"Type":"vxlan"}]', 'not an object'] },
      { name: 'a Backend Type given twice in different case', config: '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","type":"udp"}}', field: 'Backend.Type', says: ['"Type"', '"type"', 'given twice'] },
      { name: 'a Backend setting given twice in different case', config: '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1,"vni":2}}', field: 'Backend.vni', says: ['"VNI"', '"vni"', 'given twice'] },
    ];
    for (const c of cases) {
      it(c.name, () => {
        let caught: unknown;
        try {
          parse(c.config);
        } catch (err) {
          caught = err;
        }
        expect(caught, 'a ConfigError').to.be.instanceOf(ConfigError);
        const err = caught as ConfigError;
        expect(err.field).to.equal(c.field);
        expect(err.message.startsWith(`${c.field}: `), err.message).to.equal(true);
        for (const part of c.says) expect(err.message).to.include(part);
      });
    }
  });
});

describe('setting', () => {
  const settings = { VNI: 4, DirectRouting: true };

  it('finds a backend setting whatever the case of the name', () => {
    expect(setting(settings, 'vni')).to.equal(4);
    expect(setting(settings, 'VNI')).to.equal(4);
    expect(setting(settings, 'directrouting')).to.equal(true);
  });

  it('returns undefined for a setting that is absent', () => {
    expect(setting(settings, 'Port')).to.equal(undefined);
  });

  it('returns the last of two spellings, as Go decodes them', () => {
    expect(setting({ Port: 1, port: 2 }, 'PORT')).to.equal(2);
  });

  it('finds the settings parsed from a config', () => {
    const { backend } = parse({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan', Port: 4789 } });
    expect(setting(backend.settings, 'port')).to.equal(4789);
  });
});
