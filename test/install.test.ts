// What the README's Installing section tells a new user holds: the package carries its manual
// page and npm installs it, the tarball it names is the one `npm pack` makes, and the command
// that creates the _pfgrey user is the same in the README, the Vagrantfile, pfgrey run's warning
// and pfgrey check's finding (src/config/accounts.ts).

import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addUserCommand, thisSystem, type SystemName } from '../src/config/accounts.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');
const pkg = JSON.parse(read('package.json')) as { version: string; man?: string[]; files?: string[] };
const SYSTEMS: SystemName[] = ['openbsd', 'freebsd', 'linux'];

test('the README, the Vagrantfile and the code give one command per system to create _pfgrey', (t) => {
  const readme = read('README.md');
  for (const os of SYSTEMS) t.true(readme.includes(addUserCommand(os)), `README: ${addUserCommand(os)}`);
  // Every line of the README that creates a user creates _pfgrey with one of those commands.
  const mentions = readme.split('\n').filter((l) => /\buseradd\b/.test(l) && l.includes('_pfgrey'));
  t.true(mentions.length >= SYSTEMS.length);
  for (const line of mentions) {
    t.true(SYSTEMS.some((os) => line.includes(addUserCommand(os))), `README line with another command: ${line}`);
  }
  const vagrant = read('Vagrantfile');
  t.true(vagrant.includes(addUserCommand('openbsd')));
  t.true(vagrant.includes(addUserCommand('freebsd')));
  t.is(addUserCommand('linux', '_other'), 'useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin _other');
  t.is(thisSystem('openbsd'), 'openbsd');
  t.is(thisSystem('freebsd'), 'freebsd');
  t.is(thisSystem('linux'), 'linux');
  t.is(thisSystem('darwin'), 'linux');
});

test('the package names its manual page, and the README installs the tarball npm pack makes', (t) => {
  t.deepEqual(pkg.man, ['./man/pfgrey.8']);
  t.true(pkg.files?.includes('man/'));
  const readme = read('README.md');
  const named = [...readme.matchAll(/\.\/pfgrey-(\d+\.\d+\.\d+)\.tgz/g)].map((m) => m[1]);
  t.true(named.length > 0);
  t.deepEqual([...new Set(named)], [pkg.version]);
});

test('npm pack puts the built CLI and the manual page in the package', async (t) => {
  // --dry-run still runs prepack, the build, so dist/ is what the tarball would hold.
  const out = await new Promise<string>((resolve, reject) => {
    execFile('npm', ['pack', '--dry-run', '--json'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => (err ? reject(new Error(`npm pack --dry-run failed: ${stderr}`)) : resolve(stdout)));
  });
  const [packed] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
  t.is(packed!.filename, `pfgrey-${pkg.version}.tgz`);
  const files = packed!.files.map((f) => f.path);
  for (const f of ['man/pfgrey.8', 'dist/cli/main.js', 'rc.d/openbsd/pfgrey', 'rc.d/freebsd/pfgrey', 'rc.d/linux/pfgrey.service', 'pf/openbsd.pf.conf', 'pf/linux/pfgrey.nft']) {
    t.true(files.includes(f), f);
  }
  t.false(files.some((f) => f.startsWith('src/') || f.startsWith('test/') || f.startsWith('.build/')), 'no sources or tests');
});
