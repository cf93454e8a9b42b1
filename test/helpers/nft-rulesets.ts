// The shipped nftables ruleset (pf/linux/pfgrey.nft) and broken variants of it, each made by
// one edit so that each holds one mistake, for `pfgrey check` on nftables. The variants are
// derived from the shipped file, so they follow it when it changes; test/fixtures/nft holds
// what nft lists for each once loaded (checked by test/check-nft.test.ts when it can load them).

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SHIPPED_FILE = path.join(ROOT, 'pf/linux/pfgrey.nft');
export const NFT_FIXTURES = path.join(ROOT, 'test/fixtures/nft');
export const NFT = '/usr/sbin/nft';

/** The text without its (uncommented) line `line`; throws when the file has no such line. */
function without(text: string, line: string): string {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.trim() === line);
  if (i < 0) throw new Error(`pfgrey.nft has no line "${line}"`);
  lines.splice(i, 1);
  return lines.join('\n');
}

function replaced(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`pfgrey.nft has no "${from}"`);
  return text.split(from).join(to);
}

export const VARIANTS: Record<string, (shipped: string) => string> = {
  shipped: (s) => s,
  'no-redirect': (s) => without(s, 'meta nfproto ipv4 tcp dport 25 fib daddr type local counter dnat ip to ip daddr:8025'),
  'wrong-set': (s) => replaced(s, 'spamd-white', 'spamd-whitelist'),
  'no-exemption': (s) => without(s, 'tcp dport 25 ip saddr @spamd-white return'),
  'open-port': (s) => without(s, 'tcp dport { 8025, 8026 } counter drop'),
  'loopback-dnat': (s) => replaced(s, 'dnat ip to ip daddr:8025', 'dnat ip to 127.0.0.1:8025'),
  'input-drop': (s) => replaced(without(s, 'tcp dport 8025 ct status dnat ct original proto-dst 25 accept'),
    'chain input { type filter hook input priority filter; policy accept; }',
    'chain input { type filter hook input priority filter; policy drop; }'),
  flush: (s) => `flush ruleset\n${s}`,
};

export function variant(name: string): string {
  return VARIANTS[name]!(readFileSync(SHIPPED_FILE, 'utf8'));
}

export function run(file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** What `pfgrey check` reads from nft for the ruleset loaded in namespace `ns`. */
export async function listed(ns: string): Promise<{ json: string; text: string }> {
  const nft = (args: string[]) => run('ip', ['netns', 'exec', ns, NFT, ...args]);
  return { json: await nft(['-t', '-j', 'list', 'ruleset']), text: await nft(['-t', '-s', '-a', 'list', 'ruleset']) };
}
