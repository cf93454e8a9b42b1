// Loads an nftables file where it changes nothing, and prints the ruleset it makes: run by
// `pfgrey check --nft-conf FILE` as `unshare --net [--map-root-user] -- node nft-scratch.js NFT
// FILE [INTERFACE…]`, so it starts in a network namespace of its own that disappears with it.
//
// Why load rather than parse: nft is the only complete reader of its language (includes,
// variables, sets of sets); `nft -c` (check) prints nothing of what it read, even with -j or
// --echo (nftables 1.0.6). The namespace is empty but for lo, and a rule naming an interface
// with `iif` or `oif` does not load where that interface is missing, so this process first
// makes a dummy interface for each name this host has (given after FILE). It prints one line
// of JSON: `{"json": …, "text": …}` (`nft -t -j list ruleset` and `nft -t -s -a list ruleset`,
// the latter to quote rules), or `{"load": "nft's message"}` when FILE does not load, or
// `{"error": "…"}` when the namespace cannot be used.

import { existsSync } from 'node:fs';
import { runProgram } from '../exec.js';
import { describe } from '../errors.js';

const IP = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'];
const TIMEOUT = 30_000;

async function main(argv: string[]): Promise<Record<string, string>> {
  const [nft, file, ...interfaces] = argv;
  if (nft === undefined || file === undefined) return { error: 'usage: nft-scratch NFT FILE [INTERFACE…]' };
  const ip = IP.find((p) => existsSync(p));
  if (ip !== undefined) {
    for (const name of interfaces) {
      // Best effort: a name the kernel refuses only matters if the file names it.
      await runProgram({ file: ip, args: ['link', 'add', name, 'type', 'dummy'], timeout: TIMEOUT }).catch(() => undefined);
    }
  }
  try {
    await runProgram({ file: nft, args: ['-f', file], timeout: TIMEOUT });
  } catch (err) {
    return { load: describe(err) };
  }
  try {
    const json = await runProgram({ file: nft, args: ['-t', '-j', 'list', 'ruleset'], timeout: TIMEOUT });
    const text = await runProgram({ file: nft, args: ['-t', '-s', '-a', 'list', 'ruleset'], timeout: TIMEOUT });
    return { json, text };
  } catch (err) {
    return { error: describe(err) };
  }
}

main(process.argv.slice(2)).then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (err: unknown) => process.stdout.write(`${JSON.stringify({ error: describe(err) })}\n`),
);
