import test from 'ava';
import fc from 'fast-check';
import { formatClearLine, formatConfigLine, parseConfigLine } from '../src/blacklist/config-line.js';
import { isPfgreyError } from '../src/errors.js';

// The stock nixspam message as getcap decodes it from spamd.conf: a real newline, then the TAB
// that began the continuation line.
const NIXSPAM_TEXT = 'Your address %A is in the nixspam list\n\tSee http://www.heise.de/ix/nixspam/dnsbl_en/ for details';

test('formats the spec\'s nixspam example byte for byte', (t) => {
  t.is(formatConfigLine('nixspam', NIXSPAM_TEXT, ['198.51.100.0/24', '203.0.113.9/32']),
    'nixspam;"Your address %A is in the nixspam list\\n\tSee http://www.heise.de/ix/nixspam/dnsbl_en/ for details"' +
    ';inet;2;198.51.100.0/24;203.0.113.9/32\n');
});

test('escapes only newlines and double quotes', (t) => {
  t.is(formatConfigLine('x', 'say "hi"\nto %A \\t 100%%', ['10.0.0.0/8']),
    'x;"say \\"hi\\"\\nto %A \\t 100%%";inet;1;10.0.0.0/8\n');
});

test('an empty block list still names its count, as spamd-setup sends it', (t) => {
  t.is(formatConfigLine('x', 'm', []), 'x;"m";inet;0\n');
});

test('IPv6 blocks follow in an inet6 group', (t) => {
  t.is(formatConfigLine('x', 'm', ['10.0.0.0/8', '2001:db8::/32', '192.0.2.1/32']),
    'x;"m";inet;2;10.0.0.0/8;192.0.2.1/32;inet6;1;2001:db8::/32\n');
});

test('a clear line is the tag and a semicolon', (t) => {
  t.is(formatClearLine('nixspam'), 'nixspam;\n');
  t.deepEqual(parseConfigLine('nixspam;'), { kind: 'clear', tag: 'nixspam' });
});

test('tags and messages that could not cross the config port are refused when formatting', (t) => {
  for (const tag of ['', 'a;b', 'a\nb']) {
    const err = t.throws(() => formatConfigLine(tag, 'm', []));
    t.true(isPfgreyError(err) && err.code === 'E_CONFIG_LINE', tag);
  }
  const err = t.throws(() => formatConfigLine('x', 'ends in \\', []));
  t.regex(err?.message ?? '', /backslash/);
});

test('parses the nixspam line, keeping the message as received', (t) => {
  const line = formatConfigLine('nixspam', NIXSPAM_TEXT, ['198.51.100.0/24', '203.0.113.9/32']).slice(0, -1);
  t.deepEqual(parseConfigLine(line), {
    kind: 'list', tag: 'nixspam',
    message: '"Your address %A is in the nixspam list\\n\tSee http://www.heise.de/ix/nixspam/dnsbl_en/ for details"',
    v4: ['198.51.100.0/24', '203.0.113.9/32'], v6: [],
  });
});

test('parses both families in either order, and skips empty tokens between groups', (t) => {
  t.deepEqual(parseConfigLine('t;"m";inet6;1;2001:db8::/32;;inet;1;10.0.0.0/8;'), {
    kind: 'list', tag: 't', message: '"m"', v4: ['10.0.0.0/8'], v6: ['2001:db8::/32'],
  });
  t.deepEqual(parseConfigLine('t;"a \\"quoted\\" ; word";inet;1;192.0.2.1/32'), {
    kind: 'list', tag: 't', message: '"a \\"quoted\\" ; word"', v4: ['192.0.2.1/32'], v6: [],
  });
  t.deepEqual(parseConfigLine('t;"m";inet;0;inet6;1;::1/128'), {
    kind: 'list', tag: 't', message: '"m"', v4: [], v6: ['::1/128'],
  });
});

