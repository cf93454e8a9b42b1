// Benchmark: weighted greylisting (README, "Weighted greylisting") over a synthetic population
// of senders that this benchmark writes as DNS zones and serves from a real authoritative server
// (Debian's nsd) on a loopback port: good senders (forward-confirmed rDNS, a HELO name with an
// address, SPF pass, some on the DNSWL) and bad ones (on the DNSBL; generic rDNS and a bad HELO;
// a forged sender domain whose SPF fails; all of these at once), in a stated mix. Each sender's
// first attempt goes through the greylist core as the daemon's tarpit hands it a tuple (the
// weighted stage with --weighted's defaults and --dnsbl/--dnswl naming the bench's zones, then
// the decision over a SQLite database on disk), so a figure is door-to-verdict, not DNS alone.
// Reports the share of good senders delayed (plain greylisting delays all of them) and of each
// kind of bad one greylisted, decisions/s and latency with a cold and a warm cache.
// Targets: no good sender delayed; every listed or SPF-failing sender greylisted; ≥ 5,000
// decisions/s warm.
//
//   npm run bench:weighted [-- --quick] [-- --senders N] [-- --concurrency N] [-- --memory]
//
// The addresses are documentation and benchmarking ones (RFC 5737's three TEST-NETs, RFC 2544's
// 198.18.0.0/15 once those are used up, RFC 3849's 2001:db8::/32); they only appear in the zones:
// nothing is sent to them.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULTS } from '../src/config/defaults.js';
import { Greylister, type WeightedCore } from '../src/grey/greylister.js';
import type { Verdict } from '../src/grey/requests.js';
import type { Tuple } from '../src/grey/types.js';
import { silentLogger } from '../src/log.js';
import { openStore } from '../src/store/sqlite.js';
import { MemoryStore } from '../src/store/memory.js';
import { type DnsStats, reverseName } from '../src/weighted/dns.js';
import { DEFAULT_GENERIC_PATTERNS, looksGeneric } from '../src/weighted/helo-rdns.js';
import { type StartedWeighting, startWeighting, type WeightedConfig, weightedConfig } from '../src/weighted/options.js';
import { type Attempt, type Score, WeightedStage } from '../src/weighted/score.js';
import { nsdMissing, startNsd } from '../test/helpers/nsd.js';
import { printTable, quick } from './common.js';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} ${process.argv[i + 1] ?? ''}: expected a positive whole number`);
  return n;
}

/** Senders in the population. */
const SENDERS = flag('--senders', quick ? 400 : 2_000);
/**
 * Decisions in flight at once: a door with many clients at RCPT at the same moment. 64 is also
 * the DNS client's own bound on queries in flight (DEFAULTS.dnsMaxInFlight).
 */
const CONCURRENCY = flag('--concurrency', 64);
/** Passes over the whole population: cold (each with a fresh DNS client), warm, warm without the score cache. */
const COLD_PASSES = quick ? 1 : 3;
const WARM_PASSES = quick ? 2 : 5;
/** --memory: the in-memory store instead of SQLite on disk, to see the stage's cost without the database's. */
const MEMORY = process.argv.includes('--memory');

/** The mix, in shares of the population; good senders take what rounding leaves. */
const KINDS = ['good', 'good-dnswl', 'listed', 'generic-helo', 'spf-fail', 'several'] as const;
type Kind = (typeof KINDS)[number];
const SHARE: Record<Exclude<Kind, 'good'>, number> = {
  'good-dnswl': 0.175, listed: 0.075, 'generic-helo': 0.075, 'spf-fail': 0.075, several: 0.075,
};
const DESCRIBE: Record<Kind, string> = {
  good: 'good: confirmed rDNS, HELO with an address, SPF pass',
  'good-dnswl': 'good and on the DNSWL',
  listed: 'on the DNSBL, otherwise as a good one',
  'generic-helo': 'generic rDNS + bad HELO, no SPF record',
  'spf-fail': 'forged sender domain (SPF fail), otherwise clean',
  several: 'DNSBL + generic rDNS + bad HELO + SPF fail',
};
const isGood = (k: Kind) => k === 'good' || k === 'good-dnswl';

/** Every fifth sender has an IPv6 address. */
const IPV6_EVERY = 5;

const BL = 'bl.bench.test';
const WL = 'wl.bench.test';
/** Where the senders' mail hosts and domains live, the ISP's dynamic pool, the VPS host of forgers, throwaway domains. */
const SENDERS_ZONE = 'senders.test';
const ISP_ZONE = 'isp.test';
const HOSTING_ZONE = 'hosting.test';
const SPAM_ZONE = 'spam.test';
const REVERSE_ZONES = ['2.0.192.in-addr.arpa', '100.51.198.in-addr.arpa', '113.0.203.in-addr.arpa', '18.198.in-addr.arpa', '8.b.d.0.1.0.0.2.ip6.arpa'];

interface Sender {
  kind: Kind;
  ip: string;
  tuple: Tuple;
  /** The findings the design gives this sender (check → verdict word), checked after the run. */
  expect: Record<string, string>;
}

/** A small seeded generator (mulberry32), so that every run builds the same population. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The n-th IPv4 address: the three TEST-NETs' hosts first (762), then 198.18.0.0/15's. */
function ipv4(n: number): string {
  const nets = ['192.0.2', '198.51.100', '203.0.113'];
  if (n < nets.length * 254) return `${nets[Math.floor(n / 254)]}.${(n % 254) + 1}`;
  const k = n - nets.length * 254;
  if (k >= 254 * 255) throw new Error('too many senders for the IPv4 ranges');
  return `198.18.${Math.floor(k / 254)}.${(k % 254) + 1}`;
}

const ipv6 = (n: number) => `2001:db8:10:${n.toString(16)}::25`;

/** The compressed form of an IPv6 address with dashes, as ISPs write it in pool names: 2001-db8-10-1f--25. */
const dashed = (ip: string) => (ip.includes(':') ? new URL(`http://[${ip}]/`).hostname.slice(1, -1).replace(/:/g, '-') : ip.replace(/\./g, '-'));

