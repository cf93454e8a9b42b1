// A real PostgreSQL for the shared store's tests (CI installs Debian's `postgresql`): one
// throwaway cluster (pg-cluster.ts) per test file, started on first use; each test gets a
// database of its own in it. The cluster is stopped and its directory removed when the file's
// tests end.

import test, { type ExecutionContext } from 'ava';
import { type Cluster, postgresMissing, startCluster } from './pg-cluster.js';
import { lacking, required } from './require.js';

export { type Cluster, postgresMissing, rawPg, startCluster } from './pg-cluster.js';

let shared: Promise<Cluster> | undefined;
let databases = 0;

// Declared when a test file imports this helper; a file that never starts the cluster stops nothing.
test.after.always('stop the throwaway PostgreSQL cluster', async () => {
  if (shared) await (await shared.catch(() => undefined))?.stop();
});

/** This test file's cluster, started on first use. */
export function sharedCluster(): Promise<Cluster> {
  shared ??= startCluster();
  return shared;
}

/**
 * The URL of a new, empty database on this file's cluster, for one test; undefined (the test
 * has ended with `lacking`) when PostgreSQL cannot be run here.
 */
export async function testDatabase(t: ExecutionContext): Promise<string | undefined> {
  const missing = postgresMissing();
  if (missing) {
    lacking(t, missing);
    return undefined;
  }
  const cluster = await sharedCluster();
  const name = `t${process.pid}_${++databases}`;
  await cluster.sql(`CREATE DATABASE ${name}`);
  return cluster.url(name);
}

/** Whether the store tests list PostgreSQL among their backends: present, or required here. */
export const postgresAvailable = postgresMissing() === undefined || required;
