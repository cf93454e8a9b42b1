// A private Postfix instance as the receiving MTA, the one that asks a policy server about each
// RCPT: its own configuration directory, queue directory, data directory and maillog_file in
// the lab, run with `postfix -c DIR start` inside a network namespace (postfix(1), -c). Its
// master and every child, spawn(8) commands included, live in that namespace, so the lab's
// sweep of the namespace takes them all even when `postfix stop` never ran.

import fs from 'node:fs';
import path from 'node:path';
import { check, type Lab } from './lab.js';

export interface ReceiverSettings {
  /** A directory name under the lab's, for this instance's files. */
  name: string;
  /** Its myhostname (also what smtpd says in its greeting). */
  hostname: string;
  /** main.cf settings (name → value) after the fixed ones below. */
  main: Record<string, string>;
  /** Lines appended to the package's master.cf, whose own `smtp inet` service is commented out. */
  services: string[];
}

export interface ReceivingPostfix {
  /** The configuration directory, for `postfix -c` and `postconf -c`. */
  etc: string;
  /** Its queue_directory: where `unix:private/NAME` sockets live. */
  queueDir: string;
  /** Postfix's maillog_file so far. */
  log(): string;
  /** `postfix -c DIR stop`, or abort when stop fails; for teardown, never throws. */
  stop(): Promise<void>;
}

const PACKAGE_MASTER_CF = '/usr/share/postfix/master.cf.dist';

export async function startReceivingPostfix(lab: Lab, ns: string, settings: ReceiverSettings): Promise<ReceivingPostfix> {
  const root = path.join(lab.dir, settings.name);
  const etc = path.join(root, 'etc');
  const queueDir = path.join(root, 'spool');
  const dataDir = path.join(root, 'lib');
  const logDir = path.join(root, 'log');
  for (const d of [etc, queueDir, dataDir, logDir]) fs.mkdirSync(d, { recursive: true });
  // Postfix's unprivileged processes reach the data directory and the maillog by absolute path,
  // through the lab's directory (mkdtemp makes it 0700): let them pass, not list.
  fs.chmodSync(lab.dir, 0o711);
  for (const d of [root, etc, logDir]) fs.chmodSync(d, 0o755);
  await check(['chown', 'postfix:postfix', dataDir]);
  fs.chmodSync(dataDir, 0o700);
  fs.copyFileSync(fs.existsSync(PACKAGE_MASTER_CF) ? PACKAGE_MASTER_CF : '/etc/postfix/master.cf', path.join(etc, 'master.cf'));
  const maillog = path.join(logDir, 'maillog');
  const fixed: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: queueDir,
    data_directory: dataDir,
    myhostname: settings.hostname,
    mydomain: settings.hostname,
    myorigin: '$myhostname',
    mydestination: '',
    local_recipient_maps: '',
    alias_maps: '',
    alias_database: '',
    biff: 'no',
    inet_interfaces: 'all',
    inet_protocols: 'ipv4',
    // Nothing in the lab answers DNS; the client's name would only cost a failed lookup.
    smtpd_peername_lookup: 'no',
    smtp_tls_security_level: 'none',
    smtpd_tls_security_level: 'none',
    // A test's mail must never bounce while it waits.
    maximal_queue_lifetime: '1h',
    bounce_queue_lifetime: '1h',
    syslog_name: `postfix-${settings.name}`,
    maillog_file: maillog,
    maillog_file_prefixes: `/var, /dev/stdout, ${logDir}`,
  };
  const lines = Object.entries({ ...fixed, ...settings.main }).map(([k, v]) => `${k} = ${v}`);
  fs.writeFileSync(path.join(etc, 'main.cf'), `# Written by the pfgrey end-to-end test; see test/e2e/postfix-receiver.ts.\n${lines.join('\n')}\n`);
  const postconf = (...args: string[]) => check(['postconf', '-c', etc, ...args]);
  // No chroot: nothing may depend on copies of /etc files under the queue directory.
  await postconf('-F', '*/*/chroot = n');
  await postconf('-M#', 'smtp/inet');
  if ((await postconf('-M', 'postlog/unix-dgram')).stdout.trim() === '') {
    await postconf('-Me', 'postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd');
  }
  fs.appendFileSync(path.join(etc, 'master.cf'), `# Added by the pfgrey end-to-end test.\n${settings.services.join('\n')}\n`);
  // postfix start runs `postfix check` first, which creates the queue directories; it returns
  // once the master is up (master -w).
  await lab.execCheck(ns, ['postfix', '-c', etc, 'start'], { timeout: 60_000 });
  const log = () => (fs.existsSync(maillog) ? fs.readFileSync(maillog, 'utf8') : '');
  const deadline = Date.now() + 20_000;
  while (!/\/master\[\d+\]: daemon started/.test(log())) {
    if (Date.now() > deadline) throw new Error(`the receiving Postfix did not log its start:\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopped = false;
  return {
    etc,
    queueDir,
    log,
    async stop() {
      if (stopped) return;
      stopped = true;
      const r = await lab.exec(ns, ['postfix', '-c', etc, 'stop'], { timeout: 30_000 }).catch(() => undefined);
      if (r?.code !== 0) await lab.exec(ns, ['postfix', '-c', etc, 'abort'], { timeout: 30_000 }).catch(() => undefined);
    },
  };
}
