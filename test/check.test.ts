// `pfgrey check` as a command: the loaded rules through a pfctl stand-in with canned output,
// pf.conf files, and the system facts (pfctl, the pf device, fdescfs, the user, the database
// directory, the ports) from files and sockets the test sets up. Nothing reads the real
// /etc/pf.conf, /etc/passwd or /etc/services, and every port is one the test chose.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkSystem, exitStatus, formatFinding, type CheckOptions } from '../src/check/checks.js';
import type { SystemFacts } from '../src/check/facts.js';
import { CHECK_USAGE } from '../src/cli/check.js';
import { cannedPfctl, type CannedAnswer } from './helpers/canned-pfctl.js';
import { check } from './helpers/check.js';
import { runCli } from './helpers/cli.js';
import { tempDir, testDaemon } from './helpers/daemon.js';
import { helpText } from '../src/cli/args.js';

/** .build/test → test/fixtures/pf */
const PF = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/pf');
const UID = process.getuid!();
const GID = process.getgid!();
/** The sandbox's _pfgrey: the test's own uid, unless that is root, which pfgrey run refuses. */
const USER_UID = UID === 0 ? 4242 : UID;
const USER_GID = UID === 0 ? 4242 : GID;

interface Sandbox {
  dir: string;
  pfctl: string;
  device: string;
  dbDir: string;
  tarpitPort: number;
  configPort: number;
  args: string[];
  /** The system lines of a sandbox where all is well, for --os openbsd, as root. */
  systemOk: string[];
  /** A fixture pf.conf copied into the sandbox, its tarpit port (8025, spamd) made `port` (this sandbox's). */
  conf(name: string, port?: number): Promise<string>;
  /**
   * Makes the pfctl stand-in answer -si, -sr, -sn (or fail it), -vsT and `-t TABLE -T show`
   * from a fixture directory, its tarpit port made this sandbox's.
   */
  serve(name: string, tables: string[], opts?: { sn?: boolean }): Promise<void>;
  calls(): Promise<string[]>;
}

/** Two ports nothing listens on (as far as one can know). */
async function freePorts(): Promise<[number, number]> {
  const servers = [net.createServer(), net.createServer()];
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return [ports[0]!, ports[1]!];
}

const fixture = (...p: string[]) => path.join(PF, ...p);

/**
 * A directory with a pf device stand-in, a password file naming _pfgrey (USER_UID), a database
 * directory _pfgrey owns, a pfctl stand-in and two free ports.
 */
async function sandbox(t: ExecutionContext): Promise<Sandbox> {
  const dir = await tempDir(t, 'pfgrey-check-');
  await fs.chmod(dir, 0o755);
  let pfctl = await cannedPfctl(dir, {});
  const device = path.join(dir, 'pf');
  await fs.writeFile(device, '', { mode: 0o600 });
  const passwd = path.join(dir, 'passwd');
  await fs.writeFile(passwd, `root:*:0:0:Charlie &:/root:/bin/sh\n_pfgrey:*:${USER_UID}:${USER_GID}:pfgrey:/var/empty:/sbin/nologin\n`);
  const dbDir = path.join(dir, 'db');
  await fs.mkdir(dbDir, { mode: 0o750 });
  if (UID === 0) await fs.chown(dbDir, USER_UID, USER_GID);
  const [tarpitPort, configPort] = await freePorts();
  const copy = async (from: string, to: string, port = tarpitPort) => {
    const text = await fs.readFile(from, 'utf8');
    await fs.writeFile(to, text.replace(/port (8025|spamd)\b/g, `port ${port}`));
    return to;
  };
  return {
    dir, pfctl: pfctl.path, device, dbDir, tarpitPort, configPort,
    args: [
      '--pfctl', pfctl.path, '--pf-device', device, '--passwd', passwd, '--services', fixture('services'),
      '--db', path.join(dbDir, 'pfgrey.db'), '-p', String(tarpitPort), '--config-port', String(configPort), '--os', 'openbsd',
    ],
    systemOk: [
      `ok: ${pfctl.path} is executable`,
      `ok: ${device} opens read-write`,
      `ok: user _pfgrey exists (uid ${USER_UID}, gid ${USER_GID})`,
      `ok: ${dbDir} is writable by _pfgrey`,
      `ok: 127.0.0.1:${tarpitPort} is free for the tarpit (-p)`,
      `ok: 127.0.0.1:${configPort} is free for the config port (--config-port)`,
    ],
    conf: (name, port) => copy(fixture(name), path.join(dir, name), port),
    async serve(name, tables, opts = {}) {
      const canned = path.join(dir, 'canned');
      await fs.mkdir(canned, { recursive: true });
      const file = (f: string) => copy(fixture(name, f), path.join(canned, f));
      const answers: Record<string, CannedAnswer> = {
        '-si': { stdoutFile: await file('si') },
        '-sr': { stdoutFile: await file('sr') },
        '-sn': opts.sn === false ? { stderr: "pfctl: Unknown show modifier 'nat'", status: 1 } : { stdoutFile: await file('sn') },
        '-vsT': { stdoutFile: await file('vsT') },
      };
      for (const table of tables) answers[`-t ${table} -T show`] = { stdoutFile: await file(table) };
      pfctl = await cannedPfctl(dir, answers);
    },
    calls: () => pfctl.calls(),
  };
}


