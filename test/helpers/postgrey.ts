// Real postgrey as the oracle for the policy door's postgrey compatibility (Debian's postgrey
// 1.37; CI installs the packages `postgrey` and `db5.3-util`). Two ways:
// - perlOracle: postgrey's own functions (do_sender_substitutions, do_client_substitutions),
//   reached by loading /usr/sbin/postgrey into a Perl process without starting the server
//   (its main() dies at once for want of --unix/--inet, after the subs are defined), fed one
//   question a line;
// - startPostgrey: the server itself on a unix socket in a temporary directory, asked with
//   Postfix's policy protocol, its Berkeley DB then read with db_dump.
// Nothing of postgrey is copied here: it is run, and its answers compared with ours.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { eventually } from './wait.js';

export const POSTGREY = '/usr/sbin/postgrey';

/** Why postgrey cannot be run here, or undefined if it can. */
export function postgreyMissing(): string | undefined {
  if (!existsSync(POSTGREY)) return `${POSTGREY} is not installed (apt-get install postgrey)`;
  const r = spawnSync('perl', ['-MNetAddr::IP', '-MBerkeleyDB', '-MNet::Server::Multiplex', '-MDigest::SHA', '-e', '1'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `postgrey's Perl modules do not load: ${r.error?.message ?? r.stderr.trim()}`;
  return undefined;
}

/** The db_dump of Berkeley DB 5.3 (db5.3-util), or undefined. */
export function dbDumpCommand(): string | undefined {
  for (const cmd of ['db5.3_dump', 'db_dump']) {
    const r = spawnSync(cmd, ['-V'], { encoding: 'utf8' });
    if (!r.error && r.status === 0) return cmd;
  }
  return undefined;
}

// Questions, one a line, tab-separated; answers one a line:
//   S <addr>                      do_sender_substitutions
//   C <v4cidr> <v6cidr> <byhost> <ip>   do_client_substitutions, "$net"
//   A <ip>                        NetAddr::IP->new($ip)->addr (the auto-whitelist key)
//   H <text>                      Digest::SHA::sha1_hex
//   L <text>                      lc
const ORACLE = String.raw`
use strict;
our @ARGV_SAVED = @ARGV; @ARGV = ();
{ local $SIG{__WARN__} = sub {}; do '${POSTGREY}'; }
die "postgrey did not load: $@" unless defined &postgrey::do_sender_substitutions;
require Digest::SHA;
binmode STDIN; binmode STDOUT; $| = 1;
while (my $l = <STDIN>) {
  chomp $l;
  my ($op, @a) = split /\t/, $l, -1;
  my $out;
  if ($op eq 'S') { $out = postgrey->do_sender_substitutions($a[0]); }
  elsif ($op eq 'C') {
    my $self = bless { postgrey => { ipv4cidr => $a[0], ipv6cidr => $a[1], lookup_by_host => $a[2] } }, 'postgrey';
    my ($n) = $self->do_client_substitutions(NetAddr::IP->new($a[3]), undef);
    $out = "$n";
  }
  elsif ($op eq 'A') { $out = NetAddr::IP->new($a[0])->addr(); }
  elsif ($op eq 'H') { $out = Digest::SHA::sha1_hex($a[0]); }
  elsif ($op eq 'L') { $out = lc $a[0]; }
  else { die "bad question $op\n"; }
  print "$out\n";
}
`;

/** postgrey's answers to `questions` (see ORACLE), in order. Strings are latin1, without \n or \t. */
export function perlOracle(questions: readonly string[][]): string[] {
  const input = questions.map((q) => `${q.join('\t')}\n`).join('');
  const r = spawnSync('perl', ['-e', ORACLE], { input: Buffer.from(input, 'latin1'), maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`perl oracle failed (${r.status}): ${r.stderr.toString()}`);
  const lines = r.stdout.toString('latin1').split('\n');
  lines.pop();
  if (lines.length !== questions.length) throw new Error(`perl oracle answered ${lines.length} of ${questions.length}: ${r.stderr.toString()}`);
  return lines;
}

export interface RunningPostgrey {
  dir: string;
  socket: string;
  /** Its log so far (stderr and stdout: postgrey logs there when not daemonized). */
  log(): string;
  /** Sends requests (attribute maps) one after another on one connection; their action lines. */
  ask(requests: readonly Record<string, string>[]): Promise<string[]>;
  /** `db_dump -p` of postgrey.db or postgrey_clients.db, decoded: key → value, latin1. */
  dump(file: 'postgrey.db' | 'postgrey_clients.db'): Map<string, string>;
  stop(): Promise<void>;
}

/** Starts postgrey on a unix socket in a new temporary directory, with `args` added. */
export async function startPostgrey(args: readonly string[]): Promise<RunningPostgrey> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pfgrey-postgrey-'));
  const socket = path.join(dir, 'sock');
  // Names, not numbers: postgrey takes `--user=0` for no --user at all (0 is false in Perl)
  // and would become its own `postgrey` user.
  const user = os.userInfo().username;
  const group = spawnSync('id', ['-gn'], { encoding: 'utf8' }).stdout.trim();
  const child: ChildProcess = spawn(POSTGREY, [`--unix=${socket}`, `--dbdir=${dir}`, `--user=${user}`, `--group=${group}`, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' },
  });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => { log += d.toString('latin1'); });
  child.stderr!.on('data', (d: Buffer) => { log += d.toString('latin1'); });
  let exited = false;
  const exit = new Promise<void>((resolve) => child.on('exit', () => { exited = true; resolve(); }));
  const stop = async () => {
    if (!exited) child.kill('SIGTERM');
    await exit;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await eventually(async () => {
      if (exited) throw new Error(`postgrey exited: ${log}`);
      return existsSync(socket) && canConnect(socket);
    }, 'postgrey to listen', 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    dir,
    socket,
    log: () => log,
    ask: (requests) => ask(socket, requests),
    dump: (file) => dump(dir, file),
    stop,
  };
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socket);
    s.on('connect', () => { s.end(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

function ask(socket: string, requests: readonly Record<string, string>[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const answers: string[] = [];
    if (requests.length === 0) { resolve(answers); return; }
    const s = net.connect(socket);
    let buf = Buffer.alloc(0);
    const send = () => {
      let text = 'request=smtpd_access_policy\nprotocol_state=RCPT\n';
      for (const [k, v] of Object.entries(requests[answers.length]!)) text += `${k}=${v}\n`;
      s.write(Buffer.from(`${text}\n`, 'latin1'));
    };
    s.on('connect', send);
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
        answers.push(buf.subarray(0, end).toString('latin1'));
        buf = buf.subarray(end + 2);
        if (answers.length === requests.length) { s.end(); resolve(answers); return; }
        send();
      }
    });
  });
}

/** db_dump's -p form: printable bytes as they are, `\\` for a backslash, `\hh` for any other byte. */
function unprint(s: string): string {
  return s.replace(/\\(\\|[0-9a-fA-F]{2})/g, (_, x: string) => (x === '\\' ? '\\' : String.fromCharCode(parseInt(x, 16))));
}

function dump(dir: string, file: string): Map<string, string> {
  const cmd = dbDumpCommand();
  if (cmd === undefined) throw new Error('db_dump is not installed (apt-get install db5.3-util)');
  // -h joins postgrey's environment, so pages still in its cache are read too.
  const r = spawnSync(cmd, ['-h', dir, '-p', file], { maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${file} failed: ${r.stderr.toString()}`);
  const lines = r.stdout.toString('latin1').split('\n');
  const start = lines.indexOf('HEADER=END') + 1;
  const end = lines.indexOf('DATA=END');
  const out = new Map<string, string>();
  for (let i = start; i + 1 < end; i += 2) out.set(unprint(lines[i]!.slice(1)), unprint(lines[i + 1]!.slice(1)));
  return out;
}
