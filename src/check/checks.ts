// `pfgrey check`'s findings as pure functions of what was read: the pf rules (a pf.conf file or
// the loaded ruleset), facts about the system, and the options pfgrey run will use. Each
// finding is one line: `ok:`, `warning:` or `error:`, where (file:line, or the loaded rule as
// pfctl prints it), what, and how to fix it. Only errors make the exit status 1.
//
// How the rules are judged: pfgrey check follows a TCP connection to port 25 through the rules
// as pf would, for three senders: a host in no table (it must reach the tarpit), a host in the
// whitelist table (it must not), and a host in <spamd> (for blacklist-only set-ups). Translation
// rules (rdr, no rdr) take the first match; filter rules the last, or the first `quick` one;
// a `match … rdr-to` sticks unless the deciding pass rule redirects itself. Host elements that
// are not tables (addresses, self, interfaces) are taken not to hold the sender, and to hold
// the destination, since the destination is this mail server; only rules on the interfaces of
// the tarpit redirect (or on any, or egress) count, and never loopback ones.

import path from 'node:path';
import { addUserCommand } from '../config/accounts.js';
import { DEFAULTS } from '../config/defaults.js';
import { FIND_LISTENER } from '../listen-error.js';
import type { FileMode, PortState, SystemFacts } from './facts.js';
import type { AddressItem, PfctlTable, PfProblem, PfRule, PfRuleset, PortItem, Redirect } from './pfconf.js';

export type Severity = 'ok' | 'warning' | 'error';

export interface Finding {
  severity: Severity;
  /** `pf.conf:12`, `rule "pass in …"`, `/dev/pf`, …; absent for findings about nothing in particular. */
  where?: string;
  text: string;
}

export type CheckOs = 'openbsd' | 'freebsd' | 'linux';

export interface CheckOptions {
  /** The whitelist table pfgrey run fills (--table). */
  table: string;
  /** The table `pfgrey setup -b` fills. */
  blackTable: string;
  /** The tarpit's address and port (-l, -p) and the config port (--config-port). */
  listen: string;
  port: number;
  configPort: number;
  user: string;
  dbPath: string;
  os: CheckOs;
  pfctl: string;
  pfDevice: string;
  /** The firewall pfgrey run fills: pf (pfctl, the pf device; the default) or nftables. */
  firewall?: 'pf' | 'nft';
  /** nft and the `FAMILY NAME` of the table holding the sets (--nft, --nft-table). */
  nft?: string;
  nftTable?: string;
}

export function formatFinding(f: Finding): string {
  return `${f.severity}: ${f.where === undefined ? '' : `${f.where}: `}${f.text}`;
}

