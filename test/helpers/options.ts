// The subcommands' option tables, read from their sources, for the tests that hold the man
// page and --help to them (test/man.test.ts, test/help.test.ts).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// .build/test/helpers → the repository
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface Option {
  name: string;
  short?: string;
}

/** The body of `[export] const NAME = { … } as const;` in a source file under src/. */
function tableOf(file: string, name: string): string {
  const source = fs.readFileSync(path.join(ROOT, 'src', file), 'utf8');
  const table = new RegExp(`^(?:export )?const ${name} = \\{\\n([\\s\\S]*?)\\n\\} as const;$`, 'm').exec(source);
  if (!table) throw new Error(`no ${name} table in src/${file}`);
  return table[1]!;
}

/** The keys (and short letters) of the table `name` (a CLI module's OPTIONS by default). */
export function optionsOf(file: string, name = 'OPTIONS'): Option[] {
  return [...tableOf(file, name).matchAll(/^\s*(?:'([^']+)'|(\w+)):\s*\{([^}]*)\}/gm)].map((m) => ({
    name: (m[1] ?? m[2])!,
    short: /short:\s*'(.)'/.exec(m[3]!)?.[1],
  }));
}

/** The tables a table spreads into itself (`...POLICY_OPTIONS,`), which optionsOf does not read. */
export function spreadsOf(file: string, name = 'OPTIONS'): string[] {
  return [...tableOf(file, name).matchAll(/^\s*\.\.\.(\w+),?$/gm)].map((m) => m[1]!);
}

/** Where the options a CLI module spreads into its OPTIONS table come from. */
export const SPREAD_TABLES: Record<string, string> = { POLICY_OPTIONS: 'policy/door.ts', WEIGHTED_OPTIONS: 'weighted/options.ts' };

/**
 * Each subcommand's module, and the tables it spreads that its own section documents; a table
 * spread but documented in another section is named with that section, which must say so.
 */
export const COMMANDS: Array<{ command: string; module: string; spreads: string[]; documentedIn?: Record<string, string>; hidden?: string[] }> = [
  { command: 'run', module: 'run.ts', spreads: [], documentedIn: { POLICY_OPTIONS: 'policy', WEIGHTED_OPTIONS: 'explain' } },
  { command: 'db', module: 'db.ts', spreads: [] },
  { command: 'setup', module: 'setup.ts', spreads: [] },
  { command: 'logd', module: 'logd.ts', spreads: [] },
  { command: 'stats', module: 'stats.ts', spreads: [] },
  // --passwd, --services and --mounts stand in for system files in tests and odd systems.
  { command: 'check', module: 'check.ts', spreads: [], hidden: ['passwd', 'services', 'mounts'] },
  { command: 'policy', module: 'policy.ts', spreads: ['POLICY_OPTIONS'], documentedIn: { WEIGHTED_OPTIONS: 'explain' } },
  // Weighted greylisting's options are documented once, here, and run and policy point to them.
  { command: 'explain', module: 'explain.ts', spreads: ['WEIGHTED_OPTIONS'] },
];

