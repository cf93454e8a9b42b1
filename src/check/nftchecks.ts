// `pfgrey check`'s findings about an nftables ruleset (loaded, or a file loaded in a scratch
// network namespace) and about the file a reload loads, as pure functions of what was read.
// Same format and exit status as the pf findings (checks.ts).
//
// The ruleset is judged by walking a new TCP connection to port 25 through it (nftrules.ts)
// for a host in no set (it must reach the tarpit at -l:-p) and a host in pfgrey's whitelist set
// (it must not), then the redirected connection through the input hook (it must be accepted),
// and, when pfgrey listens on an address outside hosts can reach, a direct connection to -p
// (it should be dropped, as pf/linux/pfgrey.nft does).

import net from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { didYouMean, type CheckOptions, type Finding } from './checks.js';
import type { NftConfEvent, NftConfScan } from './nftconf.js';
import { setKey, walkHook, type NatTarget, type NftChain, type NftRule, type NftRuleset, type Packet } from './nftrules.js';

export type NftSource =
  | { kind: 'loaded'; ruleset: NftRuleset }
  | { kind: 'file'; file: string; ruleset: NftRuleset };

const SMTP = 25;
const SHIPPED = 'pf/linux/pfgrey.nft';

function tableOf(opts: CheckOptions): { family: string; name: string } {
  const [family, name] = tableSpec(opts).split(' ') as [string, string];
  return { family, name };
}

function tableSpec(opts: CheckOptions): string {
  return opts.nftTable ?? DEFAULTS.nftTable;
}

function isWildcard(addr: string): boolean {
  return addr === '0.0.0.0' || addr === '::';
}

function isLoopback(addr: string): boolean {
  return addr === '::1' || /^127\./.test(addr);
}

export function checkNftRules(src: NftSource, opts: CheckOptions, conf?: NftConfAnalysis): Finding[] {
  const ctx = new NftContext(src, opts);
  const table = ctx.tableFinding(conf);
  if (table) return [table];
  const blackOnly = ctx.blacklistOnlyFindings();
  if (blackOnly) return [...blackOnly, ...ctx.exposureFindings()];
  return [...ctx.setFindings(), ...ctx.flowFindings(), ...ctx.exposureFindings()];
}

class NftContext {
  readonly rs: NftRuleset;
  readonly t: { family: string; name: string };
  readonly family: 4 | 6;
  /** pfgrey's set for senders of the tarpit's family, `FAMILY TABLE SET`. */
  readonly white: string;
  readonly whiteName: string;
  private whiteMissing = false;

  constructor(readonly src: NftSource, readonly opts: CheckOptions) {
    this.rs = src.ruleset;
    this.t = tableOf(opts);
    this.family = net.isIP(opts.listen) === 6 ? 6 : 4;
    this.whiteName = this.family === 4 ? opts.table : `${opts.table}6`;
    this.white = setKey(this.t.family, this.t.name, this.whiteName);
  }

  get source(): string {
    return this.src.kind === 'file' ? this.src.file : 'nft list ruleset';
  }

  where(r: NftRule): string {
    const at = `chain ${r.family} ${r.table} ${r.chain}, rule ${r.text !== undefined ? `"${r.text}"` : `handle ${r.handle}`}`;
    return this.src.kind === 'file' ? `${this.src.file}, ${at}` : at;
  }

  whereChain(c: NftChain): string {
    const at = `chain ${c.family} ${c.table} ${c.name} (policy ${c.policy ?? 'accept'})`;
    return this.src.kind === 'file' ? `${this.src.file}, ${at}` : at;
  }