const REJECTED: Array<[string, string, RegExp]> = [
  ['no semicolon', 'nixspam', /no ";" after the tag/],
  ['empty tag', ';"m";inet;1;10.0.0.0/8', /empty tag/],
  ['unquoted message', 't;m;inet;1;10.0.0.0/8', /must start with/],
  ['unterminated message', 't;"m;inet;1;10.0.0.0/8', /no closing quote/],
  ['escaped last quote', 't;"m\\";inet;1;10.0.0.0/8', /no closing quote/],
  ['quote not followed by ;', 't;"m"x;inet;1;10.0.0.0/8', /followed by ";"/],
  ['quote at the end', 't;"m"', /followed by ";"/],
  ['unknown family', 't;"m";inet4;1;10.0.0.0/8', /unknown address family "inet4"/],
  ['old format', 't;"m";10.0.0.0/8;192.0.2.1/32', /old \(before 2015\) line format/],
  ['missing count', 't;"m";inet', /no address count after "inet"/],
  ['bad count', 't;"m";inet;two;10.0.0.0/8', /bad address count "two"/],
  ['negative count', 't;"m";inet;-1;10.0.0.0/8', /bad address count/],
  ['count too large', 't;"m";inet;4294967296;10.0.0.0/8', /bad address count/],
  ['fewer addresses', 't;"m";inet;3;10.0.0.0/8;192.0.2.1/32', /announces 3 addresses but only 2 follow/],
  ['more addresses', 't;"m";inet;1;10.0.0.0/8;192.0.2.1/32', /more addresses than announced/],
  ['repeated family', 't;"m";inet;1;10.0.0.0/8;inet;1;192.0.2.1/32', /"inet" appears twice/],
  ['repeated inet6', 't;"m";inet6;1;::1/128;inet6;1;::2/128', /"inet6" appears twice/],
  ['no addresses', 't;"m";inet;0', /no addresses/],
  ['no groups', 't;"m";', /no addresses/],
  ['empty address', 't;"m";inet;2;10.0.0.0/8;', /address 2 of "inet" is empty/],
  ['bad address', 't;"m";inet;1;10.0.0.256/32', /bad inet address "10\.0\.0\.256\/32"/],
  ['v6 in inet', 't;"m";inet;1;::1/128', /bad inet address/],
  ['v4 in inet6', 't;"m";inet6;1;10.0.0.0/8', /bad inet6 address/],
  ['no mask', 't;"m";inet;1;10.0.0.1', /has no \/mask/],
  ['mask 0', 't;"m";inet;1;0.0.0.0/0', /mask 0/],
  ['mask 0 in inet6', 't;"m";inet6;1;::/0', /mask 0/],
  ['mask too large', 't;"m";inet;1;10.0.0.0/33', /bad inet address/],
  ['v6 mask too large', 't;"m";inet6;1;::1/129', /bad inet6 address/],
];

for (const [what, line, reason] of REJECTED) {
  test(`rejects a line with ${what}`, (t) => {
    const err = t.throws(() => parseConfigLine(line));
    t.true(isPfgreyError(err) && err.code === 'E_CONFIG_LINE');
    t.regex(err?.message ?? '', reason);
  });
}

test('whatever setup formats, the daemon parses back', (t) => {
  const octet = fc.integer({ min: 0, max: 255 });
  const cidr = fc.tuple(octet, octet, octet, octet, fc.integer({ min: 1, max: 32 })).map(([a, b, c, d, n]) => `${a}.${b}.${c}.${d}/${n}`);
  // Any text without backslashes: those pass through to spamd's renderer unescaped (see above).
  const message = fc.string({ unit: fc.constantFrom('a', 'Z', ' ', '\t', '\n', '"', ';', ':', '%', 'A', 'é', '\u00ff'), maxLength: 40 });
  const tag = fc.string({ unit: fc.constantFrom('a', 'b', '-', '_', '.', '1'), minLength: 1, maxLength: 10 });
  fc.assert(fc.property(tag, message, fc.array(cidr, { minLength: 1, maxLength: 20 }), (tg, msg, cidrs) => {
    const line = formatConfigLine(tg, msg, cidrs);
    t.true(line.endsWith('\n') && line.indexOf('\n') === line.length - 1, 'one line');
    const parsed = parseConfigLine(line.slice(0, -1));
    const escaped = msg.replace(/\n/g, '\\n').replace(/"/g, '\\"');
    t.deepEqual(parsed, { kind: 'list', tag: tg, message: `"${escaped}"`, v4: cidrs, v6: [] });
  }));
});
