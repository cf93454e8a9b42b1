// A pfctl stand-in: an executable that records each call's argv and stdin under `dir`, and
// exits with the status written in `dir/status` (0 when absent). Tests read what the
// firewall table would have received; `-T show` prints `dir/table` (one address a line).

import fs from 'node:fs/promises';
import path from 'node:path';

export interface PfctlStandIn {
  path: string;
  dir: string;
  /** Sets the exit status of the following calls. */
  setStatus(code: number): Promise<void>;
  /** The recorded calls, oldest first. */
  calls(): Promise<Array<{ argv: string[]; stdin: string }>>;
}

export async function pfctlStandIn(dir: string): Promise<PfctlStandIn> {
  const calls = path.join(dir, 'calls');
  await fs.mkdir(calls, { recursive: true });
  // pfctl runs as the daemon's unprivileged user once it has dropped root.
  await fs.chmod(calls, 0o777);
  const script = path.join(dir, 'pfctl');
  await fs.writeFile(script, `#!/bin/sh
d='${dir}'
n=$(ls "$d/calls" | wc -l)
n=$(( n / 2 ))
cat > "$d/calls/$n.stdin.tmp"
printf '%s\\n' "$@" > "$d/calls/$n.argv"
mv "$d/calls/$n.stdin.tmp" "$d/calls/$n.stdin"
if [ -f "$d/status" ]; then s=$(cat "$d/status"); else s=0; fi
[ "$s" = 0 ] || echo "pfctl: Operation not permitted (stand-in status $s)" >&2
case " $* " in *" -T show "*) [ "$s" = 0 ] && [ -f "$d/table" ] && sed 's/^/   /' "$d/table" ;; esac
exit "$s"
`, { mode: 0o755 });
  return {
    path: script,
    dir,
    setStatus: (code) => fs.writeFile(path.join(dir, 'status'), String(code)),
    async calls() {
      const names = (await fs.readdir(calls)).filter((n) => n.endsWith('.stdin'));
      names.sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
      return Promise.all(names.map(async (n) => {
        const i = parseInt(n, 10);
        const argv = (await fs.readFile(path.join(calls, `${i}.argv`), 'utf8')).split('\n').filter((l, k, a) => k < a.length - 1 || l !== '');
        return { argv, stdin: await fs.readFile(path.join(calls, n), 'utf8') };
      }));
    },
  };
}
