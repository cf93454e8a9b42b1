import test from 'ava';
import { parseRunArgs } from '../src/cli/run.js';
import { runCli } from './helpers/cli.js';

const bad: Array<[string[], RegExp]> = [
  [['-c', 'many'], /-c many: not a whole number/],
  [['-c', '0'], /-c 0: too small/],
  [['-s', '11'], /-s 11: too large \(maximum 10\)/],
  [['-S', '91'], /-S 91: too large/],
  [['-p', '70000'], /-p 70000: too large/],
  [['-G', '25:4'], /-G 25:4: expected passtime:greyexp:whiteexp/],
  [['-l', 'localhost.example'], /-l localhost\.example: not an IP address/],
  [['--passtime', '5 minutes'], /--passtime: "5 minutes" is not a duration/],
  [['--scan-interval', '0'], /--scan-interval: "0" must be more than zero/],
  [['--firewall', 'ipfw'], /--firewall ipfw: expected auto, pf, nft or none/],
  [['--nft-table', 'pfgrey'], /--nft-table pfgrey: expected FAMILY NAME, FAMILY one of ip, ip6, inet/],
  [['--firewall', 'nft', '--table', 'spamd+white'], /--table spamd\+white: not an nftables name/],
  [['--table', 'has space'], /--table has space: not a pf table name/],
  [['-B', '900'], /-B 900: larger than maxcon \(-c 800\)/],
  [['-Y', 'lo:0'], /-Y lo:0: multicast TTL 0 is not a number from 1 to 255/],
  [['-Y', 'peer.example:99999'], /-Y peer\.example:99999: port 99999 is not a number from 1 to 65535/],
  [['-Y', '2001:db8::2'], /-Y 2001:db8::2: spamd's sync protocol carries IPv4 only/],
  [['-y', 'no-such-if0'], /-y no-such-if0: neither an IPv4 address nor a network interface/],
  [['-y', '127.0.0.1', '--sync-port', '0'], /--sync-port 0: too small/],
  [['-y', '127.0.0.1', '-Y', '192.0.2.2', '-y', '127.0.0.1'], /-y 127\.0\.0\.1: given twice; give each address or interface once/],
  [['-y', 'lo', '-y', 'lo'], /-y lo: given twice/],
  [['--sync-key', '/etc/mail/spamd.key'], /--sync-key is an option of spamd sync: add -y to receive or -Y to send/],
  [['-b', '-y', '127.0.0.1'], /-y and -Y need the greylisting database, which blacklist-only mode \(-b\) has not/],
  [['-M', 'mx2'], /-M mx2: not an IP address/],
  [['--config-port', '70000'], /--config-port 70000: too large/],
  [['--trapexp', '1 day'], /--trapexp: "1 day" is not a duration/],
  [['-x'], /^pfgrey run: unknown option -x\n/],
  [['-h', 'h'.repeat(256)], /-h arg too long/],
];

for (const [args, message] of bad) {
  test(`pfgrey run ${args.join(' ').slice(0, 40)} fails with one clear line`, async (t) => {
    const r = await runCli(['run', ...args]);
    t.is(r.code, 1);
    t.regex(r.stderr, message);
    t.regex(r.stderr, /^pfgrey run: /);
    t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
  });
}

test('spamd\'s flags keep spamd\'s meanings', (t) => {
  const { config } = parseRunArgs(['-45', '-4', '-b', '-c', '300', '-G', '10:2:100', '-h', 'mx', '-n', 'X', '-l', '0.0.0.0', '-S', '5', '-s', '2', '-p', '2525'], {});
  t.is(config.tarpit.blackCode, 450, 'the last of -4/-5 wins');
  t.true(config.blacklistOnly);
  t.is(config.tarpit.maxCon, 300);
  t.is(config.tarpit.maxBlack, 300, 'blacklist-only mode stutters up to maxcon');
  t.deepEqual(config.times, { passTime: 600_000, greyExpiry: 7_200_000, whiteExpiry: 360_000_000, trapExpiry: 86_400_000 });
  t.is(config.tarpit.hostname, 'mx');
  t.is(config.tarpit.host, '0.0.0.0');
  t.is(config.tarpit.greyStutter, 5000);
  t.is(config.tarpit.stutter, 2000);
  t.is(config.tarpit.port, 2525);
});

test('-y and -Y are repeatable; --sync-port and --sync-key default to spamd\'s', (t) => {
  const { config } = parseRunArgs(['-y', '127.0.0.1', '-y', 'lo', '-Y', '192.0.2.2', '-Y', 'mx2.example:9025', '-Y', 'lo:3',
    '--sync-port', '9026', '--sync-key', '/etc/pfgrey/sync.key'], {});
  t.deepEqual(config.sync, {
    listen: [{ kind: 'address', address: '127.0.0.1' }, { kind: 'interface', name: 'lo' }],
    targets: [{ kind: 'host', host: '192.0.2.2' }, { kind: 'host', host: 'mx2.example', port: 9025 }, { kind: 'interface', name: 'lo', ttl: 3 }],
    port: 9026, keyFile: '/etc/pfgrey/sync.key',
  });
  t.like(parseRunArgs(['-Y', '192.0.2.2'], {}).config.sync, { port: 8025, keyFile: '/etc/mail/spamd.key' });
  t.is(parseRunArgs([], {}).config.sync, undefined);
});

test('defaults are spamd\'s, and -c below 800 works without -B, maxblack following as maxcon − 100', (t) => {
  const d = parseRunArgs([], {}).config;
  t.is(d.tarpit.port, 8025);
  t.is(d.tarpit.host, '127.0.0.1');
  t.is(d.tarpit.maxCon, 800);
  t.is(d.tarpit.maxBlack, 700);
  t.is(d.times.passTime, 25 * 60_000);
  t.is(d.times.greyExpiry, 4 * 3_600_000);
  t.is(d.times.whiteExpiry, 36 * 86_400_000);
  t.is(d.scanInterval, 60_000);
  t.is(d.tarpit.idleTimeout, 400_000);
  t.is(d.table, 'spamd-white');
  t.is(d.configPort, 8026);
  t.is(d.times.trapExpiry, 24 * 3_600_000);
  t.is(d.allowedDomainsFile, '/etc/mail/spamd.alloweddomains');
  t.is(parseRunArgs(['-M', '192.0.2.25'], {}).config.lowPriorityMx, '192.0.2.25');
  t.is(parseRunArgs(['-c', '500'], {}).config.tarpit.maxBlack, 400);
  t.is(parseRunArgs(['-c', '500', '-B', '450'], {}).config.tarpit.maxBlack, 450);
});

test('long options refine -G and take durations down to milliseconds', (t) => {
  const { config } = parseRunArgs(['-G', '1:1:1', '--passtime', '2s', '--whiteexp', '500ms', '--trapexp', '90m'], {});
  t.deepEqual(config.times, { passTime: 2000, greyExpiry: 3_600_000, whiteExpiry: 500, trapExpiry: 5_400_000 });
});

test('--firewall nft takes the nft path, the nftables table and the set name', (t) => {
  const d = parseRunArgs([], {}).config;
  t.is(d.firewall, 'auto');
  t.is(d.nft, '/usr/sbin/nft');
  t.is(d.nftTable, 'inet pfgrey');
  const { config } = parseRunArgs(['--firewall', 'nft', '--nft', '/opt/nft', '--nft-table', 'ip mail', '--table', 'white'], {});
  t.is(config.firewall, 'nft');
  t.is(config.nft, '/opt/nft');
  t.is(config.nftTable, 'ip mail');
  t.is(config.table, 'white');
});

test('PFGREY_DB names the database when --db is absent', (t) => {
  t.is(parseRunArgs([], { PFGREY_DB: '/tmp/x.db' }).config.dbPath, '/tmp/x.db');
  t.is(parseRunArgs(['--db', '/tmp/y.db'], { PFGREY_DB: '/tmp/x.db' }).config.dbPath, '/tmp/y.db');
});

test('an unknown subcommand prints usage and exits 1', async (t) => {
  const r = await runCli(['frobnicate']);
  t.is(r.code, 1);
  t.regex(r.stderr, /unknown command "frobnicate"/);
});