  tableFinding(conf: NftConfAnalysis | undefined): Finding | undefined {
    if (this.rs.tables.some((x) => x.family === this.t.family && x.name === this.t.name)) return undefined;
    const spec = tableSpec(this.opts);
    const others = this.rs.tables.filter((x) => this.rs.sets.some((s) => s.family === x.family && s.table === x.name && s.name === this.opts.table));
    const hint = others.length > 0 ? `; table ${others[0]!.family} ${others[0]!.name} has a set ${this.opts.table}: run pfgrey with --nft-table '${others[0]!.family} ${others[0]!.name}'`
      : `; load it: nft -f ${SHIPPED}`;
    if (this.src.kind === 'file') {
      const removed = conf?.removedAt ? ` (${describeWipe(conf.removedAt)} at ${conf.removedAt.file}:${conf.removedAt.line} deletes it after it is declared)` : '';
      return { severity: 'error', where: this.src.file, text: `loading it leaves no table ${spec}${removed}, so pfgrey has no sets to fill and nothing is greylisted${removed ? '; move the flush before the table, or include pfgrey\'s file after it' : hint}` };
    }
    return { severity: 'error', where: this.source, text: `table ${spec} is not loaded, so pfgrey has no sets to fill and nothing is greylisted${hint}` };
  }

  setFindings(): Finding[] {
    const { table } = this.opts;
    const spec = tableSpec(this.opts);
    const sets = this.rs.sets.filter((s) => s.family === this.t.family && s.table === this.t.name);
    const find = (name: string) => sets.find((s) => s.name === name);
    const out: Finding[] = [];
    const v4 = find(table);
    const v6 = find(`${table}6`);
    const problem = (name: string, want: string, s: typeof v4): string | undefined => {
      if (s === undefined) {
        const guess = didYouMean(name, sets.filter((x) => x.type === want).map((x) => x.name));
        const flag = want === 'ipv4_addr' && guess !== undefined ? `; did you mean ${guess}? then run pfgrey with --table ${guess}` : '';
        return `table ${spec} has no set ${name}, so pfgrey cannot fill it${flag || `; declare it: set ${name} { type ${want}; } (see ${SHIPPED})`}`;
      }
      if (s.type !== want) return `set ${name} in table ${spec} holds ${s.type}, and pfgrey puts ${want} in it; declare it as set ${name} { type ${want}; }`;
      if (s.flags.includes('constant')) return `set ${name} in table ${spec} is constant, so pfgrey cannot change it; remove flags constant`;
      return undefined;
    };
    const p4 = problem(table, 'ipv4_addr', v4);
    if (p4 !== undefined) out.push({ severity: 'error', where: this.source, text: p4 });
    if (v6 === undefined && p4 === undefined) {
      out.push({ severity: 'warning', where: this.source, text: `table ${spec} has no set ${table}6, so pfgrey leaves whitelisted IPv6 hosts out and says so at every push; declare it: set ${table}6 { type ipv6_addr; }` });
    } else if (v6 !== undefined) {
      const p6 = problem(`${table}6`, 'ipv6_addr', v6);
      if (p6 !== undefined) out.push({ severity: 'error', where: this.source, text: p6 });
    }
    if (out.length === 0) {
      out.push({ severity: 'ok', where: this.source, text: `table ${spec} has the sets ${table} (ipv4_addr) and ${table}6 (ipv6_addr)` });
    }
    this.whiteMissing = this.family === 4 ? p4 !== undefined : v6 === undefined || v6.type !== 'ipv6_addr';
    return out;
  }

  packet(sourceSets: string[], extra: Partial<Packet> = {}): Packet {
    return { family: this.family, dport: SMTP, loopback: false, sourceSets: new Set(sourceSets), ...extra };
  }