const SEED = '<spamd-mywhite> is never filled: pfgrey fills <spamd-white> (and <spamd> with pfgrey setup -b), and';
const NO_EXEMPTION = 'no rule exempts <spamd-white> from this redirect, so whitelisted hosts are tarpitted again and their mail never reaches the MTA';

test('a correct OpenBSD pf.conf on a ready system gives only ok lines and exit 0', async (t) => {
  const s = await sandbox(t);
  const conf = await s.conf('openbsd-divert.conf');
  t.deepEqual(await check([...s.args, '--pf-conf', conf]), {
    lines: [
      `ok: ${conf}:6: table <spamd-white> is persist`,
      `ok: ${conf}:8: smtp goes to the tarpit 127.0.0.1 port ${s.tarpitPort} (divert-to)`,
      `ok: ${conf}:10: smtp from <spamd-white> reaches the MTA`,
      ...s.systemOk,
    ],
    stderr: '',
    status: 0,
  });
  t.deepEqual(await s.calls(), [], 'pfctl is not run when a file is checked');
});

test('loaded OpenBSD rules are read with pfctl -si -sr -sn -vsT and -T show, as argument vectors', async (t) => {
  const s = await sandbox(t);
  await s.serve('loaded-openbsd', ['nospamd'], { sn: false });
  const rule = (text: string) => `rule "${text.replace('8025', String(s.tarpitPort))}"`;
  t.deepEqual(await check(s.args), {
    lines: [
      'ok: pfctl -vsT: table <spamd-white> is persist (flags -pa-r--)',
      `ok: ${rule('pass in on egress inet proto tcp from any to any port = 25 flags S/SA divert-to 127.0.0.1 port 8025')}: smtp goes to the tarpit 127.0.0.1 port ${s.tarpitPort} (divert-to)`,
      `ok: ${rule('pass in log on egress inet proto tcp from <spamd-white> to any port = 25 flags S/SA')}: smtp from <spamd-white> reaches the MTA`,
      ...s.systemOk,
    ],
    stderr: '',
    status: 0,
  });
  t.deepEqual(await s.calls(), ['-si', '-sr', '-sn', '-vsT', '-t nospamd -T show']);
});

