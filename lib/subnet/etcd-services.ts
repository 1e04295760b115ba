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
import { Root, Type, type INamespace, type IConversionOptions } from 'protobufjs/light';

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

/** A package definition for grpc.loadPackageDefinition; `options` are etcd3's toObject options. */
export function etcdPackageDefinition(description: EtcdServicesDescription, options: IConversionOptions): GrpcPackageDefinition {
  const root = Root.fromJSON(description.root);
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
