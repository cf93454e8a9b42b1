// A light structural check of the shipped pf rulesets (pf/openbsd.pf.conf, pf/freebsd.pf.conf)
// against pfgrey's defaults: what the tables are called and declared as, where the redirect
// goes, which rules carry `log`. Reading pf's grammar properly is `pfgrey check`'s business.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULTS } from '../src/config/defaults.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TARPIT = `${DEFAULTS.listenAddress} port ${DEFAULTS.port}`;
const WHITE = `<${DEFAULTS.table}>`;
const BLACK = `<${DEFAULTS.blackTable}>`;

interface Ruleset {
  text: string;
  /** Lines that are rules (comments and blank lines dropped, macros expanded no further). */
  rules: string[];
  /** Rules shown commented out, as alternatives: `# pass …`, `# rdr …`. */
  alternatives: string[];
}

function load(system: string): Ruleset {
  const text = fs.readFileSync(path.join(ROOT, 'pf', `${system}.pf.conf`), 'utf8');
  const lines = text.split('\n').map((l) => l.trim());
  return {
    text,
    rules: lines.filter((l) => l !== '' && !l.startsWith('#')),
    alternatives: lines.filter((l) => /^#\s*(pass|rdr|no rdr|block)\s/.test(l)).map((l) => l.replace(/^#\s*/, '')),
  };
}

const tablesIn = (line: string): string[] => [...line.matchAll(/<([^>\s]+)>/g)].map((m) => m[1]!);

for (const system of ['openbsd', 'freebsd']) {
  test(`${system}: the tables are spamd's, declared persist, <nospamd> from /etc/mail/nospamd`, (t) => {
    const { rules } = load(system);
    const declared = rules.filter((r) => r.startsWith('table '));
    for (const d of declared) t.regex(d, /\spersist(\s|$)/, d);
    const names = declared.map((d) => tablesIn(d)[0]);
    t.deepEqual(names.sort(), [DEFAULTS.blackTable, DEFAULTS.table, 'nospamd'].sort());
    t.true(declared.includes('table <nospamd> persist file "/etc/mail/nospamd"'));
  });

  test(`${system}: every table a rule or an alternative names is declared`, (t) => {
    const { rules, alternatives } = load(system);
    const declared = new Set(rules.filter((r) => r.startsWith('table ')).map((r) => tablesIn(r)[0]));
    for (const rule of [...rules, ...alternatives].filter((r) => !r.startsWith('table '))) {
      for (const name of tablesIn(rule)) t.true(declared.has(name), `<${name}> in: ${rule}`);
    }
  });

  test(`${system}: whitelisted SMTP in and all SMTP out pass with log, for pfgrey logd`, (t) => {
    const { rules } = load(system);
    t.true(rules.some((r) => /^pass in log\b.*\bfrom <spamd-white> to any port smtp$/.test(r)), 'pass in log … from <spamd-white>');
    t.true(rules.some((r) => /^pass out log\b.*\bport smtp$/.test(r)), 'pass out log … port smtp');
    t.true(rules.some((r) => /^pass in\b.*\bfrom <nospamd> to any port smtp$/.test(r)), 'pass in … from <nospamd>');
  });

  test(`${system}: the header names the pfgrey commands and flags the rules go with`, (t) => {
    const { text } = load(system);
    const header = text.slice(0, text.indexOf('\n\n'));
    for (const words of ['pfgrey run', 'pfgrey setup', 'pfgrey logd', `-l ${DEFAULTS.listenAddress}`, `-p ${DEFAULTS.port}`, `--table ${DEFAULTS.table}`]) {
      t.true(header.includes(words), words);
    }
  });
}

test(`openbsd: SMTP is diverted to the tarpit (${TARPIT}); rdr-to only as a commented alternative, with the -M caveat`, (t) => {
  const { rules, alternatives, text } = load('openbsd');
  const diverts = rules.filter((r) => r.includes('divert-to'));
  t.deepEqual(diverts, [`pass in on $ext_if inet proto tcp to any port smtp divert-to ${TARPIT}`]);
  t.false(rules.some((r) => r.includes('rdr-to')));
  t.true(alternatives.includes(`pass in on $ext_if inet proto tcp to any port smtp rdr-to ${TARPIT}`));
  t.regex(text, /Only divert-to works with -M/);
  // pf takes the last matching rule: the whitelist's pass must come after the divert.
  const divert = rules.indexOf(diverts[0]!);
  t.true(rules.findIndex((r) => r.includes(`from ${WHITE}`)) > divert);
  t.true(rules.findIndex((r) => r.includes('from <nospamd>')) > divert);
  t.true(alternatives.includes(`pass in on $ext_if inet proto tcp from ${BLACK} to any port smtp divert-to ${TARPIT}`), 'blacklist-only variant');
});

test(`freebsd: SMTP is redirected with rdr to the tarpit (${TARPIT}), after no rdr for <spamd-white> and <nospamd>`, (t) => {
  const { rules, alternatives, text } = load('freebsd');
  const rdr = rules.filter((r) => /^rdr\b/.test(r));
  t.deepEqual(rdr, [`rdr pass on $ext_if inet proto tcp from any to any port smtp -> ${TARPIT}`]);
  const at = rules.indexOf(rdr[0]!);
  for (const table of [WHITE, '<nospamd>']) {
    const no = rules.findIndex((r) => r === `no rdr on $ext_if inet proto tcp from ${table} to any port smtp`);
    t.true(no >= 0 && no < at, `no rdr for ${table} before the rdr`);
  }
  t.false(rules.some((r) => /divert-to|rdr-to/.test(r)), 'no OpenBSD 4.7 syntax');
  // FreeBSD's pf wants translation rules before filter rules.
  t.true(rules.findIndex((r) => r.startsWith('pass')) > at);
  t.true(alternatives.includes(`rdr pass on $ext_if inet proto tcp from ${BLACK} to any port smtp -> ${TARPIT}`), 'blacklist-only variant');
  t.regex(text, /-M .*cannot work/s);
});

test('linux: whitelisted SMTP in and SMTP out are logged to the nflog groups pfgrey logd reads by default', (t) => {
  const text = fs.readFileSync(path.join(ROOT, 'pf', 'linux', 'pfgrey.nft'), 'utf8');
  const rules = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const logged = rules.filter((r) => /\blog\b/.test(r));
  const { in: inbound, out: outbound } = DEFAULTS.nflogGroups;
  // Only the first packet of a connection, as spamlogd's filter takes SYNs only.
  const first = 'tcp dport 25 ct state new tcp flags & (syn | ack) == syn';
  t.deepEqual(logged, [
    `${first} ip saddr @${DEFAULTS.table} log group ${inbound}`,
    `${first} ip6 saddr @${DEFAULTS.table}6 log group ${inbound}`,
    `oif != "lo" ${first} log group ${outbound}`,
  ]);
  // The inbound rules sit in the input chain, the outbound one in the output chain, which a
  // reload flushes too.
  const chainOf = (rule: string) => /chain (\w+) \{[^}]*$/.exec(text.slice(0, text.indexOf(rule)))?.[1];
  t.deepEqual(logged.map(chainOf), ['input', 'input', 'output']);
  t.regex(text, /^flush chain inet pfgrey output$/m);
  t.regex(text, /^#\s+pfgrey logd\s+reads nflog groups 25 and 26 \(-l nflog:25,26\)/m);
  t.is(`nflog:${inbound},${outbound}`, 'nflog:25,26', 'the header names the defaults');
});
