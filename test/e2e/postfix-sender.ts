// A private Postfix instance as the sending MTA, in its own network, mount and PID namespaces,
// so it shares nothing with the host's Postfix: its /etc/postfix, /var/spool/postfix and
// /var/lib/postfix are bind mounts of directories in the lab, and its master runs as PID 1 of
// a new PID namespace, so killing that one process takes every Postfix process with it.

import fs from 'node:fs';
import path from 'node:path';
import { check, type Lab, type Proc } from './lab.js';

export interface PostfixSettings {
  /** The sender's own name (myhostname, myorigin). */
  hostname: string;
  /** What its SMTP client says in HELO/EHLO. */
  heloName: string;
  /** Where all mail goes, as Postfix's relayhost: `[192.0.2.1]:25`. */
  relayhost: string;
  /** Further main.cf settings (name → value), after the ones above: transport_maps, say. */
  main?: Record<string, string>;
}

export interface QueueEntry {
  queue_name: string;
  queue_id: string;
  sender: string;
  recipients: Array<{ address: string; delay_reason?: string }>;
}

export interface PostfixSender {
  /** Host pid of the master (PID 1 inside its namespace). */
  masterPid: number;
  /** Postfix's maillog_file so far. */
  log(): string;
  /** Submits a message with this instance's sendmail; resolves once Postfix accepted it. */
  sendmail(from: string, to: string, message: string): Promise<void>;
  /** `postqueue -j`, parsed. */
  queue(): Promise<QueueEntry[]>;
  /** `postqueue -i ID`: tries that deferred message again now. */
  flush(queueId: string): Promise<void>;
}

const PACKAGE_MASTER_CF = '/usr/share/postfix/master.cf.dist';

export async function startPostfix(lab: Lab, ns: string, settings: PostfixSettings): Promise<PostfixSender> {
  const root = path.join(lab.dir, 'postfix');
  const etc = path.join(root, 'etc');
  const spool = path.join(root, 'spool');
  const lib = path.join(root, 'lib');
  const logDir = path.join(root, 'log');
  for (const d of [etc, spool, lib, logDir, path.join(etc, 'postfix-files.d'), path.join(etc, 'dynamicmaps.cf.d')]) {
    fs.mkdirSync(d, { recursive: true });
  }
  // The package's pristine master.cf, not the host's edited one; postfix-files is what
  // `post-install create-missing` reads to create the queue directories with their owners.
  fs.copyFileSync(fs.existsSync(PACKAGE_MASTER_CF) ? PACKAGE_MASTER_CF : '/etc/postfix/master.cf', path.join(etc, 'master.cf'));
  fs.copyFileSync('/etc/postfix/postfix-files', path.join(etc, 'postfix-files'));
  fs.writeFileSync(path.join(etc, 'dynamicmaps.cf'), '# dict-type\tso-name (pathname)\tdict-function\tmkmap-function\n');
  const maillog = path.join(logDir, 'maillog');
  fs.writeFileSync(path.join(etc, 'main.cf'), `# Written by the pfgrey end-to-end test; see test/e2e/postfix-sender.ts.
compatibility_level = 3.6
myhostname = ${settings.hostname}
mydomain = ${settings.hostname}
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
biff = no
inet_interfaces = loopback-only
inet_protocols = ipv4
relayhost = ${settings.relayhost}
smtp_helo_name = ${settings.heloName}
smtp_tls_security_level = none
smtp_connect_timeout = 10s
smtp_helo_timeout = 30s
smtp_data_done_timeout = 30s
# A greylisted message is retried within seconds, not after Postfix's 300 s minimum.
minimal_backoff_time = 5s
maximal_backoff_time = 10s
queue_run_delay = 5s
# The tarpit's 451 must never turn into a bounce during the test.
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
maillog_file = ${maillog}
maillog_file_prefixes = /var, /dev/stdout, ${logDir}
${Object.entries(settings.main ?? {}).map(([k, v]) => `${k} = ${v}\n`).join('')}`);
  const postconf = (...args: string[]) => check(['postconf', '-c', etc, ...args]);
  // Nothing may depend on copies of /etc files inside a chroot under the queue directory.
  await postconf('-F', '*/*/chroot = n');
  // The sender needs no SMTP server: only its client talks to the network.
  await postconf('-M#', 'smtp/inet');
  if ((await postconf('-M', 'postlog/unix-dgram')).stdout.trim() === '') {
    await postconf('-Me', 'postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd');
  }
  // The queue directory stays root's (create-missing fills it); the data directory is Postfix's.
  await check(['chown', 'postfix:postfix', lib]);
  fs.chmodSync(lib, 0o700);

  const proc: Proc = lab.spawn('postfix', ns, [
    'unshare', '--pid', '--fork', '--kill-child', '--mount', '--propagation', 'private', '--mount-proc',
    'sh', '-c', 'mount --bind "$1" /etc/postfix && mount --bind "$2" /var/spool/postfix && ' +
      'mount --bind "$3" /var/lib/postfix && exec postfix start-fg',
    'sh', etc, spool, lib,
  ]);
  const log = () => (fs.existsSync(maillog) ? fs.readFileSync(maillog, 'utf8') : '');
  const deadline = Date.now() + 20_000;
  while (!/postfix\/master\[1\]: daemon started/.test(log())) {
    if (!proc.running || Date.now() > deadline) {
      throw new Error(`Postfix did not start:\n${proc.output}\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const masterPid = childPids(proc.child.pid!)[0] ?? 0;
  const comm = masterPid ? fs.readFileSync(`/proc/${masterPid}/comm`, 'utf8').trim() : 'nothing';
  if (comm !== 'master') throw new Error(`expected Postfix's master as pid ${masterPid}, found ${comm}`);

  // sendmail and postqueue must see this instance's /etc/postfix and queue: enter its mount
  // namespace (and network namespace, for good measure); they need not share its PIDs.
  const enter = ['nsenter', '-t', String(masterPid), '-m', '-n'];
  return {
    masterPid,
    log,
    async sendmail(from, to, message) {
      await check([...enter, '/usr/sbin/sendmail', '-oi', '-f', from, '--', to], { input: message });
    },
    async queue() {
      const r = await check([...enter, '/usr/sbin/postqueue', '-j']);
      return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as QueueEntry);
    },
    async flush(queueId) {
      await check([...enter, '/usr/sbin/postqueue', '-i', queueId]);
    },
  };
}

/** The children of `pid`: from /proc/PID/task/PID/children, else by each process's PPid. */
function childPids(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // Kernels without CONFIG_PROC_CHILDREN lack that file.
    return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
      try {
        return new RegExp(`^PPid:\\s+${pid}$`, 'm').test(fs.readFileSync(`/proc/${d}/status`, 'utf8'));
      } catch {
        return false;
      }
    }).map(Number);
  }
}
