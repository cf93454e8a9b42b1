import test from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSpamdConf, readSpamdConf } from '../src/blacklist/spamd-conf.js';
import { isPfgreyError } from '../src/errors.js';

/** .build/test → test/fixtures */
const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures');

const NIXSPAM_MSG = 'Your address %A is in the nixspam list\n\tSee http://www.heise.de/ix/nixspam/dnsbl_en/ for details';

test('reads the stock OpenBSD spamd.conf', async (t) => {
  t.deepEqual(await readSpamdConf(path.join(FIXTURES, 'spamd.conf')), [{
    name: 'nixspam', kind: 'black', message: NIXSPAM_MSG, method: 'https',
    file: 'www.openbsd.org/spamd/nixspam.gz', line: 26,
  }]);
});

test('reads the 2007 spamd.conf with its four lists, in the order of "all"', async (t) => {
  const lists = await readSpamdConf(path.join(FIXTURES, 'spamd-2007.conf'));
  t.deepEqual(lists.map((l) => [l.name, l.kind, l.method, l.file]), [
    ['uatraps', 'black', 'http', 'www.openbsd.org/spamd/traplist.gz'],
    ['nixspam', 'black', 'http', 'www.openbsd.org/spamd/nixspam.gz'],
    ['china', 'black', 'http', 'www.openbsd.org/spamd/chinacidr.txt.gz'],
    ['korea', 'black', 'http', 'www.openbsd.org/spamd/koreacidr.txt.gz'],
  ]);
  t.is(lists[0]!.message, 'Your address %A has sent mail to a ualberta.ca spamtrap\n\twithin the last 24 hours');
  t.is(lists[2]!.message, 'SPAM. Your address %A appears to be from China\n\tSee http://www.okean.com/asianspamblocks.html for more details');
});

test('getcap escapes are decoded and quoted colons kept', (t) => {
  const conf = [
    'all:a:w:',
    'a:black:msg="one\\ttwo\\nthree: \\"q\\" \\\\ \\101\\0 ^G \\E \\c \\x":method=file:file=/tmp/a\\072b:',
    'w:white:file=/tmp/w:',
    '',
  ].join('\n');
  const [a, w] = parseSpamdConf(conf, 'x.conf');
  t.is(a!.message, 'one\ttwo\nthree: "q" \\ A\0 \x07 \x1b : x');
  t.is(a!.file, '/tmp/a:b');
  t.deepEqual(w, { name: 'w', kind: 'white', method: 'file', file: '/tmp/w', line: 3 });
});

test('a msg that is not quoted names a message file; method defaults to file', (t) => {
  const [a] = parseSpamdConf('all:a:\na:black:msg=/etc/mail/msg.txt:file=/tmp/list:\n', 'x.conf');
  t.deepEqual(a, { name: 'a', kind: 'black', messageFile: '/etc/mail/msg.txt', method: 'file', file: '/tmp/list', line: 2 });
});

test('names in "all" may be separated by colons, spaces and tabs; aliases and tc= work', (t) => {
  const conf = [
    '# a comment \\',
    'this line belongs to the comment',
    'all:one two\tthree:',
    'common:method=exec:file=/bin/echo 1.2.3.4:',
    'one|uno:black:msg="1":tc=common:',
    'two:black:msg="2":method@:tc=common:',
    'three:white:file=/x:tc=common:',
    'one:black:msg="shadowed":file=/y:',
    '',
  ].join('\n');
  const lists = parseSpamdConf(conf, 'x.conf');
  t.deepEqual(lists.map((l) => [l.name, l.kind, l.method, l.file, l.line]), [
    ['one', 'black', 'exec', '/bin/echo 1.2.3.4', 5],
    ['two', 'black', 'file', '/bin/echo 1.2.3.4', 6],
    ['three', 'white', 'exec', '/x', 7],
  ]);
});

test('a record on a last line without a newline still counts', (t) => {
  t.is(parseSpamdConf('all:a:\na:white:file=/f:', 'x.conf').length, 1);
});

