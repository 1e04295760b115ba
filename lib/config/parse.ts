/**
 * The network config JSON stored at `<prefix>/config` (DESIGN §4): parse,
 * fill in flanneld's defaults, validate.
 *
 * flanneld decodes the config with Go's encoding/json into a struct and then
 * checks it (`pkg/subnet/config.go`). twill fills in the same defaults and
 * applies the same limits, and also refuses what flanneld lets through by
 * mistake: host bits in a network (flanneld clears them silently), SubnetMin
 * above SubnetMax, both families disabled, a key given twice in different
 * case. Every refusal is a `ConfigError` whose message names the field, the
 * bad value and what is expected.
 *
 * Compatibility notes:
 * - Keys match case-insensitively, as Go matches JSON keys to struct fields.
 *   A key written twice with different case (`"Network"` and `"network"`) is
 *   refused: Go silently keeps the last one, but one of the two is a mistake
 *   and only the operator knows which. A key repeated with the same spelling
 *   cannot be seen after `JSON.parse`, which keeps the last one, as Go does.
 * - `null` counts as absent, as Go leaves a bool or number field untouched
 *   when it decodes `null`.
 * - A zero value counts as unset, as in flanneld, where the Go zero value is
 *   how "not given" is detected: `SubnetLen: 0` and `SubnetMin: "0.0.0.0"`
 *   get the defaults, and a `Network` of `"0.0.0.0/0"` is refused, as by flanneld.
 * - Values of a disabled address family are still parsed (flanneld fails to
 *   decode a malformed one whatever `EnableIPv4`/`EnableIPv6` say) but not
 *   checked further; a warning says they are ignored.
 */
import { IP, IPNet, InvalidAddressError, type Family } from '../ip';
import { ConfigError, type BackendConfig, type NetworkConfig } from './types';

/** Top-level keys in their documented spelling. */
const KEYS = [
  'EnableIPv4', 'EnableIPv6',
  'Network', 'SubnetLen', 'SubnetMin', 'SubnetMax',
  'IPv6Network', 'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax',
  'Backend',
] as const;
type Key = (typeof KEYS)[number];

/** The backend used when the config has no `Backend` (flanneld's default). */
const DEFAULT_BACKEND = 'udp';

/** The keys and limits of one address family. */
interface FamilyRules {
  readonly family: Family;
  readonly enable: 'EnableIPv4' | 'EnableIPv6';
  readonly network: 'Network' | 'IPv6Network';
  readonly subnetLen: 'SubnetLen' | 'IPv6SubnetLen';
  readonly subnetMin: 'SubnetMin' | 'IPv6SubnetMin';
  readonly subnetMax: 'SubnetMax' | 'IPv6SubnetMax';
  readonly example: string;
  /** Longest subnet prefix: a subnet needs four addresses (network, gateway, a pod, broadcast). */
  readonly maxSubnetLen: number;
  /** Subnet length given when the network holds at least four of them. */
  readonly preferredSubnetLen: number;
}

const IPV4: FamilyRules = {
  family: 4, enable: 'EnableIPv4', network: 'Network', subnetLen: 'SubnetLen',
  subnetMin: 'SubnetMin', subnetMax: 'SubnetMax', example: '10.244.0.0/16',
  maxSubnetLen: 30, preferredSubnetLen: 24,
};

const IPV6: FamilyRules = {
  family: 6, enable: 'EnableIPv6', network: 'IPv6Network', subnetLen: 'IPv6SubnetLen',
  subnetMin: 'IPv6SubnetMin', subnetMax: 'IPv6SubnetMax', example: 'fc00::/48',
  maxSubnetLen: 126, preferredSubnetLen: 64,
};

/**
 * The network needs room for at least four subnets, because the first is
 * never handed out (its address is the network's own) and splitting in two
 * would leave one node. Hence the network prefix is at most SubnetLen − 2.
 */
const SUBNETS_BITS = 2;

/** One JSON object's keys, indexed by their lower-case form. */
type Fields = ReadonlyMap<string, { readonly key: string; readonly value: unknown }>;

