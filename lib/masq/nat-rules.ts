/**
 * NAT and forward rules for the pod network, behind one interface so the
 * agent need not know which firewall the host has: nftables when the `nft`
 * command exists, else iptables (DESIGN §2, lib/masq).
 */
import { findOnPath } from '../which';
import type { MasqPolicy } from './nftables';
import { NftablesMasq } from './nftables';
import { IptablesRules } from './iptables';

export interface NatRules {
  readonly kind: 'nftables' | 'iptables';
  /** Installs the rules unless the kernel already holds exactly them; true when it wrote. */
  ensure(policy: MasqPolicy): Promise<boolean>;
  /** Removes twill's rules, if present; true when something was removed. */
  remove(): Promise<boolean>;
}

export type NatBackend = 'auto' | 'nftables' | 'iptables';

/** The rule writer for `choice`; `auto` prefers nftables and falls back to iptables. */
export function createNatRules(choice: NatBackend): NatRules {
  if (choice === 'nftables') return new NftablesMasq();
  if (choice === 'iptables') return new IptablesRules();
  return findOnPath('nft') || !findOnPath('iptables') ? new NftablesMasq() : new IptablesRules();
}