  /** Why `target` is not the tarpit, or undefined when it is. */
  targetProblem(target: NatTarget): string | undefined {
    const { listen, port } = this.opts;
    const to = target.port ?? SMTP;
    const portOk = to === port;
    const a = target.address;
    const ip = this.family === 4 ? 'ip' : 'ip6';
    const wild = isWildcard(listen);
    const dialled = `${ip} daddr:${port}`;
    if ('unknown' in a) return undefined;
    if ('literal' in a) {
      const addrOk = a.literal === listen || wild;
      if (addrOk && portOk && isLoopback(a.literal)) {
        return `smtp is sent to ${a.literal} port ${to}, and Linux drops a connection from outside sent to a loopback address, so it never reaches pfgrey; send it to port ${port} of the address it was sent to: dnat ${ip} to ${dialled}, and run pfgrey with -l ${this.family === 4 ? '0.0.0.0' : '::'} (as ${SHIPPED} does)`;
      }
      if (addrOk && portOk) return undefined;
      const listening = [!addrOk ? `${listen} (-l)` : '', !portOk ? `port ${port} (-p)` : ''].filter((s) => s !== '').join(', ');
      const flags = [!addrOk ? `-l ${a.literal}` : '', !portOk ? `-p ${to}` : ''].filter((s) => s !== '').join(' ');
      return `smtp is sent to ${a.literal} port ${to}, but pfgrey listens on ${listening}, so connections never reach it; send them to ${wild ? dialled : `${listen}:${port}`}, or run pfgrey with ${flags}`;
    }
    const what = 'daddr' in a ? 'the address it was sent to' : 'the address of the interface it came in on';
    const addrOk = wild || ('interface' in a && !isLoopback(listen));
    if (addrOk && portOk) return undefined;
    const sent = `smtp is sent to port ${to} of ${what}`;
    if (!addrOk) {
      return `${sent}, but pfgrey listens on ${listen} only, so connections never reach it; run pfgrey with -l ${this.family === 4 ? '0.0.0.0' : '::'}${portOk ? '' : ` -p ${to}`} (as ${SHIPPED} says)`;
    }
    return `${sent}, but pfgrey listens on port ${port} (-p), so connections never reach it; ${target.kind} to port ${port}, or run pfgrey with -p ${to}`;
  }

  tarpitText(target: NatTarget): string {
    const a = target.address;
    const port = target.port ?? SMTP;
    if ('literal' in a) return `${a.literal} port ${port}`;
    if ('unknown' in a) return `port ${port} of an address check cannot work out; make sure it is ${this.opts.listen}`;
    return `port ${port} of ${'daddr' in a ? 'the address it was sent to' : 'the incoming interface\'s address'}`;
  }

  /**
   * A ruleset that sends only hosts in the blacklist set (`spamd`) to the tarpit, as
   * pf/linux/pfgrey-blacklist.nft does for `pfgrey run -b`: its findings, or undefined when the
   * ruleset greylists (hosts in no set reach the tarpit too) or sends nobody there.
   */
  blacklistOnlyFindings(): Finding[] | undefined {
    const { blackTable } = this.opts;
    const none = walkHook(this.rs, 'prerouting', this.packet([]));
    if (none.nat || none.verdict.kind === 'drop') return undefined;
    const listed = walkHook(this.rs, 'prerouting', this.packet([setKey(this.t.family, this.t.name, blackTable)]));
    if (!listed.nat) return undefined;
    const spec = tableSpec(this.opts);
    const out: Finding[] = [];
    const set = this.rs.sets.find((x) => x.family === this.t.family && x.table === this.t.name && x.name === blackTable);
    const want = this.family === 4 ? 'ipv4_addr' : 'ipv6_addr';
    if (set && set.type !== want) {
      out.push({ severity: 'error', where: this.source, text: `set ${blackTable} in table ${spec} holds ${set.type}, and pfgrey setup -b puts ${want} in it; declare it as set ${blackTable} { type ${want}; flags interval; }` });
    } else if (set && !set.flags.includes('interval')) {
      out.push({ severity: 'error', where: this.source, text: `set ${blackTable} in table ${spec} has no flags interval, and the blacklists are address blocks; declare it as set ${blackTable} { type ${want}; flags interval; } (see pf/linux/pfgrey-blacklist.nft)` });
    } else if (set && set.flags.includes('constant')) {
      out.push({ severity: 'error', where: this.source, text: `set ${blackTable} in table ${spec} is constant, so pfgrey setup -b cannot fill it; remove flags constant` });
    }
    const problem = this.targetProblem(listed.nat.target);
    if (problem !== undefined) {
      out.push({ severity: 'error', where: this.where(listed.nat.rule), text: problem });
      return out;
    }
    out.push({
      severity: 'ok', where: this.where(listed.nat.rule),
      text: `only hosts in @${blackTable} go to the tarpit, ${this.tarpitText(listed.nat.target)} (${listed.nat.target.kind}): this is blacklist-only, for pfgrey run -b with pfgrey setup -b (nothing is greylisted)`,
    });
    out.push(...this.redirectedInputFindings());
    return out;
  }

