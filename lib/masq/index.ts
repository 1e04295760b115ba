export * from './nftables';