/**
 * Parses and validates a network config, filling in defaults.
 *
 * `knownBackendTypes` are the backend names this build can run (lower case);
 * any other `Backend.Type` is refused. For a disabled family the network and
 * subnet bounds are absent and its subnet length is 0.
 *
 * @throws ConfigError for the first problem found; `field` is the key in its
 *   documented spelling (`Backend.Type` for the backend's type, `config` when
 *   the text is not a JSON object).
 */
export function parseNetworkConfig(text: string, knownBackendTypes: readonly string[]): NetworkConfig {
  const warnings: string[] = [];
  const obj = parseObject(text);
  const fields = indexFields(obj, (key) => KEYS.find((k) => k.toLowerCase() === key.toLowerCase()));
  for (const key of Object.keys(obj)) {
    if (!KEYS.some((k) => k.toLowerCase() === key.toLowerCase())) warnings.push(`unknown key ${JSON.stringify(key)} is ignored`);
  }

  const enableIPv4 = readBool(fields, 'EnableIPv4') ?? true;
  const enableIPv6 = readBool(fields, 'EnableIPv6') ?? false;
  if (!enableIPv4 && !enableIPv6) {
    fail('EnableIPv4', 'false while EnableIPv6 is false too leaves no address family; enable at least one');
  }
  const v4 = resolveFamily(fields, IPV4, enableIPv4, warnings);
  const v6 = resolveFamily(fields, IPV6, enableIPv6, warnings);

  return {
    enableIPv4,
    enableIPv6,
    network: v4.network,
    subnetLen: v4.subnetLen,
    subnetMin: v4.subnetMin,
    subnetMax: v4.subnetMax,
    ipv6Network: v6.network,
    ipv6SubnetLen: v6.subnetLen,
    ipv6SubnetMin: v6.subnetMin,
    ipv6SubnetMax: v6.subnetMax,
    backend: parseBackend(get(fields, 'Backend'), knownBackendTypes),
    warnings,
  };
}

/**
 * Looks a backend setting up by name, case-insensitively (as Go decodes a
 * backend's settings into its struct). Returns undefined when absent; of
 * keys differing only in case, the last wins, as in Go.
 */
export function setting(settings: Readonly<Record<string, unknown>>, name: string): unknown {
  const wanted = name.toLowerCase();
  let found: unknown;
  for (const [key, value] of Object.entries(settings)) {
    if (key.toLowerCase() === wanted) found = value;
  }
  return found;
}

// ---- JSON shape ----

function parseObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    fail('config', `not valid JSON: ${oneLine((err as Error).message)}`);
  }
  if (!isObject(value)) fail('config', `${show(value)} is not a JSON object; expected {"Network": "${IPV4.example}", ...}`);
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Indexes an object's keys case-insensitively, refusing a key that is used
 * (`fieldName` gives its documented spelling) and given twice in different
 * case. Keys that are not used may repeat: they are ignored anyway.
 */
function indexFields(obj: Record<string, unknown>, fieldName: (key: string) => string | undefined): Fields {
  const fields = new Map<string, { key: string; value: unknown }>();
  for (const [key, value] of Object.entries(obj)) {
    const earlier = fields.get(key.toLowerCase());
    const field = fieldName(key);
    if (earlier && field !== undefined) {
      fail(field, `given twice, as ${JSON.stringify(earlier.key)} and ${JSON.stringify(key)}; ` +
        'keys match case-insensitively, so give only one');
    }
    fields.set(key.toLowerCase(), { key, value });
  }
  return fields;
}

/**
 * For a message about a missing key: the unknown keys that were ignored,
 * since a misspelt key ("Netwrok") is the usual reason, and the warning
 * about it is never shown when the config is refused.
 */
function ignoredNote(fields: Fields): string {
  const unknown = [...fields.values()].map((f) => f.key).filter((key) => !KEYS.some((k) => k.toLowerCase() === key.toLowerCase()));
  if (unknown.length === 0) return '';
  const shown = unknown.slice(0, 5).map((k) => show(k)).join(', ');
  return `; unknown keys were ignored: ${shown}${unknown.length > 5 ? `, and ${unknown.length - 5} more` : ''}`;
}

/** The value of `key`, undefined when absent or null. */
function get(fields: Fields, key: string): unknown {
  return fields.get(key.toLowerCase())?.value ?? undefined;
}