  /** The redirected connection through the input hook: it must be accepted. */
  redirectedInputFindings(): Finding[] {
    const { port } = this.opts;
    const redirected = walkHook(this.rs, 'input', this.packet([], { dport: port, dnatFrom: SMTP }));
    if (redirected.verdict.kind !== 'drop') return [];
    const v = redirected.verdict;
    return [{
      severity: 'error', where: v.rule ? this.where(v.rule) : this.whereChain(v.chain),
      text: `smtp redirected to the tarpit (port ${port}) is dropped here, so connections never reach pfgrey; accept it ${v.rule ? 'before this rule' : 'in this chain'}: tcp dport ${port} ct status dnat ct original proto-dst 25 accept`,
    }];
  }

  flowFindings(): Finding[] {
    const { listen, port } = this.opts;
    const ip = this.family === 4 ? 'ip' : 'ip6';
    const out: Finding[] = [];
    const none = walkHook(this.rs, 'prerouting', this.packet([]));
    const wild = this.family === 4 ? '0.0.0.0' : '::';
    const addHint = isWildcard(listen) || isLoopback(listen)
      ? `tcp dport 25 fib daddr type local dnat ${ip} to ${ip} daddr:${port}${isWildcard(listen) ? '' : `, and run pfgrey with -l ${wild}`}`
      : `tcp dport 25 dnat ${ip} to ${this.family === 4 ? listen : `[${listen}]`}:${port}`;
    if (!none.nat) {
      if (none.verdict.kind === 'drop') {
        const v = none.verdict;
        return [{ severity: 'error', where: v.rule ? this.where(v.rule) : this.whereChain(v.chain), text: `smtp from every host is dropped here before any rule sends it to the tarpit, so nothing is greylisted and no mail arrives; accept or redirect tcp port 25 first` }];
      }
      return [{
        severity: 'error', where: this.source,
        text: `no rule sends smtp (tcp port 25) to the tarpit (${isWildcard(listen) ? '' : `${listen} `}port ${port}), so no host is greylisted; add to the prerouting chain of table ${tableSpec(this.opts)}, after tcp dport 25 ${ip} saddr @${this.whiteName} return: ${addHint} (as ${SHIPPED} does)`,
      }];
    }
    const nat = none.nat;
    const problem = this.targetProblem(nat.target);
    if (problem !== undefined) return [{ severity: 'error', where: this.where(nat.rule), text: problem }];
    out.push({ severity: 'ok', where: this.where(nat.rule), text: `smtp goes to the tarpit, ${this.tarpitText(nat.target)} (${nat.target.kind})` });

    out.push(...this.redirectedInputFindings());

    if (this.whiteMissing) return out;
    const white = walkHook(this.rs, 'prerouting', this.packet([this.white]));
    const wset = `@${this.whiteName}`;
    if (white.verdict.kind === 'drop') {
      const v = white.verdict;
      out.push({ severity: 'error', where: v.rule ? this.where(v.rule) : this.whereChain(v.chain), text: `smtp from ${wset} is dropped here, so whitelisted hosts never reach the MTA; accept it, or return before this rule: tcp dport 25 ${ip} saddr ${wset} return` });
      return out;
    }
    if (white.nat && (white.nat.rule === nat.rule || this.targetProblem(white.nat.target) === undefined)) {
      out.push({ severity: 'error', where: this.where(white.nat.rule), text: this.noExemptionText(white.nat.rule) });
      return out;
    }
    const mta = walkHook(this.rs, 'input', this.packet([this.white], white.nat ? { dport: white.nat.target.port ?? SMTP, dnatFrom: SMTP } : {}));
    if (mta.verdict.kind === 'drop') {
      const v = mta.verdict;
      out.push({ severity: 'error', where: v.rule ? this.where(v.rule) : this.whereChain(v.chain), text: `smtp from ${wset} is dropped here, so whitelisted hosts never reach the MTA; accept it ${v.rule ? 'before this rule' : 'in this chain'}: tcp dport 25 accept` });
      return out;
    }
    const exempt = white.passedBy.find((r) => this.namesWhite(r)) ?? white.passedBy[0];
    out.push({
      severity: 'ok', where: exempt ? this.where(exempt) : this.source,
      text: `smtp from ${wset} reaches the MTA${white.nat ? ` (${white.nat.target.kind} to ${this.tarpitText(white.nat.target)})` : ''}`,
    });
    return out;
  }

