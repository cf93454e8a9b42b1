import { open } from 'node:fs';
import { DEFAULTS } from '../config/defaults.js';
import { executableProblem } from '../exec.js';
import type { Logger } from '../log.js';
import { nftFirewall, nftTableLoadProblem } from './nft.js';
import { noneFirewall } from './none.js';
import { pfFirewall } from './pf.js';
import type { Firewall } from './types.js';

export type FirewallKind = 'auto' | 'pf' | 'nft' | 'none';

export interface ChooseFirewallOptions {
  /** DEFAULTS.pfctl. */
  pfctl?: string;
  /** DEFAULTS.pfDevice. */
  pfDevice?: string;
  /** DEFAULTS.nft. */
  nft?: string;
  /** The nftables table, `FAMILY NAME`; DEFAULTS.nftTable. */
  nftTable?: string;
  /** pfctl or nft timeout in ms; DEFAULTS.firewallTimeout. */
  timeout?: number;
  /** The table takes CIDR blocks (pfgrey setup -b's blacklists), not only addresses. */
  cidr?: boolean;
  log: Logger;
}

export interface ChosenFirewall {
  firewall: Firewall;
  /** For the start-up line: `pf (/sbin/pfctl, /dev/pf)`, `none (/sbin/pfctl does not exist)`, … */
  reason: string;
  /**
   * The pf device descriptor handed to pfctl, kept open for the life of the firewall; the
   * caller may close it when it is done with the firewall.
   */
  deviceFd?: number;
}

/**
 * Picks the firewall backend. `auto` means pf when this host can drive it (pfctl executable,
 * pf device openable read-write), else nft when nft is executable and pfgrey's table is loaded,
 * else none. The device is opened here, while the daemon may still be root, and its descriptor
 * passed to every pfctl, as spamd does.
 */
export async function chooseFirewall(kind: FirewallKind, opts: ChooseFirewallOptions): Promise<ChosenFirewall> {
  const pfctl = opts.pfctl ?? DEFAULTS.pfctl;
  const pfDevice = opts.pfDevice ?? DEFAULTS.pfDevice;
  const timeout = opts.timeout ?? DEFAULTS.firewallTimeout;

  if (kind === 'none') return { firewall: noneFirewall(opts.log), reason: 'none (as asked)' };
  if (kind === 'nft') return chooseNft(opts, undefined);

  const pfctlProblem = await executableProblem(pfctl);
  if (kind === 'auto' && pfctlProblem !== undefined) return chooseNft(opts, pfctlProblem);

  const device = await openDevice(pfDevice);
  if (typeof device !== 'number') {
    if (kind === 'auto') return chooseNft(opts, `cannot open ${pfDevice}: ${device}`);
    // Asked for pf explicitly: pfctl may still manage on its own (it opens the device itself
    // when run without -p), and if it cannot, every push says why and is retried.
    const problems = [pfctlProblem, `cannot open ${pfDevice}: ${device}; pfctl will open it itself`]
      .filter((p): p is string => p !== undefined);
    for (const p of problems) opts.log.warning(`firewall pf: ${p}`);
    return { firewall: pfFirewall({ pfctl, timeout, cidr: opts.cidr }), reason: `pf (${pfctl}; ${problems.join('; ')})` };
  }

  if (pfctlProblem !== undefined) opts.log.warning(`firewall pf: ${pfctlProblem}`);
  return {
    firewall: pfFirewall({ pfctl, timeout, deviceFd: device, cidr: opts.cidr }),
    reason: pfctlProblem === undefined ? `pf (${pfctl}, ${pfDevice})` : `pf (${pfDevice}; ${pfctlProblem})`,
    deviceFd: device,
  };
}

/**
 * nft, asked for (`pfProblem` undefined) or as auto's second choice after pf (`pfProblem` says
 * why not pf). Asked for, it is used even when it cannot work yet: every push says why and is
 * retried, so loading the ruleset after starting pfgrey is enough.
 */
async function chooseNft(opts: ChooseFirewallOptions, pfProblem: string | undefined): Promise<ChosenFirewall> {
  const nft = opts.nft ?? DEFAULTS.nft;
  const table = opts.nftTable ?? DEFAULTS.nftTable;
  const timeout = opts.timeout ?? DEFAULTS.firewallTimeout;
  const firewall = nftFirewall({ nft, table, timeout, cidr: opts.cidr });
  const problem = await executableProblem(nft) ?? await nftTableLoadProblem({ nft, table, timeout, cidr: opts.cidr });
  if (problem === undefined) return { firewall, reason: `nft (${nft}, table ${table})` };
  if (pfProblem !== undefined) return { firewall: noneFirewall(opts.log), reason: `none (${pfProblem}; ${problem})` };
  opts.log.warning(`firewall nft: ${problem}`);
  return { firewall, reason: `nft (${nft}, table ${table}; ${problem})` };
}

/** A raw descriptor (not a FileHandle, which would close itself when collected), or why not. */
function openDevice(path: string): Promise<number | string> {
  return new Promise((resolve) => {
    open(path, 'r+', (err, fd) => {
      if (err) resolve(err.code ?? err.message);
      else resolve(fd);
    });
  });
}
