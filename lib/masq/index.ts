export * from './nftables';
export * from './iptables';
export * from './nat-rules';