test('the seed mistake in loaded FreeBSD rules: errors at the no rdr, pass and rdr rules, exit 1', async (t) => {
  const s = await sandbox(t);
  await s.serve('loaded-freebsd-seed', ['spamd-mywhite']);
  const noRdr = 'rule "no rdr inet proto tcp from <spamd-mywhite> to any port = smtp"';
  const pass = 'rule "pass in on em0 inet proto tcp from <spamd-mywhite> to any port = smtp flags S/SA keep state"';
  const rdr = `rule "rdr pass on em0 inet proto tcp from any to any port = smtp -> 127.0.0.1 port ${s.tarpitPort}"`;
  const empty = 'it holds no address (pfctl -t spamd-mywhite -T show); did you mean <spamd-white>?';
  const r = await check([...s.args, '--os', 'freebsd', '--mounts', fixture('mount-p-fdescfs.txt')]);
  t.deepEqual(r.lines, [
    'ok: pfctl -vsT: table <spamd-white> is persist (flags -pa----)',
    `error: ${noRdr}: ${SEED} ${empty}`,
    `error: ${pass}: ${SEED} ${empty}`,
    `ok: ${rdr}: smtp goes to the tarpit 127.0.0.1 port ${s.tarpitPort} (rdr)`,
    `error: ${rdr}: ${NO_EXEMPTION} ("no rdr inet proto tcp from <spamd-mywhite> to any port = smtp" exempts <spamd-mywhite> instead); add before it: no rdr inet proto tcp from <spamd-white> to any port smtp`,
    ...s.systemOk.slice(0, 2),
    'ok: fdescfs is mounted on /dev/fd',
    ...s.systemOk.slice(2),
  ]);
  t.is(r.status, 1);
  t.deepEqual(await s.calls(), ['-si', '-sr', '-sn', '-vsT', '-t spamd-mywhite -T show']);
});

test('the seed mistake in a FreeBSD pf.conf names file:line and exits 1', async (t) => {
  const s = await sandbox(t);
  const conf = await s.conf('seed-freebsd.conf');
  const r = await check([...s.args, '--os', 'freebsd', '--mounts', fixture('mount-p-fdescfs.txt'), '--pf-conf', conf]);
  const declared = `${conf} declares it without file "…" or { addresses }; did you mean <spamd-white>?`;
  t.deepEqual(r.lines.slice(0, 4), [
    `error: ${conf}:4: ${SEED} ${declared}`,
    `error: ${conf}:6: ${SEED} ${declared}`,
    `ok: ${conf}:5: smtp goes to the tarpit 127.0.0.1 port ${s.tarpitPort} (rdr)`,
    `error: ${conf}:5: ${NO_EXEMPTION} (line 4 exempts <spamd-mywhite> instead); add before it: no rdr inet proto tcp from <spamd-white> to any port smtp`,
  ]);
  t.is(r.status, 1);
});

test('FreeBSD without fdescfs on /dev/fd is an error, even with correct rules', async (t) => {
  const s = await sandbox(t);
  const conf = await s.conf('freebsd-rdr.conf');
  const r = await check([...s.args, '--os', 'freebsd', '--mounts', fixture('mount-p-no-fdescfs.txt'), '--pf-conf', conf]);
  t.deepEqual(r.lines.filter((l) => l.includes('fdescfs')), [
    `error: fdescfs is not mounted on /dev/fd, so pfctl cannot open /dev/fd/3 (the ${s.device} pfgrey hands it) and <spamd-white> stays empty; mount -t fdescfs fdesc /dev/fd, and add "fdesc /dev/fd fdescfs rw 0 0" to /etc/fstab`,
  ]);
  t.is(r.lines.filter((l) => l.startsWith('error:')).length, 1);
  t.is(r.status, 1);
});

test('FreeBSD with fdescfs mounted on /dev/fd and correct rules exits 0', async (t) => {
  const s = await sandbox(t);
  const conf = await s.conf('freebsd-rdr.conf');
  const r = await check([...s.args, '--os', 'freebsd', '--mounts', fixture('mount-p-fdescfs.txt'), '--pf-conf', conf]);
  t.deepEqual(r.lines, [
    `ok: ${conf}:4: table <spamd-white> is persist`,
    `ok: ${conf}:9: smtp goes to the tarpit 127.0.0.1 port ${s.tarpitPort} (rdr)`,
    `ok: ${conf}:7: smtp from <spamd-white> reaches the MTA`,
    ...s.systemOk.slice(0, 2),
    'ok: fdescfs is mounted on /dev/fd',
    ...s.systemOk.slice(2),
  ]);
  t.is(r.status, 0);
});

