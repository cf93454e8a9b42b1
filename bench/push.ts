// Benchmark: pushing a large whitelist to the firewall. pf through a pfctl stand-in that reads
// all of its input (pf itself is not on this machine); nftables for real, inside a network
// namespace made for the run (root only). Reports our own CPU time and the wall time, for a
// full 100,000-address replace and for a 10-address change of that table: as the scan hands it
// over (the changes), and as a whole list the sync has to compare. Also what the scan spends
// telling the changes apart (chunked, so it costs time but never a long block).
// Target: < 1 s CPU for 100k; diff cost independent of table size.
//
//   npm run bench:push [-- --quick]

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { WhitelistSync } from '../src/firewall/sync.js';
import { whitelistChanges } from '../src/grey/scanner.js';
import type { Firewall } from '../src/firewall/types.js';
import { pfFirewall } from '../src/firewall/pf.js';
import { silentLogger } from '../src/log.js';
import { loopProbe, ms, printTable, quick, withTempDir } from './common.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function addresses(n: number, offset = 0): string[] {
  return Array.from({ length: n }, (_, i) => {
    const j = i + offset;
    return `10.${(j >> 16) & 255}.${(j >> 8) & 255}.${j & 255}`;
  });
}

async function measure(fn: () => Promise<void>) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const cpu = process.cpuUsage(cpu0);
  return { wall: performance.now() - t0, cpu: (cpu.user + cpu.system) / 1000 };
}

const cost = (m: { cpu: number; wall: number }) => `CPU ${m.cpu.toFixed(0)} ms, wall ${m.wall.toFixed(0)} ms`;

async function bench(name: string, firewall: Firewall, table: string, sizes: number[]) {
  const rows: Array<[string, string]> = [];
  for (const n of sizes) {
    const list = addresses(n);
    const size = n.toLocaleString('en');
    rows.push([`replace ${size} addresses`, cost(await measure(() => firewall.replace(table, list)))]);
    // A sync that already pushed `list` and now learns that 10 addresses changed.
    const sync = new WhitelistSync({ firewall, table, log: silentLogger, refresh: 3_600_000 });
    sync.update(list);
    await sync.flush();
    const added = addresses(5, n + 1);
    const changes = await measure(async () => {
      sync.change(added, list.slice(0, 5));
      await sync.flush();
    });
    rows.push([`10 changed on ${size}, as changes (the daemon's path)`, cost(changes)]);
    const whole = await measure(async () => {
      sync.update([...list.slice(10), ...added, ...addresses(5, n + 10)]);
      await sync.flush();
    });
    rows.push([`10 changed on ${size}, as a whole list`, cost(whole)]);
    sync.stop();
  }
  printTable(name, rows);
}

/** What the scan spends finding the 10 changes between two whitelists of each size. */
async function scanSide(sizes: number[]) {
  const rows: Array<[string, string]> = [];
  for (const n of sizes) {
    const prev = new Set(addresses(n));
    const next = new Set([...addresses(n - 5, 5), ...addresses(5, n + 1)]);
    const probe = loopProbe();
    const m = await measure(async () => {
      const { add, del } = await whitelistChanges(prev, next, 2_000);
      if (add.length !== 5 || del.length !== 5) throw new Error(`expected 5 and 5, got ${add.length} and ${del.length}`);
    });
    const loop = probe.stop();
    rows.push([`10 changed on ${n.toLocaleString('en')}`, `${cost(m)}, longest block ${ms(loop.longest)}`]);
  }
  printTable('scan: telling the changes from the previous whitelist (2,000 per chunk)', rows);
}

const sizes = quick ? [10_000] : [10_000, 100_000];
await scanSide(sizes);
await withTempDir(async (dir) => {
  const stand = path.join(dir, 'pfctl');
  await fs.writeFile(stand, '#!/bin/sh\ncat > /dev/null\n', { mode: 0o755 });
  await bench('pf backend (pfctl stand-in that reads all of stdin)', pfFirewall({ pfctl: stand }), 'spamd-white', sizes);

  if (process.getuid?.() !== 0) {
    console.log('\nnft backend: skipped (needs root for a network namespace)');
    return;
  }
  if (!existsSync('/usr/sbin/nft')) {
    console.log('\nnft backend: skipped (/usr/sbin/nft is missing: apt-get install nftables)');
    return;
  }
  let nftFirewall: ((o: { nft?: string }) => Firewall) | undefined;
  try {
    ({ nftFirewall } = await import('../src/firewall/nft.js'));
  } catch {
    console.log('\nnft backend: skipped (not built)');
    return;
  }
  const ns = `pfgrey-bench-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['netns', 'exec', ns, '/usr/sbin/nft', '-f', path.join(root, 'pf/linux/pfgrey.nft')]);
    const wrapper = path.join(dir, 'nft');
    await fs.writeFile(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} /usr/sbin/nft "$@"\n`, { mode: 0o755 });
    await bench('nft backend (real nft in a network namespace)', nftFirewall!({ nft: wrapper }), 'spamd-white', sizes);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
});