/** 1 when any finding is an error (something would keep mail from flowing), else 0. */
export function exitStatus(findings: readonly Finding[]): 0 | 1 {
  return findings.some((f) => f.severity === 'error') ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// pf rules

/** Where the rules came from, and what is known about their tables. */
export type RuleSource =
  | { kind: 'file'; file: string; ruleset: PfRuleset }
  | {
    kind: 'loaded';
    rules: PfRule[];
    /** `pfctl -vsT`. */
    tables: PfctlTable[];
    /** Addresses in each table `pfctl -t NAME -T show` was asked about (see tablesToShow). */
    counts: ReadonlyMap<string, number>;
    /** `pfctl -si` said pf is disabled. */
    disabled?: boolean;
  };

/** Port names of /etc/services (tcp); `smtp` is known without it. */
export type Services = ReadonlyMap<string, number>;

const SMTP = 25;

export function checkRules(src: RuleSource, opts: CheckOptions, services: Services): Finding[] {
  const ctx = new RuleContext(src, opts, services);
  const findings: Finding[] = [];
  if (src.kind === 'loaded' && src.disabled) {
    findings.push({
      severity: 'error', where: 'pfctl -si',
      text: `pf is disabled, so no rule applies and nothing reaches the tarpit; enable it: pfctl -e (and ${
        opts.os === 'freebsd' ? 'sysrc pf_enable=YES' : 'rcctl enable pf'})`,
    });
  }
  if (src.kind === 'file') findings.push(...problemFindings(src.file, src.ruleset.problems));
  findings.push(...ctx.tableFindings(), ...ctx.unfilledFindings(), ...ctx.flowFindings());
  return findings;
}

/**
 * The tables whose contents the loaded-rules check needs: those that smtp rules name, that
 * pfgrey does not fill, and that pf has (an absent one needs no look).
 */
export function tablesToShow(rules: readonly PfRule[], tables: readonly PfctlTable[], opts: CheckOptions): string[] {
  const present = new Set(tables.map((t) => t.name));
  const names = new Set<string>();
  for (const r of rules) {
    if (!mentionsSmtp(r)) continue;
    for (const h of r.from.hosts) {
      if (h.table !== undefined && !isOurs(h.table, opts) && present.has(h.table)) names.add(h.table);
    }
  }
  return [...names];
}

function problemFindings(file: string, problems: readonly PfProblem[]): Finding[] {
  return problems.map((p): Finding => p.kind === 'include'
    ? { severity: 'warning', where: `${file}:${p.line}`, text: `pfgrey check does not follow include "${p.name}"; check that file too, or check the loaded rules (without --pf-conf)` }
    : { severity: 'error', where: `${file}:${p.line}`, text: `macro $${p.name} is not defined, so pfctl refuses this file; define it (${p.name} = "…") before this line` });
}

function isOurs(table: string, opts: CheckOptions): boolean {
  return table === opts.table || table === opts.blackTable;
}

/** The rule could see an inbound TCP connection to port 25 and names that port (or redirects). */
function mentionsSmtp(r: PfRule): boolean {
  if (r.direction === 'out' || !protoTcp(r)) return false;
  if (r.redirect !== undefined) return true;
  return r.to.ports.length > 0 && portsMatch(r.to.ports, SMTP, new Map());
}

function protoTcp(r: PfRule): boolean {
  return r.protos.length === 0 || r.protos.some((p) => p === 'tcp' || p === '6');
}

function resolvePort(name: string, services: Services): number | undefined {
  if (/^\d+$/.test(name)) return Number(name);
  if (name === 'smtp') return services.get(name) ?? SMTP;
  return services.get(name);
}

function portsMatch(items: readonly PortItem[], port: number, services: Services): boolean {
  if (items.length === 0) return true;
  return items.some((p) => {
    const a = resolvePort(p.a, services);
    const b = p.b === undefined ? undefined : resolvePort(p.b, services);
    if (a === undefined) return false;
    switch (p.op) {
      case '=': return port === a;
      case '!=': return port !== a;
      case '<': return port < a;
      case '<=': return port <= a;
      case '>': return port > a;
      case '>=': return port >= a;
      case ':': return b !== undefined && port >= a && port <= b;
      case '<>': return b !== undefined && (port < a || port > b);
      case '><': return b !== undefined && port > a && port < b;
    }
    return false;
  });
}

/** The sender is in exactly the tables of `member`; everything else does not hold it. */
function sourceMatches(hosts: readonly AddressItem[], member: ReadonlySet<string>): boolean {
  if (hosts.length === 0) return true;
  return hosts.some((h) => {
    const inside = h.any === true || (h.table !== undefined && member.has(h.table));
    return h.negated ? !inside : inside;
  });
}

/** The destination is this mail server: named addresses and tables hold it, `! self` does not. */
function destinationMatches(hosts: readonly AddressItem[]): boolean {
  if (hosts.length === 0) return true;
  return hosts.some((h) => !h.negated || (h.any !== true && h.text !== 'self'));
}

function loopback(name: string): boolean {
  return /^lo\d*$/.test(name);
}

type Outcome =
  | { kind: 'redirect'; rule: PfRule; redirect: Redirect }
  | { kind: 'pass'; rule?: PfRule; exempt?: PfRule }
  | { kind: 'block'; rule: PfRule };

type Target = { ok: true } | { ok: false; address: string; port: string; unknownName?: string };

class RuleContext {
  readonly rules: PfRule[];
  /** Interfaces the tarpit redirect listens on; undefined: any. */
  private readonly mailIfs: Set<string> | undefined;

  constructor(readonly src: RuleSource, readonly opts: CheckOptions, readonly services: Services) {
    this.rules = src.kind === 'file' ? src.ruleset.rules : src.rules;
    const tarpit = this.rules.filter((r) => mentionsSmtp(r) && r.redirect && this.target(r.redirect).ok);
    this.mailIfs = tarpit.length === 0 || tarpit.some((r) => r.interfaces.length === 0)
      ? undefined
      : new Set(tarpit.flatMap((r) => r.interfaces.filter((i) => !i.startsWith('!'))));
  }

  where(r: PfRule): string {
    return this.src.kind === 'file' ? `${this.src.file}:${r.line}` : `rule "${r.text}"`;
  }

  /** How another finding names a rule: `line 12`, or the rule itself. */
  ref(r: PfRule): string {
    return this.src.kind === 'file' ? `line ${r.line}` : `"${r.text}"`;
  }

  /** The whole rule set, for findings about no rule in particular. */
  get source(): string {
    return this.src.kind === 'file' ? this.src.file : 'pfctl -sn -sr';
  }

  target(r: Redirect): Target {
    const portText = r.port === undefined ? String(SMTP) : r.port.split(':')[0]!;
    const port = resolvePort(portText, this.services);
    const anyAddress = this.opts.listen === '0.0.0.0';
    if ((anyAddress || r.address === this.opts.listen) && port === this.opts.port) return { ok: true };
    return { ok: false, address: r.address, port: portText, ...(port === undefined ? { unknownName: portText } : {}) };
  }

  private interfaceMatches(r: PfRule): boolean {
    if (r.interfaces.length === 0) return true;
    return r.interfaces.some((spec) => {
      const negated = spec.startsWith('!');
      const name = negated ? spec.slice(1) : spec;
      const hit = !loopback(name) && (this.mailIfs === undefined || this.mailIfs.has(name)
        || name === 'egress' || this.mailIfs.has('egress'));
      return negated ? !hit : hit;
    });
  }

  /** The rule applies to an inbound TCP connection to port 25 from a sender in `member`. */
  private applies(r: PfRule, member: ReadonlySet<string>): boolean {
    return r.direction !== 'out' && r.family !== 'inet6' && protoTcp(r) && this.interfaceMatches(r)
      && portsMatch(r.to.ports, SMTP, this.services) && destinationMatches(r.to.hosts)
      && sourceMatches(r.from.hosts, member);
  }

  simulate(member: ReadonlySet<string>): Outcome {
    let exempt: PfRule | undefined;
    for (const r of this.rules) {
      if ((r.action !== 'rdr' && r.action !== 'no-rdr') || !this.applies(r, member)) continue;
      if (r.action === 'rdr' && r.redirect) return { kind: 'redirect', rule: r, redirect: r.redirect };
      exempt = r;
      break;
    }
    let decision: PfRule | undefined;
    let matched: PfRule | undefined;
    for (const r of this.rules) {
      if (r.action !== 'pass' && r.action !== 'block' && r.action !== 'match') continue;
      if (!this.applies(r, member)) continue;
      if (r.action === 'match') {
        if (r.redirect) matched = r;
        continue;
      }
      decision = r;
      if (r.quick) break;
    }
    if (decision?.action === 'block') return { kind: 'block', rule: decision };
    const redirecting = decision?.redirect ? decision : matched;
    if (redirecting?.redirect) return { kind: 'redirect', rule: redirecting, redirect: redirecting.redirect };
    return { kind: 'pass', ...(decision ? { rule: decision } : {}), ...(exempt ? { exempt } : {}) };
  }

  /** Whether anything fills the table; for findings, the reason it is not. */
  private unfilledReason(name: string): string | undefined {
    if (this.src.kind === 'file') {
      const t = this.src.ruleset.tables.get(name);
      if (!t) return `${this.src.file} does not declare it`;
      if (t.files.length > 0 || t.hasAddresses) return undefined;
      return `${this.src.file} declares it without file "…" or { addresses }`;
    }
    if (!this.src.tables.some((t) => t.name === name)) return 'pf has no such table (pfctl -vsT)';
    return (this.src.counts.get(name) ?? 0) > 0 ? undefined : `it holds no address (pfctl -t ${name} -T show)`;
  }

  unfilledFindings(): Finding[] {
    const out: Finding[] = [];
    const { table, blackTable } = this.opts;
    for (const r of this.rules) {
      if (!mentionsSmtp(r)) continue;
      const seen = new Set<string>();
      for (const h of r.from.hosts) {
        const name = h.table;
        if (name === undefined || isOurs(name, this.opts) || seen.has(name)) continue;
        seen.add(name);
        const reason = this.unfilledReason(name);
        if (reason === undefined) continue;
        const guess = didYouMean(name, [table, blackTable]);
        if (guess !== undefined) {
          out.push({
            severity: 'error', where: this.where(r),
            text: `<${name}> is never filled: pfgrey fills <${table}> (and <${blackTable}> with pfgrey setup -b), and ${reason}; did you mean <${guess}>?`,
          });
        } else {
          out.push({
            severity: 'warning', where: this.where(r),
            text: `<${name}> is never filled: pfgrey fills only <${table}> and <${blackTable}>, and ${reason}; give it addresses: table <${name}> persist file "/etc/mail/${name}"`,
          });
        }
      }
    }
    return out;
  }

  private referenced(name: string): boolean {
    return this.rules.some((r) => [...r.from.hosts, ...r.to.hosts].some((h) => h.table === name));
  }

  tableFindings(): Finding[] {
    const out: Finding[] = [];
    for (const name of [this.opts.table, this.opts.blackTable]) {
      const white = name === this.opts.table;
      if (!white && !this.referenced(name)) continue;
      const filler = white ? 'pfgrey run' : 'pfgrey setup -b';
      const consequence = white ? 'whitelisted hosts never reach the MTA' : 'blacklisted hosts are never tarpitted';
      // Not declared in a file: pf creates it for the rules that name it, and pfctl -T fills it.
      const declared: { persist: boolean; const: boolean; flags?: string } | undefined = this.src.kind === 'file'
        ? this.src.ruleset.tables.get(name)
        : this.src.tables.find((t) => t.name === name);
      const where = this.src.kind === 'file' ? `${this.src.file}:${this.src.ruleset.tables.get(name)?.line}` : 'pfctl -vsT';
      if (!declared) {
        if (this.src.kind === 'loaded') {
          out.push({
            severity: 'warning', where,
            text: `table <${name}> does not exist yet: ${filler} creates it when it first fills it; if ${filler} has run, its messages say why pfctl failed`,
          });
        }
        continue;
      }
      const flags = declared.flags === undefined ? '' : ` (flags ${declared.flags})`;
      const fixIn = this.src.kind === 'file' ? '' : ' in pf.conf and reload it (pfctl -f /etc/pf.conf)';
      if (declared.const) {
        out.push({ severity: 'error', where, text: `table <${name}> is const${flags}, so ${filler} cannot change it and ${consequence}; remove const${fixIn}` });
      } else if (!declared.persist) {
        out.push({
          severity: 'warning', where,
          text: `table <${name}> is not persist${flags}: pf removes it, and what ${filler} put in it, when no loaded rule refers to it; declare it "table <${name}> persist"${fixIn}`,
        });
      } else {
        out.push({ severity: 'ok', where, text: `table <${name}> is persist${flags}` });
      }
    }
    return out;
  }

  private addRedirectHint(): string {
    const { listen, port } = this.opts;
    const addr = listen === '0.0.0.0' ? '127.0.0.1' : listen;
    return this.opts.os === 'freebsd'
      ? `rdr pass on $ext_if inet proto tcp from any to any port smtp -> ${addr} port ${port}`
      : `pass in on egress proto tcp to any port smtp divert-to ${addr} port ${port}`;
  }

  flowFindings(): Finding[] {
    const { table, blackTable, listen, port } = this.opts;
    const tarpit = `${listen} port ${port}`;
    const nobody = this.simulate(new Set());

    if (nobody.kind !== 'redirect') {
      const black = this.simulate(new Set([blackTable]));
      if (black.kind === 'redirect' && this.target(black.redirect).ok) {
        return [{
          severity: 'ok', where: this.where(black.rule),
          text: `only hosts in <${blackTable}> go to the tarpit ${tarpit}: this is blacklist-only, for pfgrey run -b (nothing is greylisted)`,
        }];
      }
      const tarpitRule = this.rules.find((r) => mentionsSmtp(r) && r.redirect && this.target(r.redirect).ok);
      if (tarpitRule === undefined) {
        const elsewhere = this.rules.find((r) => mentionsSmtp(r) && r.redirect);
        if (elsewhere?.redirect) return [this.wrongTarget(elsewhere, elsewhere.redirect)];
        return [{
          severity: 'error', where: this.source,
          text: `no rule sends smtp (tcp port 25) to the tarpit ${tarpit}, so no host is greylisted; add: ${this.addRedirectHint()}`,
        }];
      }
      const blame = nobody.kind === 'pass' ? nobody.exempt ?? nobody.rule : nobody.rule;
      if (blame) return [{ severity: 'error', where: this.where(blame), text: this.shadowText(blame, tarpitRule) }];
      return [{
        severity: 'error', where: this.where(tarpitRule),
        text: `this redirect does not apply to a host in no table, so nothing is greylisted; write from any`,
      }];
    }

    const out: Finding[] = [];
    if (!this.target(nobody.redirect).ok) out.push(this.wrongTarget(nobody.rule, nobody.redirect));
    else out.push({ severity: 'ok', where: this.where(nobody.rule), text: `smtp goes to the tarpit ${tarpit} (${nobody.redirect.kind})` });

    const white = this.simulate(new Set([table]));
    if (white.kind === 'block') {
      out.push({
        severity: 'error', where: this.where(white.rule),
        text: `this rule blocks smtp from <${table}>, so whitelisted hosts never reach the MTA; pass them after it: pass in proto tcp from <${table}> to any port smtp`,
      });
    } else if (white.kind === 'redirect' && (white.rule === nobody.rule || this.target(white.redirect).ok)) {
      out.push({ severity: 'error', where: this.where(white.rule), text: this.noExemptionText(white.rule) });
    } else {
      const how = white.kind === 'redirect' ? ` (${white.redirect.kind} ${white.redirect.address}${white.redirect.port === undefined ? '' : ` port ${white.redirect.port}`})` : '';
      const by = white.kind === 'pass' ? white.exempt ?? white.rule : white.rule;
      out.push({
        severity: 'ok', where: by ? this.where(by) : this.source,
        text: `smtp from <${table}> reaches the MTA${by ? how : ' (no rule redirects it)'}`,
      });
      if (white.kind === 'pass' && white.rule && white.rule.action === 'pass' && !white.rule.log) {
        out.push({
          severity: 'warning', where: this.where(white.rule),
          text: `this rule passes smtp from <${table}> without log, so pfgrey logd never sees it and a whitelisted host that keeps sending is still dropped from <${table}> when its entry expires; if you run pfgrey logd, write pass in log …`,
        });
      }
    }
    return out;
  }

  /** Why `blame`, which every host matches, keeps them all from the redirect `tarpitRule`. */
  private shadowText(blame: PfRule, tarpitRule: PfRule): string {
    const x = this.ref(tarpitRule);
    const limit = 'limit it to a table (from <nospamd>)';
    if (blame.action === 'no-rdr') {
      return `this no rdr rule exempts every host from the redirect at ${x}, so nothing reaches the tarpit; limit it to a table (from <${this.opts.table}>)`;
    }
    const verb = blame.action === 'block' ? 'blocks' : 'passes';
    if (this.rules.indexOf(blame) > this.rules.indexOf(tarpitRule)) {
      return `this rule ${verb} smtp from every host and comes after the redirect at ${x}, and the last matching rule wins, so nothing reaches the tarpit; move it before ${x} or ${limit}`;
    }
    return `this quick rule ${verb} smtp from every host before the redirect at ${x}, so nothing reaches the tarpit; remove quick or ${limit}`;
  }

  private wrongTarget(r: PfRule, redirect: Redirect): Finding {
    const t = this.target(redirect);
    if (t.ok) throw new Error('wrongTarget on the tarpit');
    const { listen, port } = this.opts;
    if (t.unknownName !== undefined) {
      return {
        severity: 'error', where: this.where(r),
        text: `smtp is sent to port "${t.unknownName}", which /etc/services does not name, so pfctl cannot load this rule; write port ${port}`,
      };
    }
    const badAddress = t.address !== listen && listen !== '0.0.0.0';
    const badPort = resolvePort(t.port, this.services) !== port;
    const listening = [badAddress ? `${listen} (-l)` : '', badPort ? `port ${port} (-p)` : ''].filter((s) => s !== '').join(', ');
    const flags = [badAddress ? `-l ${t.address}` : '', badPort ? `-p ${t.port}` : ''].filter((s) => s !== '').join(' ');
    return {
      severity: 'error', where: this.where(r),
      text: `smtp is sent to ${t.address} port ${t.port}, but pfgrey listens on ${listening}, so connections never reach it; send them to ${listen === '0.0.0.0' ? '127.0.0.1' : listen} port ${port}, or run pfgrey with ${flags}`,
    };
  }

  /** Why whitelisted hosts are still redirected by `r`, and what to change. */
  private noExemptionText(r: PfRule): string {
    const { table } = this.opts;
    const member = new Set([table]);
    const head = `no rule exempts <${table}> from this redirect, so whitelisted hosts are tarpitted again and their mail never reaches the MTA`;
    const idx = this.rules.indexOf(r);
    if (r.action === 'rdr') {
      const late = this.rules.slice(idx + 1).find((x) => x.action === 'no-rdr' && this.applies(x, member));
      if (late) return `${head}; the no rdr rule at ${this.ref(late)} comes after it and translation takes the first match: move it before this rule`;
      return `${head}${this.wrongTableNote(idx, 'no-rdr')}; add before it: no rdr inet proto tcp from <${table}> to any port smtp`;
    }
    if (r.action === 'match') {
      return `${head}; match rules keep their rdr-to, so exclude the whitelist in this rule: from ! <${table}>`;
    }
    const early = this.rules.slice(0, idx)
      .find((x) => x.action === 'pass' && !x.redirect && !x.quick && this.applies(x, member));
    if (early) return `${head}; the pass rule at ${this.ref(early)} comes before it and the last matching rule wins: move it after this rule`;
    const on = r.interfaces.length === 1 && !r.interfaces[0]!.startsWith('!') ? `on ${r.interfaces[0]} ` : '';
    return `${head}${this.wrongTableNote(idx, 'pass')}; add after it: pass in ${on}proto tcp from <${table}> to any port smtp`;
  }

  /** ` (line 5 exempts <spamd-mywhite> instead)` when an exemption names a table pfgrey does not fill. */
  private wrongTableNote(idx: number, kind: 'no-rdr' | 'pass'): string {
    const candidates = kind === 'no-rdr' ? this.rules.slice(0, idx) : this.rules.slice(idx + 1);
    for (const x of candidates) {
      if (x.action !== kind || x.redirect || !mentionsSmtp(x)) continue;
      const other = x.from.hosts.find((h) => h.table !== undefined && !h.negated && !isOurs(h.table, this.opts)
        && didYouMean(h.table, [this.opts.table]) !== undefined);
      if (other) return ` (${this.ref(x)} exempts <${other.table}> instead)`;
    }
    return '';
  }
}

/** The closest of `names` to `name` when it is close enough to be a slip of the keyboard. */
export function didYouMean(name: string, names: readonly string[]): string | undefined {
  // <nospamd> is the table spamd's documentation gives admins; it is nobody's typo.
  if (name === 'nospamd') return undefined;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const n of names) {
    const d = editDistance(name, n);
    if (d < bestDistance) {
      best = n;
      bestDistance = d;
    }
  }
  const limit = Math.max(2, Math.floor(Math.max(name.length, best?.length ?? 0) / 3));
  return best !== undefined && bestDistance > 0 && bestDistance <= limit ? best : undefined;
}