test('fdescfs is not checked on OpenBSD, whose /dev/fd always has every descriptor', async (t) => {
  const s = await sandbox(t);
  const r = await check([...s.args, '--pf-conf', await s.conf('openbsd-divert.conf'), '--mounts', fixture('mount-p-no-fdescfs.txt')]);
  t.false(r.lines.some((l) => l.includes('fdescfs')));
  t.is(r.status, 0);
});

test('a missing user is an error with the command that creates it on each OS', async (t) => {
  const s = await sandbox(t);
  const conf = await s.conf('openbsd-divert.conf');
  const passwd = path.join(s.dir, 'passwd');
  const expected: Record<string, string> = {
    openbsd: 'useradd -g =uid -L daemon -c pfgrey -d /var/empty -s /sbin/nologin _spamgrey',
    freebsd: 'pw useradd _spamgrey -c pfgrey -d /nonexistent -s /usr/sbin/nologin',
    linux: 'useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin _spamgrey',
  };
  for (const os of ['openbsd', 'freebsd', 'linux']) {
    const r = await check([...s.args, '--pf-conf', conf, '--user', '_spamgrey', '--os', os, '--mounts', fixture('mount-p-fdescfs.txt')]);
    t.deepEqual(r.lines.filter((l) => l.includes('_spamgrey')), [
      `error: user _spamgrey does not exist (${passwd}): pfgrey run, started as root, switches to it; create it: ${expected[os]}`,
    ]);
    t.false(r.lines.some((l) => l.includes(s.dbDir)), 'the directory is not judged for a user that does not exist');
    t.is(r.status, 1);
  }
});

/** A password file in the sandbox naming _pfgrey with the given uid and gid (by default, another's than the sandbox's). */
async function userIs(s: Sandbox, uid = USER_UID + 1000, gid = USER_GID + 1000): Promise<string[]> {
  const passwd = path.join(s.dir, 'passwd-other');
  await fs.writeFile(passwd, `_pfgrey:*:${uid}:${gid}::0:0:pfgrey:/var/empty:/sbin/nologin\n`);
  return [...s.args, '--passwd', passwd, '--pf-conf', await s.conf('openbsd-divert.conf')];
}

test('a database directory the user cannot write is an error with the install -d that fixes it', async (t) => {
  const s = await sandbox(t);
  await fs.chmod(s.dbDir, 0o755);
  const r = await check(await userIs(s));
  t.deepEqual(r.lines.filter((l) => l.includes(s.dbDir)), [
    `error: ${s.dbDir} is not writable by _pfgrey (owner ${USER_UID}:${USER_GID}, mode 0755), so pfgrey run cannot create pfgrey.db and its journal there; install -d -o _pfgrey -g _pfgrey -m 0750 ${s.dbDir}`,
  ]);
  t.is(r.status, 1);
});

test('the default database directory /var/db, shared and root\'s, gets a directory of its own', (t) => {
  const facts: SystemFacts = {
    euid: 0, pfDevice: 'ok', user: { name: '_pfgrey', uid: 912, gid: 912 }, passwdFile: '/etc/passwd',
    db: { dir: '/var/db', dirMode: { uid: 0, gid: 0, mode: 0o755 }, ancestors: [{ path: '/', mode: { uid: 0, gid: 0, mode: 0o755 } }] },
    tarpitPort: { state: 'free' }, configPort: { state: 'free' },
  };
  const opts: CheckOptions = {
    table: 'spamd-white', blackTable: 'spamd', listen: '127.0.0.1', port: 8025, configPort: 8026, user: '_pfgrey',
    dbPath: '/var/db/pfgrey.db', os: 'openbsd', pfctl: '/sbin/pfctl', pfDevice: '/dev/pf',
  };
  const findings = checkSystem(facts, opts);
  t.deepEqual(findings.map(formatFinding).filter((l) => l.includes('/var/db')), [
    'error: /var/db is not writable by _pfgrey (owner 0:0, mode 0755), so pfgrey run cannot create pfgrey.db and its journal there; keep the database in a directory of its own: install -d -o _pfgrey -g _pfgrey -m 0750 /var/db/pfgrey, and pfgrey run --db /var/db/pfgrey/pfgrey.db',
  ]);
  t.is(exitStatus(findings), 1);
});