test('an empty "all" names no lists', (t) => {
  t.deepEqual(parseSpamdConf('all:\n', 'x.conf'), []);
});

const BROKEN: Array<[string, string, string]> = [
  ['no all record', '# nothing\nfoo:black:\n', 'x.conf: Can\'t find "all" in spamd config'],
  ['a commented-out all record', '#all:foo:\n', 'x.conf: Can\'t find "all" in spamd config'],
  ['a list missing', '\n\nall:\\\n\t:nixspam:\n', 'x.conf:3: Can\'t find "nixspam" in spamd config'],
  ['neither black nor white', 'all:a:\n\na:\\\n\t:msg="m":file=/f:\n', 'x.conf:3: Must have "black" or "white" in a'],
  ['black cancelled by black@', 'all:a:\na:black@:black:msg="m":file=/f:\n', 'x.conf:2: Must have "black" or "white" in a'],
  ['a blacklist without msg', 'all:a:\na:black:file=/f:\n', 'x.conf:2: No msg for blacklist "a"'],
  ['an unknown method', 'all:a:\na:black:msg="m":method=gopher:file=/f:\n',
    'x.conf:2: Unknown method gopher for list a (use file, http, https, ftp or exec)'],
  ['a blacklist without file', 'all:a:\na:black:msg="m":\n', 'x.conf:2: No file given for blacklist a'],
  ['a whitelist without file', 'all:a:\na:white:\n', 'x.conf:2: No file given for whitelist a'],
  ['a tc= to nowhere', 'all:a:\na:black:msg="m":tc=gone:\n', 'x.conf:2: Can\'t find "gone" in spamd config (named by tc= in a)'],
  ['a tc= loop', 'all:a:\na:black:tc=b:\nb:tc=a:\n', 'x.conf:2: tc= references nest deeper than 32 from "a": a loop?'],
  ['a name with a semicolon', 'all:a;b:\na;b:white:file=/f:\n', 'x.conf:2: list name "a;b" holds ";", which a config-port line cannot carry'],
];

for (const [what, conf, message] of BROKEN) {
  test(`a spamd.conf with ${what} is refused with its line`, (t) => {
    const err = t.throws(() => parseSpamdConf(conf, 'x.conf'));
    t.true(isPfgreyError(err) && err.code === 'E_SPAMD_CONF');
    t.is(err?.message, message);
  });
}

test('broken copies of the stock file name the line where the nixspam record starts', async (t) => {
  const stock = await fs.readFile(path.join(FIXTURES, 'spamd.conf'), 'latin1');
  const variants: Array<[string, string]> = [
    [stock.replace(/\t:msg=.*\n.*\n/, ''), 'No msg for blacklist "nixspam"'],
    [stock.replace(':method=https:', ':method=gopher:'), 'Unknown method gopher for list nixspam (use file, http, https, ftp or exec)'],
    [stock.replace('\t:black:\\\n', ''), 'Must have "black" or "white" in nixspam'],
    [stock.replace(/\t:file=.*\n/, '\t:\n'), 'No file given for blacklist nixspam'],
  ];
  for (const [text, message] of variants) {
    t.not(text, stock);
    const err = t.throws(() => parseSpamdConf(text, '/etc/mail/spamd.conf'));
    t.is(err?.message, `/etc/mail/spamd.conf:26: ${message}`);
  }
  const renamed = stock.replace('\t:nixspam:', '\t:nixspam:spamhaus:');
  t.is(t.throws(() => parseSpamdConf(renamed, 'spamd.conf'))?.message, 'spamd.conf:21: Can\'t find "spamhaus" in spamd config');
});

test('a missing spamd.conf is one clear error', async (t) => {
  const err = await t.throwsAsync(readSpamdConf('/nonexistent/spamd.conf'));
  t.true(isPfgreyError(err) && err.code === 'E_SPAMD_CONF');
  t.is(err?.message, 'cannot read /nonexistent/spamd.conf: no such file');
});
