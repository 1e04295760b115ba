/**
 * etcd's gRPC services for grpc-js, from codecs made when the daemon is
 * bundled (lib/subnet/etcd-services-describe.ts) instead of by
 * @grpc/proto-loader and protobufjs's reflection at every start.
 *
 * Why: etcd3 parses rpc.proto with proto-loader when it is loaded, and
 * proto-loader then builds and encodes descriptors of every message for gRPC
 * reflection, which twilld never serves (~4 MB of heap, ~70 ms of CPU per
 * start on every node). grpc-js needs only, per method, its path, whether it
 * streams, and the functions that turn objects into bytes and back. Those
 * functions are protobufjs's own, generated from etcd3's rpc.proto with its
 * generators at build time; here they are only tied to each other, each
 * message on its first use, so no reflection of the ~110 messages is built
 * and only protobufjs's runtime (Reader, Writer, util) is loaded. The bytes
 * on the wire and the objects etcd3 gets are proto-loader's
 * (test/unit/etcd-services.test.ts, every method of every service).
 */
import { Reader, util, Writer } from 'protobufjs/minimal';

/** One method: name, proto-loader's camelCase alias, request/response streaming, request and response type names. */
export type EtcdMethodDescription = [name: string, originalName: string, requestStream: boolean, responseStream: boolean, requestType: string, responseType: string];

/** Each service by its full name (etcdserverpb.KV), with its methods. */
export type EtcdServiceList = Array<[service: string, methods: EtcdMethodDescription[]]>;

/** The fields of a grpc-js MethodDefinition that its client constructors read. */
export interface GrpcMethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (value: object) => Buffer;
  requestDeserialize: (bytes: Buffer) => object;
  responseSerialize: (value: object) => Buffer;
  responseDeserialize: (bytes: Buffer) => object;
  originalName: string;
}

export type GrpcPackageDefinition = Record<string, Record<string, GrpcMethodDefinition>>;

/** protobufjs's conversion options, as etcd3 passes them. */
export interface ConversionOptions {
  longs?: typeof String | typeof Number;
  enums?: typeof String;
  defaults?: boolean;
  oneofs?: boolean;
}

type MessageCtor = new (properties?: object) => object;
type Encode = (message: object, writer?: Writer, depth?: number) => Writer;
type Decode = (reader: Reader | Uint8Array, length?: number, end?: number, depth?: number) => object;
type FromObject = (object: object, depth?: number) => object;
type ToObject = (message: object, options?: ConversionOptions, depth?: number) => Record<string, unknown>;

/** What generated code finds at `types[i]`: a message, an enum (its `values` as protobufjs's Enum has them), or nothing for a scalar field. */
type FieldType = EtcdMessage | { readonly values: Readonly<Record<string, string | number>> } | null;

/**
 * One message type's functions, made at build time by protobufjs's
 * generators, each wrapped in a function of the names its code reads;
 * `types` names each field's message or enum type in field order (null for
 * scalars), which is what that code indexes.
 */
export interface EtcdCodec {
  types: Array<string | null>;
  ctor(): MessageCtor;
  encode(writer: typeof Writer, types: FieldType[], u: typeof util): Encode;
  decode(reader: typeof Reader, types: FieldType[], u: typeof util): Decode;
  fromObject(types: FieldType[], u: typeof util): FromObject;
  toObject(types: FieldType[], u: typeof util): ToObject;
}

export interface EtcdCodecs {
  messages: Readonly<Record<string, EtcdCodec>>;
  /** Each enum's values by name. */
  enums: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

/**
 * A message type as generated code calls it (`types[i].encode(…)`, `new
 * this.ctor`): its functions are tied on first use, as protobufjs's own
 * Type.setup does, so start-up pays only for the messages it sends.
 */
class EtcdMessage {
  ctor!: MessageCtor;

  constructor(readonly name: string, private readonly codec: EtcdCodec, private readonly resolve: (name: string) => FieldType) {}

  encode(message: object, writer?: Writer, depth?: number): Writer {
    return this.setup().encode(message, writer, depth);
  }

  decode(reader: Reader | Uint8Array, length?: number, end?: number, depth?: number): object {
    return this.setup().decode(reader, length, end, depth);
  }

  fromObject(object: object, depth?: number): object {
    return this.setup().fromObject(object, depth);
  }

  toObject(message: object, options?: ConversionOptions, depth?: number): Record<string, unknown> {
    return this.setup().toObject(message, options, depth);
  }

  /** Replaces the methods above with the generated ones, as own properties. */
  private setup(): this {
    const types = this.codec.types.map((name) => (name === null ? null : this.resolve(name)));
    this.ctor = this.codec.ctor();
    this.encode = this.codec.encode(Writer, types, util);
    this.decode = this.codec.decode(Reader, types, util);
    this.fromObject = this.codec.fromObject(types, util);
    this.toObject = this.codec.toObject(types, util);
    return this;
  }
}

/** protobufjs's Enum `values`: names to numbers, over numbers to names (generated toObject reads `values[number]`). */
function enumValues(byName: Readonly<Record<string, number>>): Record<string, string | number> {
  const byNumber: Record<string, string> = {};
  for (const [name, n] of Object.entries(byName)) byNumber[n] = name;
  return Object.assign(Object.create(byNumber) as Record<string, string | number>, byName);
}

/** Every message and enum of `codecs` by full name, tied to each other. */
function etcdTypes(codecs: EtcdCodecs): (name: string) => EtcdMessage {
  const types = new Map<string, FieldType>();
  const resolve = (name: string): FieldType => {
    const known = types.get(name);
    if (known !== undefined) return known;
    const codec = codecs.messages[name];
    const byName = codecs.enums[name];
    let made: FieldType;
    if (codec) made = new EtcdMessage(name, codec, resolve);
    else if (byName) made = { values: enumValues(byName) };
    else throw new Error(`etcd services: no codec for ${name}; rebuild the daemon bundle (cmd/bundle-daemon.ts)`);
    types.set(name, made);
    return made;
  };
  return (name) => {
    const t = resolve(name);
    if (!(t instanceof EtcdMessage)) throw new Error(`etcd services: ${name} is not a message`);
    return t;
  };
}

function serializer(type: EtcdMessage): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`cannot serialize an array as ${type.name}`);
    const bytes = type.encode(type.fromObject(value)).finish();
    // protobufjs hands out a Buffer under Node; copy only if it ever does not.
    return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  };
}

function deserializer(type: EtcdMessage, options: ConversionOptions): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), options);
}

/** A package definition for grpc.loadPackageDefinition; `options` are etcd3's conversion options. */
export function etcdPackageDefinition(services: EtcdServiceList, options: ConversionOptions, codecs: EtcdCodecs): GrpcPackageDefinition {
  const message = etcdTypes(codecs);
  const definition: GrpcPackageDefinition = {};
  for (const [service, methods] of services) {
    const def: Record<string, GrpcMethodDefinition> = {};
    for (const [name, originalName, requestStream, responseStream, requestName, responseName] of methods) {
      const request = message(requestName);
      const response = message(responseName);
      def[name] = {
        path: `/${service}/${name}`,
        requestStream,
        responseStream,
        requestSerialize: serializer(request),
        requestDeserialize: deserializer(request, options),
        responseSerialize: serializer(response),
        responseDeserialize: deserializer(response, options),
        originalName,
      };
    }
    definition[service] = def;
  }
  return definition;
}