test('a user with uid 0 is an error: pfgrey run refuses to switch to root', async (t) => {
  const s = await sandbox(t);
  const r = await check(await userIs(s, 0, 0));
  t.deepEqual(r.lines.filter((l) => l.includes('_pfgrey')), [
    'error: user _pfgrey has uid 0: pfgrey run refuses to switch to root; name an unprivileged user with --user',
  ]);
  t.is(r.status, 1);
});

test('a database directory that does not exist is an error with the install -d that creates it', async (t) => {
  const s = await sandbox(t);
  const dir = path.join(s.dir, 'var-db-pfgrey');
  const r = await check([...s.args, '--pf-conf', await s.conf('openbsd-divert.conf'), '--db', path.join(dir, 'grey.db')]);
  t.deepEqual(r.lines.filter((l) => l.includes(dir)), [
    `error: ${dir} does not exist, so pfgrey run cannot create grey.db; create it: install -d -o _pfgrey -g _pfgrey -m 0750 ${dir}`,
  ]);
  t.is(r.status, 1);
});

test('a database file of root\'s is fine (pfgrey run hands it over); a parent the user cannot enter is not', async (t) => {
  const s = await sandbox(t);
  const db = path.join(s.dbDir, 'pfgrey.db');
  await fs.writeFile(db, '', { mode: 0o600 });
  const r = await check(s.args);
  t.true(r.lines.includes(`ok: ${s.dbDir} is writable by _pfgrey`));

  const locked = path.join(s.dir, 'locked');
  await fs.mkdir(path.join(locked, 'db'), { recursive: true });
  await fs.chmod(locked, 0o700);
  const r2 = await check([...await userIs(s), '--db', path.join(locked, 'db', 'pfgrey.db')]);
  t.deepEqual(r2.lines.filter((l) => l.includes(locked)), [
    `error: ${locked} is not searchable by _pfgrey (owner ${UID}:${GID}, mode 0700), so pfgrey run cannot reach ${locked}/db; chmod a+x ${locked}, or keep the database elsewhere (--db)`,
  ]);
  t.is(r2.status, 1);
});

