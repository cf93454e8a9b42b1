// Store.chunks, the scan's walk, on every backend: pages of the asked size in key order, each
// key exactly once, whatever the table's size.

import test from 'ava';
import { greyKey } from '../src/grey/entry.js';
import type { Entry } from '../src/store/types.js';
import { backends } from './helpers/backends.js';

for (const [name, open] of Object.entries(backends)) {
  test(`${name}: chunks pages through 5,000 entries in key order, each key exactly once`, async (t) => {
    const s = await open(t);
    const keys: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const ip = `10.${i >> 8}.${i & 255}.1`;
      const e: Entry = { key: i % 2 ? ip : greyKey(ip, 'mx.example', '<a@example.org>', `<r${i}@us.example>`), first: i, pass: 2, expire: 3, bcount: 1, pcount: 0 };
      keys.push(e.key);
      s.put(e);
    }
    await s.flush();
    const sizes = async (size: number) => {
      const out: Entry[][] = [];
      for await (const c of s.chunks(size)) out.push(c);
      return out;
    };
    const chunks = await sizes(777);
    t.deepEqual(chunks.map((c) => c.length), [777, 777, 777, 777, 777, 777, 338]);
    t.deepEqual(chunks.flat().map((e) => e.key), [...keys].sort());
    t.deepEqual((await sizes(5000)).map((c) => c.length), [5000]);
  });
}
