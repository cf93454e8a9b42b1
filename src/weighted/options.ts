// Weighted greylisting's options, shared by `pfgrey run`, `pfgrey policy` and `pfgrey explain`
// so all three read them the same way (README, "Weighted greylisting"; pfgrey(8)), and the stage
// built from them.

import os from 'node:os';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError } from '../errors.js';
import type { WeightedCore } from '../grey/greylister.js';
import { DnsClient, parseResolver } from './dns.js';
import { type ListSpec, parseListSpec } from './dnslists.js';
import { loadGenericPatterns } from './helo-rdns.js';
import { loadSpf } from './spf.js';
import { WeightedStage, type WeightedSettings } from './score.js';

export const WEIGHTED_OPTIONS = {
  weighted: { type: 'boolean' },
  'greylist-threshold': { type: 'string' },
  'trap-threshold': { type: 'string' },
  dnsbl: { type: 'string', multiple: true },
  dnswl: { type: 'string', multiple: true },
  resolver: { type: 'string', multiple: true },
  'generic-rdns': { type: 'string' },
  'no-spf': { type: 'boolean' },
} as const;

export interface WeightedOptionValues {
  weighted?: boolean;
  'greylist-threshold'?: string;
  'trap-threshold'?: string;
  dnsbl?: string[];
  dnswl?: string[];
  resolver?: string[];
  'generic-rdns'?: string;
  'no-spf'?: boolean;
}

/**
 * The lists --weighted asks when neither --dnsbl nor --dnswl is given: bley's defaults, a
 * block list and an allow list run by their own organisations. Both answer public resolvers'
 * queries with error codes (counted neutral, see src/weighted/dnslists.ts), so a site with
 * real volume runs a resolver of its own or names its lists.
 */
export const DEFAULT_DNSBLS: readonly string[] = ['zen.spamhaus.org'];
export const DEFAULT_DNSWLS: readonly string[] = ['list.dnswl.org'];

/** What weighted greylisting is set to do: the stage's settings and where DNS is asked. */
export interface WeightedConfig {
  settings: WeightedSettings;
  /** --resolver, in order (HOST:PORT); empty: the system's. */
  resolvers: string[];
  /** --generic-rdns FILE, read when the stage starts. */
  genericFile?: string;
}

/** A threshold: a decimal number, as weights are (`2`, `1.5`, `-1`). */
function threshold(text: string, flag: string): number {
  const n = /^-?\d+(?:\.\d+)?$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isFinite(n) || Math.abs(n) > 1000) throw new PfgreyError('E_BAD_OPTION', `${flag} ${text}: expected a number such as 2 or 1.5 (at most 1000)`);
  return n;
}

/** This host's interface addresses, which a HELO address literal must not claim either. */
function interfaceAddresses(): string[] {
  return Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

/**
 * Reads the options; undefined without --weighted. `ourNames` are this host's names, which a
 * HELO must not claim; its interface addresses are added to them. Throws E_BAD_OPTION naming
 * the option for a bad value, and E_USAGE for a weighted option given without --weighted (it
 * would do nothing).
 */
export function weightedConfig(v: WeightedOptionValues, ourNames: readonly string[] = [os.hostname()]): WeightedConfig | undefined {
  if (!v.weighted) {
    const stray = Object.keys(WEIGHTED_OPTIONS).find((name) => name !== 'weighted' && v[name as keyof WeightedOptionValues] !== undefined);
    if (stray) throw new PfgreyError('E_USAGE', `--${stray} is an option of weighted greylisting: add --weighted`);
    return undefined;
  }
  const given = (v.dnsbl?.length ?? 0) + (v.dnswl?.length ?? 0) > 0;
  const lists: ListSpec[] = [
    ...(given ? v.dnswl ?? [] : DEFAULT_DNSWLS).map((s) => parseListSpec(s, 'dnswl')),
    ...(given ? v.dnsbl ?? [] : DEFAULT_DNSBLS).map((s) => parseListSpec(s, 'dnsbl')),
  ];
  const greylist = threshold(v['greylist-threshold'] ?? String(DEFAULTS.greylistThreshold), '--greylist-threshold');
  const trap = v['trap-threshold'] === undefined ? undefined : threshold(v['trap-threshold'], '--trap-threshold');
  if (trap !== undefined && trap <= greylist) {
    throw new PfgreyError('E_BAD_OPTION', `--trap-threshold ${v['trap-threshold']}: must be above --greylist-threshold (${greylist}), or every greylisted client would be trapped`);
  }
  return {
    settings: { threshold: greylist, trapThreshold: trap, lists, ourNames: [...new Set([...ourNames, ...interfaceAddresses()])], spf: !(v['no-spf'] ?? false) },
    resolvers: (v.resolver ?? []).map(parseResolver),
    genericFile: v['generic-rdns'],
  };
}

/** A running stage: what the core needs, and the DNS client to close at the end. */
export interface StartedWeighting {
  stage: WeightedStage;
  dns: DnsClient;
  core(verbose?: boolean): WeightedCore;
  close(): void;
}

/** Builds the stage: reads the pattern file (E_BAD_OPTION naming it when it is bad) and opens the DNS client. */
export async function startWeighting(cfg: WeightedConfig): Promise<StartedWeighting> {
  const genericPatterns = cfg.genericFile === undefined ? undefined : await loadGenericPatterns(cfg.genericFile);
  // mailauth's SPF code takes a moment to load: now, not inside the first decision's budget.
  if (cfg.settings.spf) loadSpf();
  const dns = new DnsClient({ servers: cfg.resolvers });
  const settings = { ...cfg.settings, genericPatterns };
  const stage = new WeightedStage({ dns, settings });
  return {
    stage,
    dns,
    core: (verbose = false) => ({ stage, threshold: settings.threshold, trapThreshold: settings.trapThreshold, verbose }),
    close: () => dns.close(),
  };
}