  /** The rule tests the source against pfgrey's whitelist set. */
  namesWhite(r: NftRule): boolean {
    return r.table === this.t.name && r.family === this.t.family && JSON.stringify(r.expr).includes(JSON.stringify(`@${this.whiteName}`));
  }

  /** Why whitelisted hosts are still sent to the tarpit by `r`, and what to change. */
  noExemptionText(r: NftRule): string {
    const ip = this.family === 4 ? 'ip' : 'ip6';
    const wset = `@${this.whiteName}`;
    const head = `no rule exempts ${wset} from this redirect, so whitelisted hosts are tarpitted again and their mail never reaches the MTA`;
    if (r.table !== this.t.name || r.family !== this.t.family) {
      return `${head}: this rule is in table ${r.family} ${r.table}, where ${wset} is not pfgrey's set (sets belong to their table); move the redirect into table ${tableSpec(this.opts)}, after: tcp dport 25 ${ip} saddr ${wset} return`;
    }
    // A rule exempting a set pfgrey does not fill: a near name, or the name in another table.
    // Only a rule that lets the packet by (return, accept) exempts anything: pfgrey.nft's log
    // rules name the sets too. pfgrey's own sets (NAME and NAME6) are not "near names".
    let note = '';
    for (const c of this.rs.chains) {
      for (const x of c.rules) {
        const text = JSON.stringify(x.expr);
        if (!/"(?:return|accept)":/.test(text)) continue;
        for (const m of text.matchAll(/"@([^"]+)"/g)) {
          const name = m[1]!;
          const ours = x.table === this.t.name && x.family === this.t.family;
          if (ours && (name === this.whiteName || name === `${this.whiteName}6`)) continue;
          if (name === this.whiteName || didYouMean(name, [this.whiteName]) !== undefined) {
            note ||= ` (${this.where(x)} exempts @${name}${ours ? '' : ` of table ${x.family} ${x.table}`} instead, which pfgrey does not fill)`;
          }
        }
      }
    }
    return `${head}${note}; add before it: tcp dport 25 ${ip} saddr ${wset} return`;
  }

  /** pfgrey listening where outside hosts reach it: is -p open to them directly? */
  exposureFindings(): Finding[] {
    const { listen, port } = this.opts;
    if (isLoopback(listen)) return [];
    const pre = walkHook(this.rs, 'prerouting', this.packet([], { dport: port }));
    const verdict = pre.verdict.kind === 'drop' ? pre.verdict : walkHook(this.rs, 'input', this.packet([], { dport: port })).verdict;
    if (verdict.kind === 'drop') {
      return [{ severity: 'ok', where: verdict.rule ? this.where(verdict.rule) : this.whereChain(verdict.chain), text: `connections to port ${port} that were not redirected from port 25 are dropped` }];
    }
    return [{
      severity: 'warning', where: this.source,
      text: `port ${port} is open to every host: pfgrey listens on ${listen} and no input rule drops connections to it that were not redirected from port 25, so any host can reach the tarpit directly; add to an input chain: tcp dport ${port} ct status dnat ct original proto-dst 25 accept, then: tcp dport ${port} drop (as ${SHIPPED} does)`,
    }];
  }
}

// ---------------------------------------------------------------------------------------------
// The file a reload loads

export interface NftConfAnalysis {
  /** The flush or delete that removes pfgrey's table and is not followed by its declaration. */
  removedAt?: NftConfEvent;
  /** The flush or delete that empties pfgrey's sets before the table is declared again. */
  emptiedAt?: NftConfEvent;
  /** The file declares pfgrey's table (last, after any flush). */
  declared: boolean;
  /** The other tables the file declares, for the fix. */
  others: Array<{ family: string; name: string }>;
  unreadable: NftConfEvent[];
}