/** The part of a reverse name in front of in-addr.arpa / ip6.arpa: what a DNS list is asked. */
const listName = (ip: string, zone: string) => `${reverseName(ip)!.replace(/\.(in-addr|ip6)\.arpa$/, '')}.${zone}`;

class Zones {
  private readonly records = new Map<string, string[]>();

  constructor(names: string[]) {
    for (const z of names) this.records.set(z, []);
  }

  add(name: string, type: 'A' | 'AAAA' | 'PTR' | 'TXT', data: string): void {
    let zone: string | undefined;
    for (const z of this.records.keys()) if ((name === z || name.endsWith(`.${z}`)) && (!zone || z.length > zone.length)) zone = z;
    if (!zone) throw new Error(`no zone for ${name}`);
    const value = type === 'TXT' ? `"${data}"` : type === 'PTR' ? `${data}.` : data;
    this.records.get(zone)!.push(`${name}. IN ${type} ${value}`);
  }

  files(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [z, lines] of this.records) {
      out[z] = [`$ORIGIN ${z}.`, '$TTL 3600', '@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300',
        '@ IN NS ns.bench.test.', ...lines, ''].join('\n');
    }
    return out;
  }

  get count(): number {
    let n = 0;
    for (const lines of this.records.values()) n += lines.length;
    return n;
  }
}