/** Listens on 127.0.0.1:port until the test ends; `greeting` is sent to each client. */
async function occupy(t: ExecutionContext, port: number, greeting?: string): Promise<void> {
  const server = net.createServer((c) => {
    c.on('error', () => {});
    if (greeting !== undefined) c.write(greeting);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  t.teardown(() => new Promise<void>((r) => {
    server.close(() => r());
  }));
}

test('a tarpit port taken by another program is an error naming it and how to find the program', async (t) => {
  const s = await sandbox(t);
  await occupy(t, s.tarpitPort);
  const args = [...s.args, '--pf-conf', await s.conf('openbsd-divert.conf')];
  const hints: Record<string, string> = {
    openbsd: `fstat | grep ':${s.tarpitPort}'`,
    freebsd: `sockstat -4l | grep ':${s.tarpitPort}'`,
    linux: `ss -ltnp | grep ':${s.tarpitPort}'`,
  };
  for (const os of ['openbsd', 'freebsd', 'linux']) {
    const r = await check([...args, '--os', os, '--mounts', fixture('mount-p-fdescfs.txt')]);
    t.deepEqual(r.lines.filter((l) => l.includes(`:${s.tarpitPort}`)), [
      `error: 127.0.0.1:${s.tarpitPort} is taken by another program, so pfgrey run cannot listen there (-p); find it: ${hints[os]}`,
    ]);
    t.is(r.status, 1);
  }
});

test('a config port taken by another program is an error', async (t) => {
  const s = await sandbox(t);
  await occupy(t, s.configPort);
  const r = await check([...s.args, '--pf-conf', await s.conf('openbsd-divert.conf')]);
  t.deepEqual(r.lines.slice(-2), [
    `ok: 127.0.0.1:${s.tarpitPort} is free for the tarpit (-p)`,
    `error: 127.0.0.1:${s.configPort} is taken by another program, so pfgrey run cannot listen there (--config-port); find it: fstat | grep ':${s.configPort}'`,
  ]);
  t.is(r.status, 1);
});

test('a running pfgrey on the ports (stuttered 220 greeting) is a warning, not an error: exit 0', async (t) => {
  const s = await sandbox(t);
  const { port, daemon } = await testDaemon(t);
  const configPort = daemon.configAddress.port;
  const conf = await s.conf('openbsd-divert.conf', port);
  const r = await check([...s.args, '--pf-conf', conf, '-p', String(port), '--config-port', String(configPort)], { bannerWait: 8000 });
  t.deepEqual(r.lines, [
    `ok: ${conf}:6: table <spamd-white> is persist`,
    `ok: ${conf}:8: smtp goes to the tarpit 127.0.0.1 port ${port} (divert-to)`,
    `ok: ${conf}:10: smtp from <spamd-white> reaches the MTA`,
    ...s.systemOk.slice(0, 4),
    `warning: 127.0.0.1:${port} is taken by an SMTP server (it answered 220): pfgrey or spamd already runs; fine if it is this pfgrey, otherwise stop it before pfgrey run`,
    `warning: 127.0.0.1:${configPort} is taken, presumably by the pfgrey or spamd that answers on port ${port}; fine if it is this pfgrey`,
  ]);
  t.is(r.status, 0);
});

test('a listener that greets with something else than 220 is not taken for pfgrey', async (t) => {
  const s = await sandbox(t);
  await occupy(t, s.tarpitPort, 'SSH-2.0-OpenSSH_9.6\r\n');
  const r = await check([...s.args, '--pf-conf', await s.conf('openbsd-divert.conf')]);
  t.true(r.lines.includes(`error: 127.0.0.1:${s.tarpitPort} is taken by another program, so pfgrey run cannot listen there (-p); find it: fstat | grep ':${s.tarpitPort}'`));
});

test('an -l address this host does not have is an error', async (t) => {
  const s = await sandbox(t);
  const r = await check([...s.args, '--pf-conf', await s.conf('openbsd-divert.conf'), '-l', '192.0.2.77']);
  t.true(r.lines.includes(`error: cannot listen on 192.0.2.77:${s.tarpitPort} (address not available (EADDRNOTAVAIL)), so pfgrey run cannot either; -l must be an address of this host`));
  t.is(r.status, 1);
});

test('pfctl missing: an error for pfctl, and the loaded rules cannot be read', async (t) => {
  const s = await sandbox(t);
  const nope = path.join(s.dir, 'sbin', 'pfctl');
  const r = await check([...s.args, '--pfctl', nope]);
  t.deepEqual(r.lines.slice(0, 2), [
    `error: the loaded rules cannot be read without ${nope}; check a file instead: --pf-conf /etc/pf.conf`,
    `error: ${nope} does not exist, so pfgrey cannot fill <spamd-white>; install pf's pfctl, or give its path with --pfctl`,
  ]);
  t.is(r.status, 1);
});

test('pfctl that is not executable is an error; on Linux the message points to nft', async (t) => {
  const s = await sandbox(t);
  const plain = path.join(s.dir, 'pfctl-plain');
  await fs.writeFile(plain, '#!/bin/sh\n', { mode: 0o644 });
  const r = await check([...s.args, '--pfctl', plain, '--pf-conf', await s.conf('openbsd-divert.conf'), '--os', 'linux']);
  t.true(r.lines.includes(`error: ${plain} is not executable, so pfgrey cannot fill <spamd-white>; install pf's pfctl, or give its path with --pfctl (pf is the BSDs' firewall: on Linux, pfgrey run --firewall nft)`));
  t.is(r.status, 1);
});

test('a pf device that does not open is an error as root, and not checked otherwise', async (t) => {
  const s = await sandbox(t);
  const dev = path.join(s.dir, 'no-pf');
  const args = [...s.args, '--pf-device', dev, '--pf-conf', await s.conf('openbsd-divert.conf')];
  const root = await check(args);
  t.true(root.lines.includes(`error: ${dev} does not open read-write (no such file or directory (ENOENT)), so pfgrey cannot change pf's tables; enable pf: pfctl -e; rcctl enable pf`));
  t.is(root.status, 1);
  const user = await check(args, { euid: 1000 });
  t.true(user.lines.includes(`warning: ${dev} not checked: only root opens it, as pfgrey run does when it starts; run check as root`));
  t.is(user.status, 0);
});

test('pfctl refusing a user: the loaded rules cannot be read, run check as root', async (t) => {
  const s = await sandbox(t);
  await cannedPfctl(s.dir, { '-si': { stderr: 'pfctl: /dev/pf: Permission denied', status: 1 } });
  const r = await check(s.args, { euid: 1000 });
  t.deepEqual(r.lines[0], `error: cannot read the loaded rules: ${s.pfctl} -si: exited with status 1: pfctl: /dev/pf: Permission denied; run check as root, or check a file instead: --pf-conf /etc/pf.conf`);
  t.is(r.status, 1);
});

test('usage errors exit 1 with the usage line; -h prints it and exits 0', async (t) => {
  const cases: Array<[string[], string]> = [
    [['--bogus'], 'unknown option --bogus'],
    [['-p', '0'], '-p 0: too small (minimum 1)'],
    [['--config-port', 'x'], '--config-port x: not a whole number'],
    [['--os', 'solaris'], '--os solaris: expected openbsd, freebsd or linux'],
    [['-l', 'localhost'], '-l localhost: not an IP address'],
    [['--os', 'openbsd', '--table', 'a b'], '--table a b: not a pf table name (" " cannot be in it; use letters, digits, and punctuation other than , ( ) < > { } ! = / #)'],
    [['--user', 'a:b'], '--user a:b: not a user name'],
    [['extra'], 'unexpected argument "extra"'],
  ];
  for (const [argv, why] of cases) {
    const r = await runCli(['check', ...argv]);
    t.is(r.code, 1, argv.join(' '));
    t.is(r.stdout, '');
    t.true(r.stderr.startsWith(`pfgrey check: ${why}`), r.stderr);
    t.true(r.stderr.endsWith(`\n${CHECK_USAGE}\n`), r.stderr);
    t.is(r.stderr.split('\n').length, CHECK_USAGE.split('\n').length + 2, 'one line of why, then the usage');
  }
  const help = await runCli(['check', '-h']);
  t.deepEqual([help.code, help.stdout, help.stderr], [0, helpText('check', CHECK_USAGE), '']);
});

test('pfgrey check through the real CLI: the seed mistake exits 1, a correct set-up 0', async (t) => {
  const s = await sandbox(t);
  const seed = await runCli(['check', ...s.args, '--pf-conf', await s.conf('seed-openbsd.conf')]);
  t.is(seed.code, 1);
  // runCli reads stdout as latin1 (one character per byte); check prints UTF-8.
  t.true(Buffer.from(seed.stdout, 'latin1').toString('utf8').split('\n').includes(`error: ${s.dir}/seed-openbsd.conf:6: ${SEED} ${s.dir}/seed-openbsd.conf declares it without file "…" or { addresses }; did you mean <spamd-white>?`));
  t.is(seed.stderr, '');
  // As a user other than root the pf device is not opened: a warning, still exit 0.
  const good = await runCli(['check', ...s.args, '--pf-conf', await s.conf('openbsd-divert.conf')]);
  t.is(good.code, 0, good.stdout);
});
