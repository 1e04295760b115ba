/**
 * The etcd flags the operator CLI shares with twilld (same names, same
 * FLANNELD_* environment variables), and the client they describe.
 */
import type { Command } from 'commander';
import type { Etcd3 } from 'etcd3';
import { createEtcdClient } from '../subnet/etcd-client';

export interface EtcdCliOptions {
  etcdEndpoints: string;
  etcdPrefix: string;
  etcdKeyfile?: string;
  etcdCertfile?: string;
  etcdCafile?: string;
  etcdUsername?: string;
  etcdPassword?: string;
}

const env = (name: string): string | undefined => process.env[`FLANNELD_${name}`] || undefined;

export function addEtcdOptions(cmd: Command): Command {
  return cmd
    .option('--etcd-endpoints <list>', 'comma-separated etcd endpoints (env FLANNELD_ETCD_ENDPOINTS)', env('ETCD_ENDPOINTS') ?? 'http://127.0.0.1:4001,http://127.0.0.1:2379')
    .option('--etcd-prefix <prefix>', 'etcd prefix (env FLANNELD_ETCD_PREFIX)', env('ETCD_PREFIX') ?? '/coreos.com/network')
    .option('--etcd-keyfile <file>', 'TLS client key (env FLANNELD_ETCD_KEYFILE)', env('ETCD_KEYFILE'))
    .option('--etcd-certfile <file>', 'TLS client certificate (env FLANNELD_ETCD_CERTFILE)', env('ETCD_CERTFILE'))
    .option('--etcd-cafile <file>', 'TLS CA (env FLANNELD_ETCD_CAFILE)', env('ETCD_CAFILE'))
    .option('--etcd-username <user>', 'etcd user (env FLANNELD_ETCD_USERNAME)', env('ETCD_USERNAME'))
    .option('--etcd-password <password>', 'etcd password (env FLANNELD_ETCD_PASSWORD)', env('ETCD_PASSWORD'));
}

export function etcdClientFrom(opts: EtcdCliOptions): Etcd3 {
  return createEtcdClient({
    endpoints: opts.etcdEndpoints.split(',').map((s) => s.trim()).filter(Boolean),
    keyFile: opts.etcdKeyfile,
    certFile: opts.etcdCertfile,
    caFile: opts.etcdCafile,
    username: opts.etcdUsername,
    password: opts.etcdPassword,
  });
}