/** The population and the zones that describe it. */
function population(n: number): { senders: Sender[]; zones: Zones } {
  const kinds: Kind[] = [];
  for (const k of KINDS) if (k !== 'good') for (let i = Math.round(n * SHARE[k]); i > 0; i--) kinds.push(k);
  while (kinds.length < n) kinds.push('good');
  // Shuffled, so that each kind is spread over the networks and the run's order.
  const rnd = random(20261203);
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
  }
  const zones = new Zones([BL, WL, SENDERS_ZONE, ISP_ZONE, HOSTING_ZONE, SPAM_ZONE, ...REVERSE_ZONES]);
  let v4 = 0;
  let v6 = 0;
  const ips = kinds.map((_, i) => (i % IPV6_EVERY === IPV6_EVERY - 1 ? ipv6(v6++) : ipv4(v4++)));
  const goodIdx = kinds.map((k, i) => (isGood(k) ? i : -1)).filter((i) => i >= 0);
  const badHelos = (ip: string, i: number): [string, string] => {
    const six = ip.includes(':');
    const choices: Array<[string, string]> = [
      [ip, 'ip'],
      [`PC-${i}`, 'not-fqdn'],
      ['localhost', 'not-fqdn'],
      [six ? '[IPv6:2001:db8::dead]' : '[192.0.2.0]', 'foreign-literal'],
      [`mail.h${i}.${SPAM_ZONE}`, 'no-address'],
    ];
    return choices[i % choices.length]!;
  };
  const senders = kinds.map((kind, i): Sender => {
    const ip = ips[i]!;
    const six = ip.includes(':');
    const addr = six ? 'AAAA' : 'A';
    const expect: Record<string, string> = { dnswl: 'not-listed', dnsbl: 'not-listed', sender: 'ok' };
    let helo: string;
    let sender: string;
    if (kind === 'good' || kind === 'good-dnswl' || kind === 'listed') {
      // A mail host of its own domain: PTR → name → the address; the domain's SPF names it
      // (a third of them through an include:, as providers publish it).
      const host = `mx${i}.${SENDERS_ZONE}`;
      const domain = `d${i}.${SENDERS_ZONE}`;
      zones.add(reverseName(ip)!, 'PTR', host);
      zones.add(host, addr, ip);
      const mech = `${six ? 'ip6' : 'ip4'}:${ip}`;
      if (i % 3 === 0) {
        zones.add(domain, 'TXT', `v=spf1 include:_spf.${domain} -all`);
        zones.add(`_spf.${domain}`, 'TXT', `v=spf1 ${mech} -all`);
      } else {
        zones.add(domain, 'TXT', `v=spf1 ${mech} -all`);
      }
      helo = host;
      sender = `news@${domain}`;
      Object.assign(expect, { helo: 'ok', rdns: 'confirmed', spf: 'pass' });
    } else {
      const forged = kind === 'spf-fail' || kind === 'several';
      // A forger uses a good sender's domain, whose SPF does not name the forger's address.
      const domain = forged ? `d${goodIdx[i % goodIdx.length]!}.${SENDERS_ZONE}` : `d${i}.${SPAM_ZONE}`;
      if (!forged) zones.add(domain, 'A', '192.0.2.0');
      sender = `info@${domain}`;
      expect['spf'] = forged ? 'fail' : 'none';
      if (kind === 'spf-fail') {
        const host = `vps${i}.${HOSTING_ZONE}`;
        zones.add(reverseName(ip)!, 'PTR', host);
        zones.add(host, addr, ip);
        helo = host;
        Object.assign(expect, { helo: 'ok', rdns: 'confirmed' });
      } else {
        const host = six ? `dyn.${dashed(ip)}.pool.${ISP_ZONE}` : `dsl-${dashed(ip)}.pool.${ISP_ZONE}`;
        if (!looksGeneric(host, ip, DEFAULT_GENERIC_PATTERNS)) throw new Error(`${host} does not look generic for ${ip}`);
        zones.add(reverseName(ip)!, 'PTR', host);
        zones.add(host, addr, ip);
        const [h, verdict] = badHelos(ip, i);
        helo = h;
        Object.assign(expect, { helo: verdict, rdns: 'generic' });
      }
    }
    if (kind === 'good-dnswl') {
      zones.add(listName(ip, WL), 'A', '127.0.10.1');
      expect['dnswl'] = 'listed';
    }
    if (kind === 'listed' || kind === 'several') {
      zones.add(listName(ip, BL), 'A', '127.0.0.2');
      expect['dnsbl'] = 'listed';
    }
    if (expect['rdns'] === 'confirmed' && looksGeneric(helo, ip, DEFAULT_GENERIC_PATTERNS)) throw new Error(`${helo} looks generic for ${ip}`);
    return { kind, ip, tuple: { ip, helo, from: `<${sender}>`, to: `<u${i % 100}@our.test>` }, expect };
  });
  return { senders, zones };
}

/** A stage that counts partial scores (a lookup that did not answer) and keeps each attempt's score. */
class Watched {
  partial = 0;
  readonly scores = new Map<string, Score>();

  constructor(private readonly inner: Pick<WeightedStage, 'score'>) {}

  async score(a: Attempt): Promise<Score> {
    const s = await this.inner.score(a);
    if (s.partial) this.partial++;
    this.scores.set(a.ip, s);
    return s;
  }
}

interface Pass {
  secs: number;
  /** nsd's CPU seconds during the pass. */
  nsd: number;
  latencies: Float64Array;
  verdicts: Verdict[];
  cpu: number;
  partial: number;
  dns?: DnsStats;
}

const TIMES = { passTime: 25 * 60_000, greyExpiry: 4 * 3_600_000, whiteExpiry: 36 * 86_400_000, trapExpiry: 86_400_000 };

