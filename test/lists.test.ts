import test from 'ava';
import { formatCidr, formatIPv4, parseIPv4 } from '../src/blacklist/cidr.js';
import { parseConfigLine } from '../src/blacklist/config-line.js';
import { BlackLists } from '../src/blacklist/lists.js';
import { isPfgreyError } from '../src/errors.js';

test('a list line makes its addresses match, with the message as received', (t) => {
  const lists = new BlackLists();
  lists.apply(parseConfigLine('nixspam;"Your address %A is listed";inet;2;198.51.100.0/24;203.0.113.9/32'));
  t.deepEqual(lists.lookup('198.51.100.77'), { tags: ['nixspam'], messages: ['"Your address %A is listed"'] });
  t.truthy(lists.lookup('203.0.113.9'));
  for (const miss of ['198.51.99.255', '198.51.101.0', '203.0.113.8', '203.0.113.10', '0.0.0.0', '255.255.255.255']) {
    t.is(lists.lookup(miss), undefined, miss);
  }
  t.is(lists.count('nixspam'), 2);
  t.deepEqual(lists.tags(), ['nixspam']);
});

test('host bits of a block are ignored, as spamd masks them', (t) => {
  const lists = new BlackLists();
  lists.replace('x', '"m"', ['10.1.2.3/8']);
  t.truthy(lists.lookup('10.0.0.0'));
  t.truthy(lists.lookup('10.255.255.255'));
  t.is(lists.lookup('11.0.0.0'), undefined);
});

test('every list holding the address answers, in creation order', (t) => {
  const lists = new BlackLists();
  lists.replace('first', '"one"', ['10.0.0.0/8']);
  lists.replace('second', '"two"', ['192.0.2.0/24']);
  lists.replace('third', '"three"', ['10.1.0.0/16', '192.0.2.7/32']);
  t.deepEqual(lists.lookup('10.1.2.3'), { tags: ['first', 'third'], messages: ['"one"', '"three"'] });
  t.deepEqual(lists.lookup('192.0.2.7'), { tags: ['second', 'third'], messages: ['"two"', '"three"'] });
  t.deepEqual(lists.lookup('10.2.0.0'), { tags: ['first'], messages: ['"one"'] });
});

test('replacing a list keeps its place among the others', (t) => {
  const lists = new BlackLists();
  lists.replace('a', '"a"', ['10.0.0.0/8']);
  lists.replace('b', '"b"', ['10.0.0.0/8']);
  lists.replace('c', '"c"', ['10.0.0.0/8']);
  lists.apply(parseConfigLine('a;"a2";inet;1;10.0.0.0/16'));
  t.deepEqual(lists.tags(), ['a', 'b', 'c']);
  t.deepEqual(lists.lookup('10.0.0.1')?.messages, ['"a2"', '"b"', '"c"']);
  t.deepEqual(lists.lookup('10.1.0.1')?.tags, ['b', 'c'], 'the old addresses of a are gone');
});

test('a bad block leaves the list as it was', (t) => {
  const lists = new BlackLists();
  lists.replace('x', '"old"', ['192.0.2.0/24']);
  for (const bad of ['0.0.0.0/0', '10.0.0.0/33', 'nonsense', '10.0.0.1']) {
    const err = t.throws(() => lists.replace('x', '"new"', ['10.0.0.0/8', bad]));
    t.true(isPfgreyError(err) && err.code === 'E_CONFIG_LINE', bad);
  }
  t.deepEqual(lists.lookup('192.0.2.1'), { tags: ['x'], messages: ['"old"'] });
  t.is(lists.lookup('10.0.0.1'), undefined);
  t.is(lists.count('x'), 1);
});

test('a clear line empties a list but keeps its tag and place; an unknown tag stays unknown', (t) => {
  const lists = new BlackLists();
  lists.replace('a', '"a"', ['10.0.0.0/8']);
  lists.replace('b', '"b"', ['10.0.0.0/8']);
  lists.apply(parseConfigLine('a;'));
  t.deepEqual(lists.tags(), ['a', 'b']);
  t.is(lists.count('a'), 0);
  t.deepEqual(lists.lookup('10.0.0.1')?.tags, ['b']);
  lists.apply(parseConfigLine('zzz;'));
  t.deepEqual(lists.tags(), ['a', 'b']);
  lists.replace('a', '"again"', ['10.0.0.0/8']);
  t.deepEqual(lists.lookup('10.0.0.1')?.tags, ['a', 'b'], 'refilled in its old place');
});

test('remove forgets a list and its place', (t) => {
  const lists = new BlackLists();
  lists.replace('a', '"a"', ['10.0.0.0/8']);
  lists.replace('b', '"b"', ['10.0.0.0/8']);
  lists.remove('a');
  lists.remove('nothing');
  t.deepEqual(lists.tags(), ['b']);
  lists.replace('a', '"a"', ['10.0.0.0/8']);
  t.deepEqual(lists.tags(), ['b', 'a']);
});

test('IPv4-mapped IPv6 addresses are looked up as IPv4; IPv6 lists match IPv6 clients', (t) => {
  const lists = new BlackLists();
  lists.apply(parseConfigLine('x;"m";inet;1;192.0.2.0/24;inet6;2;2001:db8::/32;::1/128'));
  t.deepEqual(lists.lookup('::ffff:192.0.2.9')?.tags, ['x']);
  t.deepEqual(lists.lookup('::FFFF:192.0.2.9')?.tags, ['x']);
  t.is(lists.lookup('::ffff:192.0.3.9'), undefined);
  t.deepEqual(lists.lookup('2001:db8:ffff::1')?.tags, ['x']);
  t.deepEqual(lists.lookup('::1')?.tags, ['x']);
  t.is(lists.lookup('2001:db9::1'), undefined);
  t.is(lists.lookup('::2'), undefined);
  t.is(lists.count('x'), 3);
});

test('addresses that are not IP literals match nothing', (t) => {
  const lists = new BlackLists();
  lists.replace('x', '"m"', ['0.0.0.0/1', '128.0.0.0/1']);
  for (const s of ['', 'localhost', '1.2.3', '1.2.3.4.5', 'fe80::1%eth0']) t.is(lists.lookup(s), undefined, s);
});

test('a list of 300,000 separate ranges answers correctly at its edges and in its gaps', (t) => {
  // Blocks of 4 addresses, 8 apart, sent out of order: every other /30 from 10.0.0.0 on.
  const n = 300_000;
  const base = parseIPv4('10.0.0.0')!;
  const blocks: string[] = [];
  for (let i = 0; i < n; i++) blocks.push(formatCidr({ addr: base + ((i * 7919) % n) * 8, bits: 30 }));
  const lists = new BlackLists();
  lists.replace('big', '"big"', blocks);
  lists.replace('small', '"small"', ['192.0.2.0/24']);
  t.is(lists.count('big'), n);
  let wrong = 0;
  for (let i = 0; i < n; i += 997) {
    const start = base + i * 8;
    for (const [offset, listed] of [[0, true], [3, true], [4, false], [7, false]] as const) {
      if ((lists.lookup(formatIPv4(start + offset)) !== undefined) !== listed) wrong++;
    }
  }
  t.is(wrong, 0);
  t.deepEqual(lists.lookup(formatIPv4(base + (n - 1) * 8 + 3))?.tags, ['big'], 'the last block');
  t.is(lists.lookup(formatIPv4(base + n * 8)), undefined, 'just past it');
  t.is(lists.lookup(formatIPv4(base - 1)), undefined, 'just before the first');
  t.deepEqual(lists.lookup('192.0.2.1')?.tags, ['small']);
});