/** Levenshtein distance: insertions, deletions and substitutions each cost 1. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

// ---------------------------------------------------------------------------------------------
// The system

/** pfctl and the pf device (for pf), fdescfs (FreeBSD), the user, the database directory, the ports. */
export function checkSystem(facts: SystemFacts, opts: CheckOptions): Finding[] {
  return [
    // nft's own trouble (missing, no CAP_NET_ADMIN) is the one finding in place of the rules'.
    ...(opts.firewall !== 'nft' ? [pfctlFinding(facts, opts), deviceFinding(facts, opts)] : []),
    ...fdescfsFindings(facts, opts),
    ...userFindings(facts, opts),
    ...postgresFindings(facts),
    ...portFindings(facts, opts),
  ];
}

function pfctlFinding(facts: SystemFacts, opts: CheckOptions): Finding {
  const { pfctl, table, os } = opts;
  if (facts.pfctlProblem === undefined) return { severity: 'ok', text: `${pfctl} is executable` };
  const linux = os === 'linux' ? ' (pf is the BSDs\' firewall: on Linux, pfgrey run --firewall nft)' : '';
  return {
    severity: 'error',
    text: `${facts.pfctlProblem}, so pfgrey cannot fill <${table}>; install pf's pfctl, or give its path with --pfctl${linux}`,
  };
}