/**
 * Every sender's first attempt through a greylist core on a new database file (so each is a
 * first attempt), CONCURRENCY at a time; each latency is from handing the tuple in to its verdict.
 */
async function pass(senders: Sender[], weighted: WeightedCore | undefined, dir: string, name: string): Promise<Pass> {
  const file = path.join(dir, `${name}.db`);
  const store = MEMORY ? new MemoryStore() : await openStore(file, { create: true, log: silentLogger });
  const g = new Greylister({ store, log: silentLogger, times: TIMES, weighted });
  const latencies = new Float64Array(senders.length);
  const verdicts: Verdict[] = new Array(senders.length);
  let next = 0;
  const nsd0 = await nsdCpu(nsdPid);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, senders.length) }, async () => {
    while (next < senders.length) {
      const i = next++;
      const start = performance.now();
      verdicts[i] = await g.tuple(senders[i]!.tuple);
      latencies[i] = performance.now() - start;
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const nsd = (await nsdCpu(nsdPid)) - nsd0;
  await g.settle();
  await g.stop();
  await store.close();
  for (const suffix of ['', '-wal', '-shm']) await fs.rm(file + suffix, { force: true });
  return { secs, nsd, latencies, verdicts, cpu: (cpu.user + cpu.system) / 1e6, partial: 0 };
}

/** User + system CPU seconds of a process (all its threads), from /proc (proc(5): utime, stime in 1/100 s). */
async function statCpu(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds of a process and all its descendants (nsd forks xfrd, which forks the server). */
async function treeCpu(pid: number): Promise<number> {
  const children = (await fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean).map(Number);
  let total = await statCpu(pid).catch(() => 0);
  for (const c of children) total += await treeCpu(c);
  return total;
}

const nsdCpu = async (pidFile: string) => treeCpu(Number((await fs.readFile(pidFile, 'utf8')).trim()));

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const int = (n: number) => Math.round(n).toLocaleString('en');
const pct = (part: number, whole: number) => `${whole === 0 ? '-' : (Math.round((1000 * part) / whole) / 10).toFixed(1)} %`;
const delayed = (v: Verdict) => v.kind === 'greylisted' || v.kind === 'trapped';

/** One line per phase: rate of each pass and of all, latency percentiles over all its decisions. */
function phaseRows(label: string, passes: Pass[]): Array<[string, string]> {
  const all = Float64Array.from(passes.flatMap((p) => [...p.latencies])).sort();
  const secs = passes.reduce((a, p) => a + p.secs, 0);
  const cpu = passes.reduce((a, p) => a + p.cpu, 0);
  const nsd = passes.reduce((a, p) => a + p.nsd, 0);
  const rates = passes.map((p) => int(p.latencies.length / p.secs)).join(' · ');
  const partial = passes.reduce((a, p) => a + p.partial, 0);
  return [
    [`${label}: decisions/s`, `${int(all.length / secs)} (passes: ${rates}; ${int(all.length)} decisions in ${secs.toFixed(2)} s)`],
    [`${label}: latency p50 / p99 / max`, `${percentile(all, 50).toFixed(2)} / ${percentile(all, 99).toFixed(2)} / ${all[all.length - 1]!.toFixed(1)} ms`],
    [`${label}: CPU`, `this process ${Math.round((100 * cpu) / secs)} % of one core, ${((1e6 * cpu) / all.length).toFixed(0)} µs a decision; ` +
      `nsd ${nsd.toFixed(2)} s (${Math.round((100 * nsd) / secs)} %)${partial > 0 ? `; ${partial} scores partial (a lookup unanswered)` : ''}`],
  ];
}

/** The settings of `pfgrey run --weighted --dnsbl BL --dnswl WL --resolver NSD`. */
function config(resolver: string): WeightedConfig {
  return weightedConfig({ weighted: true, dnsbl: [BL], dnswl: [WL], resolver: [resolver] })!;
}

const missing = nsdMissing();
if (missing) {
  console.error(`bench:weighted needs nsd: ${missing}`);
  process.exit(1);
}
const { senders, zones } = population(SENDERS);
const counts = new Map<Kind, number>(KINDS.map((k) => [k, senders.filter((s) => s.kind === k).length]));
const nsd = await startNsd(zones.files());
const nsdPid = path.join(nsd.dir, 'nsd.pid');
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pfgrey-bench-weighted-'));
let failed = false;
const started: StartedWeighting[] = [];
try {
  const v6 = senders.filter((s) => s.ip.includes(':')).length;
  console.log(`Weighted greylisting: ${int(SENDERS)} senders (${int(SENDERS - v6)} IPv4, ${int(v6)} IPv6), ${int(zones.count)} records ` +
    `in ${Object.keys(zones.files()).length} zones served by nsd on ${nsd.server}; ${CONCURRENCY} decisions in flight; ` +
    `the tarpit's path through the greylist core, ${MEMORY ? 'a new in-memory store' : `a new SQLite database in ${os.tmpdir()}`} per pass; ${os.cpus().length} cores`);
  console.log(`load average at the start: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`);
  const cfg = config(nsd.server);

  // One pass first, not measured, with a DNS client of its own: so that the first measured pass
  // does not pay for loading mailauth and for the JIT compiler, which a running daemon has done.
  const warmUp = await startWeighting(cfg);
  started.push(warmUp);
  await pass(senders, warmUp.core(), dir, 'warmup');
  warmUp.close();
  // Cold: each pass with a new DNS client (and so a new score cache); nsd itself caches nothing.
  const cold: Pass[] = [];
  let warmWeighting: StartedWeighting | undefined;
  for (let i = 0; i < COLD_PASSES; i++) {
    const w = await startWeighting(cfg);
    started.push(w);
    const watched = new Watched(w.stage);
    const p = await pass(senders, { ...w.core(), stage: watched }, dir, `cold${i}`);
    p.partial = watched.partial;
    p.dns = w.dns.stats();
    cold.push(p);
    warmWeighting = w;
  }
  const w = warmWeighting!;
  // Warm: the same attempts again over the last cold pass's DNS client. With the stage's score
  // cache (60 s) most are score-cache hits; with a stage that caches no score over the same DNS
  // client, every check runs again and only DNS is cached.
  const warm: Pass[] = [];
  const scoreCache = new Watched(w.stage);
  for (let i = 0; i < WARM_PASSES; i++) warm.push(await pass(senders, { ...w.core(), stage: scoreCache }, dir, `warm${i}`));
  warm[0]!.partial = scoreCache.partial;
  const noCache = new Watched(new WeightedStage({ dns: w.dns, settings: w.stage.settings, cacheTtl: 0 }));
  const warmDns: Pass[] = [];
  const dnsBefore = w.dns.stats();
  for (let i = 0; i < WARM_PASSES; i++) warmDns.push(await pass(senders, { ...w.core(), stage: noCache }, dir, `warmdns${i}`));
  warmDns[0]!.partial = noCache.partial;
  const dnsAfter = w.dns.stats();
  const plain = await pass(senders, undefined, dir, 'plain');

  // What each sender scored, against what the population was built to give.
  const mismatches: string[] = [];
  for (const s of senders) {
    const score = noCache.scores.get(s.ip);
    if (!score) {
      mismatches.push(`${s.ip}: no score`);
      continue;
    }
    for (const [check, want] of Object.entries(s.expect)) {
      const got = score.findings.filter((f) => f.check === check).map((f) => f.result);
      if (!got.includes(want)) mismatches.push(`${s.kind} ${s.ip} ${check}: ${got.join(',') || 'no finding'}, designed ${want}`);
    }
  }
  const spfFindings = [...noCache.scores.values()].flatMap((sc) => sc.findings.filter((f) => f.check === 'spf'));
  const spfWired = spfFindings.length > 0 && spfFindings.some((f) => f.result === 'pass');
  const spfMismatch = (m: string) => / spf: /.test(m);

  // Shares, from the first cold pass; every other pass must agree with it.
  const first = cold[0]!.verdicts;
  const disagree = [...cold, ...warm, ...warmDns].map((p) => p.verdicts.filter((v, i) => delayed(v) !== delayed(first[i]!)).length);
  const byKind = (k: Kind, verdicts: Verdict[]) => senders.reduce((a, s, i) => a + (s.kind === k && delayed(verdicts[i]!) ? 1 : 0), 0);
  const goodCount = senders.filter((s) => isGood(s.kind)).length;
  const goodDelayed = senders.reduce((a, s, i) => a + (isGood(s.kind) && delayed(first[i]!) ? 1 : 0), 0);
  const plainGoodDelayed = senders.reduce((a, s, i) => a + (isGood(s.kind) && delayed(plain.verdicts[i]!) ? 1 : 0), 0);
  const scoreRange = (k: Kind) => {
    const totals = senders.filter((s) => s.kind === k).map((s) => noCache.scores.get(s.ip)?.total ?? NaN);
    return totals.length === 0 ? '-' : `${Math.min(...totals)}…${Math.max(...totals)}`;
  };
  const shareRows: Array<[string, string]> = [
    ['good senders delayed', `${pct(goodDelayed, goodCount)} (${goodDelayed} of ${goodCount}; plain greylisting: ${pct(plainGoodDelayed, goodCount)})`],
  ];
  for (const k of KINDS) {
    const n = counts.get(k)!;
    const grey = byKind(k, first);
    const notWired = !spfWired && (k === 'spf-fail' || k === 'several');
    shareRows.push([`${k} (${int(n)}, ${pct(n, SENDERS)}): ${isGood(k) ? 'delayed' : 'greylisted'}`,
      `${pct(grey, n)} (score ${scoreRange(k)}) — ${DESCRIBE[k]}${notWired ? ' [SPF not wired: its rows are not measured]' : ''}`]);
  }
  shareRows.push(['verdicts that differ from the first pass', disagree.join(' · ')]);
  printTable('Who is delayed (first cold pass; plain greylisting delays every first attempt)', shareRows);

  const coldDns = cold.map((p) => `${int(p.dns!.queries)} queries, ${p.dns!.overloads} overloads`).join(' · ');
  const fits = cold[0]!.dns!.queries <= DEFAULTS.dnsCacheEntries;
  const warmQueries = dnsAfter.queries - dnsBefore.queries;
  printTable(`Decisions, ${CONCURRENCY} in flight`, [
    ...phaseRows(`cold (new DNS client each pass, ×${COLD_PASSES})`, cold),
    ['cold: DNS', `${coldDns}; ${(cold[0]!.dns!.queries / SENDERS).toFixed(1)} queries a sender; the DNS cache holds ` +
      `${int(DEFAULTS.dnsCacheEntries)} answers${fits ? '' : ': fewer than one pass asks'}`],
    ...phaseRows(`warm, score cache (×${WARM_PASSES})`, warm),
    ...phaseRows(`warm, DNS cache only (×${WARM_PASSES})`, warmDns),
    ['warm, DNS cache only: DNS', `${int(warmQueries)} queries, ${int(dnsAfter.cacheHits - dnsBefore.cacheHits)} cache hits` +
      (warmQueries > 0 && !fits ? ' (each pass asks more names than the cache holds, in the same order: the least recently used, evicted first, is always the next one asked)' : '')],
    ...phaseRows('plain greylisting, no stage (×1)', [plain]),
  ]);

  const warmRate = (ps: Pass[]) => ps.reduce((a, p) => a + p.latencies.length, 0) / ps.reduce((a, p) => a + p.secs, 0);
  const listedAll = ['listed', 'several'].every((k) => byKind(k as Kind, first) === counts.get(k as Kind));
  const spfAll = byKind('spf-fail', first) === counts.get('spf-fail');
  printTable('Targets', [
    ['no good sender delayed', goodDelayed === 0 ? 'met' : `NOT met: ${goodDelayed} delayed`],
    ['every listed sender greylisted', listedAll ? 'met' : 'NOT met'],
    ['every SPF-failing sender greylisted', !spfWired ? 'not measured: SPF not wired' : spfAll ? 'met' : 'NOT met'],
    ['≥ 5,000 decisions/s warm (score cache)', `${warmRate(warm) >= 5000 ? 'met' : 'NOT met'}: ${int(warmRate(warm))} /s`],
    ['≥ 5,000 decisions/s warm (DNS cache only)', `${warmRate(warmDns) >= 5000 ? 'met' : 'NOT met'}: ${int(warmRate(warmDns))} /s`],
  ]);
  const real = mismatches.filter((m) => spfWired || !spfMismatch(m));
  if (real.length > 0) {
    console.error(`\n${real.length} findings differ from the population's design (the figures above may not mean what they say):`);
    for (const m of real.slice(0, 10)) console.error(`  ${m}`);
    failed = true;
  } else {
    console.log(`\nevery sender's findings are as the population was built${spfWired ? '' : ' (SPF aside: not wired)'}`);
  }
  console.log(`load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`);
} finally {
  for (const w of started) w.close();
  await nsd.stop();
  await fs.rm(dir, { recursive: true, force: true });
}
if (failed) process.exitCode = 1;
