/**
 * One small interface for every packet filter pfgrey can drive. Addresses are plain IPv4 or
 * IPv6 literals; a backend adds the prefix length its tool wants (`/32`, `/128`).
 * Every method rejects with a PfgreyError (E_FIREWALL or E_FIREWALL_TIMEOUT) whose message
 * carries the tool's exit status and stderr.
 */
export interface Firewall {
  readonly name: 'pf' | 'nft' | 'none';
  /** Makes the table's contents exactly `addrs`. */
  replace(table: string, addrs: readonly string[]): Promise<void>;
  add(table: string, addrs: readonly string[]): Promise<void>;
  delete(table: string, addrs: readonly string[]): Promise<void>;
  /** The table's current contents, as plain addresses. */
  show(table: string): Promise<string[]>;
}