function deviceFinding(facts: SystemFacts, opts: CheckOptions): Finding {
  const dev = opts.pfDevice;
  if (facts.pfDevice === 'ok') return { severity: 'ok', text: `${dev} opens read-write` };
  if (facts.pfDevice === 'not-root') {
    return { severity: 'warning', text: `${dev} not checked: only root opens it, as pfgrey run does when it starts; run check as root` };
  }
  const fix = opts.os === 'freebsd' ? 'enable pf: kldload pf; pfctl -e; sysrc pf_enable=YES'
    : opts.os === 'openbsd' ? 'enable pf: pfctl -e; rcctl enable pf' : 'pf runs on the BSDs (on Linux, pfgrey run --firewall nft)';
  return {
    severity: 'error',
    text: `${dev} does not open read-write (${facts.pfDevice.error}), so pfgrey cannot change pf's tables; ${fix}`,
  };
}

function fdescfsFindings(facts: SystemFacts, opts: CheckOptions): Finding[] {
  const f = facts.fdescfs;
  if (opts.os !== 'freebsd' || f === undefined) return [];
  if ('error' in f) {
    return [{ severity: 'warning', text: `cannot read the mount table (${f.error}); make sure fdescfs is mounted on /dev/fd` }];
  }
  if (f.mounted) return [{ severity: 'ok', text: 'fdescfs is mounted on /dev/fd' }];
  return [{
    severity: 'error',
    text: `fdescfs is not mounted on /dev/fd, so pfctl cannot open /dev/fd/3 (the ${opts.pfDevice} pfgrey hands it) and <${opts.table}> stays empty; mount -t fdescfs fdesc /dev/fd, and add "fdesc /dev/fd fdescfs rw 0 0" to /etc/fstab`,
  }];
}

