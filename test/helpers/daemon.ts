// Starts a daemon in-process on port 0 with a temporary database, from `pfgrey run` arguments,
// and tears it down (and its directory) when the test ends.

import type { ExecutionContext } from 'ava';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseRunArgs } from '../../src/cli/run.js';
import { startDaemon, type Daemon, type DaemonConfig } from '../../src/daemon.js';
import { memoryLogger } from '../../src/log.js';

export async function tempDir(t: ExecutionContext, prefix = 'pfgrey-test-'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  // Daemons spawned as root become an unprivileged user (see spawnDaemon): it must reach its
  // database and the stand-ins here.
  await fs.chmod(dir, 0o755);
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface TestDaemon {
  daemon: Daemon;
  port: number;
  dir: string;
  dbPath: string;
  log: ReturnType<typeof memoryLogger>;
}

export async function testDaemon(
  t: ExecutionContext, args: string[] = [], dir?: string, tweak?: (config: DaemonConfig) => void,
): Promise<TestDaemon> {
  dir ??= await tempDir(t);
  const dbPath = path.join(dir, 'pfgrey.db');
  const { config } = parseRunArgs(['-p', '0', '--config-port', '0', '-h', 'tarpit.test', '--db', dbPath,
    '--firewall', 'none', '--alloweddomains', path.join(dir, 'alloweddomains'), ...args], {});
  tweak?.(config);
  const log = memoryLogger();
  const daemon = await startDaemon(config, log);
  t.teardown(() => daemon.stop());
  return { daemon, port: daemon.address.port, dir, dbPath, log };
}