// ---- typed readers ----

function readBool(fields: Fields, key: Key): boolean | undefined {
  const value = get(fields, key);
  if (value === undefined || typeof value === 'boolean') return value;
  return fail(key, `${show(value)} is not a boolean; expected true or false`);
}

/** A prefix length; 0 means unset, as in flanneld. */
function readPrefixLen(fields: Fields, key: Key, example: number): number | undefined {
  const value = get(fields, key);
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    fail(key, `${show(value)} is not a prefix length; expected a whole number such as ${example}`);
  }
  return value === 0 ? undefined : value;
}

function readString(fields: Fields, key: Key, expected: string): string | undefined {
  const value = get(fields, key);
  if (value === undefined || typeof value === 'string') return value;
  return fail(key, `${show(value)} is not a string; expected ${expected}`);
}

function readNetwork(fields: Fields, rules: FamilyRules): IPNet | undefined {
  const key = rules.network;
  const text = readString(fields, key, `an IPv${rules.family} network in CIDR form such as "${rules.example}"`);
  if (text === undefined) return undefined;
  const network = parseAddress(key, () => IPNet.parse(text, { want: rules.family }));
  if (network.prefixLen === 0 && network.ip.value === 0n) return undefined;
  return network;
}

/** An address; the all-zero address means unset, as in flanneld. */
function readAddress(fields: Fields, key: Key, family: Family): IP | undefined {
  const text = readString(fields, key, `an IPv${family} address`);
  if (text === undefined) return undefined;
  const ip = parseAddress(key, () => IP.parse(text, family));
  return ip.value === 0n ? undefined : ip;
}

/**
 * Runs an `ip` parser, turning its error into a ConfigError that names the
 * text (shortened) and what was expected.
 */
function parseAddress<T>(key: Key, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof InvalidAddressError) fail(key, `${show(err.text)} is not ${err.reason}`);
    throw err;
  }
}

// ---- one address family ----

interface FamilyConfig {
  readonly network?: IPNet;
  readonly subnetLen: number;
  readonly subnetMin?: IP;
  readonly subnetMax?: IP;
}