function userFindings(facts: SystemFacts, opts: CheckOptions): Finding[] {
  const u = facts.user;
  if (u === undefined) {
    return [{
      severity: 'error',
      text: `user ${opts.user} does not exist (${facts.passwdFile}): pfgrey run, started as root, switches to it; create it: ${addUserCommand(opts.os, opts.user)}`,
    }];
  }
  if (u.uid === 0) {
    return [{ severity: 'error', text: `user ${u.name} has uid 0: pfgrey run refuses to switch to root; name an unprivileged user with --user` }];
  }
  return [{ severity: 'ok', text: `user ${u.name} exists (uid ${u.uid}, gid ${u.gid})` }, ...dbFindings(facts, u, opts)];
}

function modeText(m: FileMode): string {
  return `owner ${m.uid}:${m.gid}, mode 0${(m.mode & 0o7777).toString(8)}`;
}

/** Whether the user may `need` ('w', 'x', 'wx') on a file of this owner and mode. */
function may(m: FileMode, user: { uid: number; gid: number }, need: string): boolean {
  const shift = m.uid === user.uid ? 6 : m.gid === user.gid ? 3 : 0;
  const bits = (need.includes('w') ? 2 : 0) | (need.includes('x') ? 1 : 0);
  return ((m.mode >> shift) & bits) === bits;
}

