/**
 * etcd's gRPC services for grpc-js, built from a description made when the
 * daemon is bundled (lib/subnet/etcd-services-describe.ts) instead of by
 * @grpc/proto-loader at every start.
 *
 * Why: etcd3 parses rpc.proto with proto-loader when it is loaded, and
 * proto-loader then builds and encodes descriptors of every message for gRPC
 * reflection, which twilld never serves. That costs ~4 MB of heap and ~70 ms
 * of CPU per start on every node. grpc-js needs only, per method, its path,
 * whether it streams, and the functions that turn objects into bytes and
 * back; those are made here with protobufjs's reflection from the same
 * rpc.proto (as JSON), with the same conversion options as etcd3, so the
 * bytes on the wire are the same (test/unit/etcd-services.test.ts).
 */
import { Enum, Reader, Root, Type, type INamespace, type IConversionOptions, util, verifier, Writer } from 'protobufjs/light';

/** One method: name, proto-loader's camelCase alias, request/response streaming, request and response type names. */
export type EtcdMethodDescription = [name: string, originalName: string, requestStream: boolean, responseStream: boolean, requestType: string, responseType: string];

export interface EtcdServicesDescription {
  /** protobufjs's JSON of rpc.proto and its imports (Root.toJSON). */
  root: INamespace;
  /** Each service by its full name (etcdserverpb.KV), with its methods. */
  services: Array<[service: string, methods: EtcdMethodDescription[]]>;
}

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

/** The resolved type of each field of a message, in field order: what generated code calls `types`. */
type FieldTypes = Array<Type | Enum | null>;

/**
 * One message type's functions, made at build time by protobufjs's own
 * generators (lib/subnet/etcd-services-describe.ts `etcdCodecsSource`), each
 * wrapped in a function of the names its code reads.
 */
export interface EtcdCodec {
  ctor(): Type['ctor'];
  encode(writer: typeof Writer, types: FieldTypes, u: typeof util): Type['encode'];
  decode(reader: typeof Reader, types: FieldTypes, u: typeof util): Type['decode'];
  fromObject(types: FieldTypes, u: typeof util): Type['fromObject'];
  toObject(types: FieldTypes, u: typeof util): Type['toObject'];
}

export type EtcdCodecs = Readonly<Record<string, EtcdCodec>>;

/**
 * Has `type` take its functions from `codec` where protobufjs would generate
 * them on first use (Type.setup); `verify`, which twilld never calls, is
 * still generated if anything ever does.
 */
function useCodec(type: Type, codec: EtcdCodec): void {
  type.setup = function setup(this: Type): Type {
    const types: FieldTypes = this.fieldsArray.map((f) => f.resolve().resolvedType);
    this.ctor = codec.ctor();
    this.encode = codec.encode(Writer, types, util);
    this.decode = codec.decode(Reader, types, util);
    this.fromObject = codec.fromObject(types, util);
    this.toObject = codec.toObject(types, util);
    // Generated only if called: twilld never verifies.
    this.verify = function verify(this: Type, ...args: Parameters<Type['verify']>): ReturnType<Type['verify']> {
      this.verify = verifier(this)({ types, util }) as Type['verify'];
      return this.verify(...args);
    };
    return this;
  };
}

function serializer(type: Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`cannot serialize an array as ${type.name}`);
    const bytes = type.encode(type.fromObject(value)).finish();
    // protobufjs hands out a Buffer under Node; copy only if it ever does not.
    return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  };
}

function deserializer(type: Type, options: IConversionOptions): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), options);
}

/** A package definition for grpc.loadPackageDefinition; `options` are etcd3's toObject options; `codecs`: functions made ahead for these types. */
export function etcdPackageDefinition(description: EtcdServicesDescription, options: IConversionOptions, codecs: EtcdCodecs = {}): GrpcPackageDefinition {
  const root = Root.fromJSON(description.root);
  for (const [name, codec] of Object.entries(codecs)) useCodec(root.lookupType(name), codec);
  const definition: GrpcPackageDefinition = {};
  for (const [service, methods] of description.services) {
    const def: Record<string, GrpcMethodDefinition> = {};
    for (const [name, originalName, requestStream, responseStream, requestName, responseName] of methods) {
      const request = root.lookupType(requestName);
      const response = root.lookupType(responseName);
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