/** Reads one family's network and subnet bounds, fills in defaults and checks them against each other. */
function resolveFamily(fields: Fields, rules: FamilyRules, enabled: boolean, warnings: string[]): FamilyConfig {
  const network = readNetwork(fields, rules);
  const givenLen = readPrefixLen(fields, rules.subnetLen, rules.preferredSubnetLen);
  const givenMin = readAddress(fields, rules.subnetMin, rules.family);
  const givenMax = readAddress(fields, rules.subnetMax, rules.family);

  if (!enabled) {
    for (const key of [rules.network, rules.subnetLen, rules.subnetMin, rules.subnetMax]) {
      if (get(fields, key) !== undefined) warnings.push(`${key} is ignored because ${rules.enable} is false`);
    }
    return { subnetLen: 0 };
  }

  if (network === undefined) {
    const given = get(fields, rules.network);
    if (given !== undefined) {
      fail(rules.network, `${show(given)} covers every address, which flanneld takes as no network at all; ` +
        `give the pod network, such as "${rules.example}"`);
    }
    return fail(rules.network, `missing; it is required while ${rules.enable} is true ` +
      `(give the pod network, such as "${rules.example}", or set ${rules.enable} to false)${ignoredNote(fields)}`);
  }

  const smallest = rules.maxSubnetLen - SUBNETS_BITS;
  if (network.prefixLen > smallest) {
    fail(rules.network, `${show(get(fields, rules.network))} is too small: its prefix must be at most /${smallest}, ` +
      `so that it holds at least four subnets of at least four addresses`);
  }

  const subnetLen = givenLen ?? defaultSubnetLen(network, rules);
  if (subnetLen > rules.maxSubnetLen) {
    fail(rules.subnetLen, `${subnetLen} is too large: it must be at most ${rules.maxSubnetLen}, ` +
      'so that each subnet has room for the gateway and at least one pod');
  }
  const minLen = network.prefixLen + SUBNETS_BITS;
  if (subnetLen < minLen) {
    fail(rules.subnetLen, `${subnetLen} is too small for ${rules.network} ${network}: it must be at least ${minLen}, ` +
      'so that the network holds at least four subnets (the first one is never used)');
  }

  const subnetSize = 1n << BigInt(network.ip.bits - subnetLen);
  // The first subnet is skipped: its address is the network's own.
  const subnetMin = givenMin ?? network.ip.add(subnetSize);
  const subnetMax = givenMax ?? IP.fromValue(rules.family, network.last.value - subnetSize + 1n);
  for (const [key, ip] of [[rules.subnetMin, givenMin], [rules.subnetMax, givenMax]] as const) {
    if (ip) checkBound(key, show(get(fields, key)), ip, network, subnetLen, rules);
  }
  if (subnetMin.value > subnetMax.value) {
    // Blame a bound the operator wrote (at least one was: the defaults are in order).
    const note = (given: IP | undefined) => (given ? '' : ' (the default)');
    if (givenMin) {
      fail(rules.subnetMin, `${show(get(fields, rules.subnetMin))} is above ${rules.subnetMax} ${subnetMax}${note(givenMax)}, ` +
        'which leaves no subnet to allocate');
    }
    fail(rules.subnetMax, `${show(get(fields, rules.subnetMax))} is below ${rules.subnetMin} ${subnetMin}${note(givenMin)}, ` +
      'which leaves no subnet to allocate');
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

/**
 * flanneld's default: the preferred length (/24, /64) when the network holds
 * at least four such subnets, else a quarter of the network.
 */
function defaultSubnetLen(network: IPNet, rules: FamilyRules): number {
  return network.prefixLen <= rules.preferredSubnetLen - SUBNETS_BITS
    ? rules.preferredSubnetLen
    : network.prefixLen + SUBNETS_BITS;
}

/**
 * A given SubnetMin/SubnetMax must be the address of a subnet inside the
 * network (flanneld checks both too); `written` is the value as given.
 */
function checkBound(key: Key, written: string, ip: IP, network: IPNet, subnetLen: number, rules: FamilyRules): void {
  if (!network.contains(ip)) fail(key, `${written} is not inside ${rules.network} ${network}`);
  const aligned = IPNet.of(ip, subnetLen).ip;
  if (!aligned.equals(ip)) {
    fail(key, `${written} is not on a /${subnetLen} boundary (${rules.subnetLen} is ${subnetLen}); did you mean "${aligned}"?`);
  }
}

// ---- backend ----

/**
 * A missing Backend means udp. A Backend without Type is refused: flanneld
 * looks up the empty name and fails with "unknown backend type".
 */
function parseBackend(value: unknown, knownBackendTypes: readonly string[]): BackendConfig {
  if (value === undefined) return { type: DEFAULT_BACKEND, settings: {} };
  if (!isObject(value)) fail('Backend', `${show(value)} is not an object; expected an object such as {"Type": "vxlan"}`);

  const fields = indexFields(value, (key) => `Backend.${key.toLowerCase() === 'type' ? 'Type' : key}`);
  const known = knownBackendTypes.map((t) => t.toLowerCase()).sort();
  const knownList = `known types: ${known.join(', ')}`;
  const typeField = fields.get('type');
  const typeValue = typeField?.value;
  if (typeValue === undefined || typeValue === null) {
    fail('Backend.Type', `missing; name the backend, such as {"Type": "vxlan"} (${knownList})`);
  }
  if (typeof typeValue !== 'string') fail('Backend.Type', `${show(typeValue)} is not a string; expected a backend name (${knownList})`);
  const type = typeValue.toLowerCase();
  if (!known.includes(type)) fail('Backend.Type', `${show(typeValue)} is not a known backend; ${knownList}`);

  const settings: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key !== typeField?.key) settings[key] = v;
  }
  return { type, settings };
}

// ---- errors ----

function fail(field: string, problem: string): never {
  throw new ConfigError(field, `${field}: ${problem}`);
}

/**
 * A parser's message, which may quote the bad text raw (line breaks and
 * all): control characters escaped and cut short, so it stays one line.
 */
function oneLine(message: string): string {
  const escaped = message.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return escaped.length > 160 ? `${escaped.slice(0, 157)}...` : escaped;
}

/** A value as it appeared in the JSON, shortened for a one-line message. */
function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