/** A PostgreSQL database: no file and no directory; what matters is that the server answers this host. */
function postgresFindings(facts: SystemFacts): Finding[] {
  if (!('postgres' in facts.db)) return [];
  const { postgres, problem } = facts.db;
  return problem === undefined
    ? [{ severity: 'ok', text: `${postgres} answers; pfgrey makes its tables there on first use` }]
    : [{ severity: 'error', text: `${problem}; pfgrey run needs the database server to answer (check the URL, the server's pg_hba.conf, the network)` }];
}

function dbFindings(facts: SystemFacts, user: { name: string; uid: number; gid: number }, opts: CheckOptions): Finding[] {
  if ('postgres' in facts.db) return [];
  const { dir, dirMode, ancestors } = facts.db;
  const name = user.name;
  const base = path.basename(opts.dbPath);
  const install = (d: string) => `install -d -o ${name} -g ${name} -m 0750 ${d}`;
  for (const a of ancestors) {
    if (!may(a.mode, user, 'x')) {
      return [{ severity: 'error', text: `${a.path} is not searchable by ${name} (${modeText(a.mode)}), so pfgrey run cannot reach ${dir}; chmod a+x ${a.path}, or keep the database elsewhere (--db)` }];
    }
  }
  if (dirMode === undefined) {
    return [{ severity: 'error', text: `${dir} does not exist, so pfgrey run cannot create ${base}; create it: ${install(dir)}` }];
  }
  if (!may(dirMode, user, 'wx')) {
    // A root-owned directory is shared (/var/db): the database gets one of its own instead.
    const own = path.join(dir, 'pfgrey');
    const fix = dirMode.uid === 0
      ? `keep the database in a directory of its own: ${install(own)}, and pfgrey run --db ${path.join(own, base)}`
      : install(dir);
    return [{ severity: 'error', text: `${dir} is not writable by ${name} (${modeText(dirMode)}), so pfgrey run cannot create ${base} and its journal there; ${fix}` }];
  }
  return [{ severity: 'ok', text: `${dir} is writable by ${name}` }];
}