function describeWipe(e: NftConfEvent): string {
  if (e.kind === 'flush-ruleset') return e.family ? `flush ruleset ${e.family}` : 'flush ruleset';
  if (e.kind === 'delete-table' || e.kind === 'flush-table') return `${e.kind === 'delete-table' ? 'delete' : 'flush'} table ${e.family} ${e.name}`;
  return '';
}

export function analyseNftConf(scan: NftConfScan, opts: CheckOptions): NftConfAnalysis {
  const t = tableOf(opts);
  let wipe: NftConfEvent | undefined;
  let emptied: NftConfEvent | undefined;
  let declared = false;
  const others = new Map<string, { family: string; name: string }>();
  for (const e of scan.events) {
    if (e.kind === 'flush-ruleset' && (e.family === undefined || e.family === t.family)) {
      wipe = e;
      declared = false;
    } else if ((e.kind === 'delete-table' || e.kind === 'flush-table') && e.family === t.family && e.name === t.name) {
      wipe = e;
      declared = false;
    } else if (e.kind === 'table') {
      if (e.family === t.family && e.name === t.name) {
        if (!declared && wipe) emptied = wipe;
        declared = true;
      } else {
        others.set(`${e.family} ${e.name}`, { family: e.family, name: e.name });
      }
    }
  }
  return {
    declared,
    ...(wipe && !declared ? { removedAt: wipe } : {}),
    ...(declared && emptied ? { emptiedAt: emptied } : {}),
    others: [...others.values()],
    unreadable: scan.events.filter((e) => e.kind === 'unreadable'),
  };
}

/**
 * What a reload of `file` does to pfgrey's table: empties its sets (a warning: whitelisted hosts
 * are tarpitted until pfgrey's next full push), removes it for good or never loads it (loaded
 * rules only; for a checked file, the ruleset's missing table says it).
 */
export function checkNftConf(file: string, a: NftConfAnalysis, opts: CheckOptions, kind: 'file' | 'boot'): Finding[] {
  const spec = tableSpec(opts);
  const out: Finding[] = [];
  const reload = `on every reload (nft -f ${file}${file === '/etc/nftables.conf' ? ', systemctl reload nftables' : ''})`;
  // Declaring a table before deleting it makes the delete work on the first load too.
  const own = a.others.length > 0
    ? `delete only this file's own tables instead: ${a.others.map((o) => `table ${o.family} ${o.name}; delete table ${o.family} ${o.name}`).join('; ')}`
    : 'remove it';
  if (kind === 'boot') {
    for (const e of a.unreadable) {
      if (e.kind === 'unreadable') out.push({ severity: 'warning', where: `${e.file}:${e.line}`, text: `include "${e.name}" reads nothing (${e.why}), so a reload fails or leaves that part out; fix the path` });
    }
  }
  if (a.emptiedAt) {
    const e = a.emptiedAt;
    out.push({
      severity: 'warning', where: `${e.file}:${e.line}`,
      text: `${describeWipe(e)} deletes table ${spec} with its sets ${reload}, so ${opts.table} comes back empty and whitelisted hosts are tarpitted again until pfgrey's next full push; ${own} (loading ${SHIPPED} again keeps the sets' elements)`,
    });
  } else if (a.removedAt && kind === 'boot') {
    const e = a.removedAt;
    out.push({
      severity: 'warning', where: `${e.file}:${e.line}`,
      text: `${describeWipe(e)} deletes table ${spec} ${reload}, and nothing after it loads it again, so nothing is greylisted and pfgrey cannot fill its sets until it is loaded; ${own}, and include pfgrey's file at the end: include "/etc/nftables.d/pfgrey.nft"`,
    });
  } else if (!a.declared && kind === 'boot') {
    out.push({
      severity: 'warning', where: file,
      text: `it does not load table ${spec}, so after a reboot nothing is greylisted and pfgrey cannot fill its sets until the table is loaded; add at its end: include "/etc/nftables.d/pfgrey.nft"`,
    });
  } else if (a.declared) {
    out.push({ severity: 'ok', where: file, text: `a reload loads table ${spec} and keeps the elements of its sets` });
  }
  return out;
}