function portFindings(facts: SystemFacts, opts: CheckOptions): Finding[] {
  const tarpitSmtp = facts.tarpitPort.state === 'taken' && facts.tarpitPort.smtp;
  const one = (state: PortState, host: string, port: number, flag: string, what: string): Finding => {
    const at = `${host}:${port}`;
    switch (state.state) {
      case 'free':
        return { severity: 'ok', text: `${at} is free for the ${what} (${flag})` };
      case 'taken':
        if (state.smtp) {
          return { severity: 'warning', text: `${at} is taken by an SMTP server (it answered 220): pfgrey or spamd already runs; fine if it is this pfgrey, otherwise stop it before pfgrey run` };
        }
        if (flag === '--config-port' && tarpitSmtp) {
          return { severity: 'warning', text: `${at} is taken, presumably by the pfgrey or spamd that answers on port ${opts.port}; fine if it is this pfgrey` };
        }
        return { severity: 'error', text: `${at} is taken by another program, so pfgrey run cannot listen there (${flag}); find it: ${FIND_LISTENER[opts.os](port)}` };
      case 'failed': {
        const why = state.code === 'EADDRNOTAVAIL' ? '; -l must be an address of this host'
          : state.code === 'EACCES' ? '; ports below 1024 need root' : '';
        return { severity: 'error', text: `cannot listen on ${at} (${state.message}), so pfgrey run cannot either${why}` };
      }
    }
  };
  return [
    one(facts.tarpitPort, opts.listen, opts.port, '-p', 'tarpit'),
    // pfgrey run binds the config port on the loopback address only.
    one(facts.configPort, DEFAULTS.listenAddress, opts.configPort, '--config-port', 'config port'),
  ];
}
