// What survives a database the daemon had to give up: the hosts in its firewall table. Policy,
// not storage: a table address is a host that passed greylisting, so it becomes a WHITE entry.

import net from 'node:net';
import { describe } from '../errors.js';
import type { Firewall } from '../firewall/types.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/types.js';

/**
 * After a database was moved aside, the firewall's whitelist table is the one record left of
 * which hosts had passed greylisting. The first scan of the empty database would empty the
 * table and send every one of them through greylisting again (spamd, whose scan fails on a bad
 * database, keeps the table). So each address in it becomes a WHITE entry that passed now,
 * with no blocked connections counted (we do not know them), for the daemon's white expiry.
 */
export async function keepTableAsWhite(
  firewall: Firewall, table: string, store: Store, now: number, whiteExpiry: number, log: Logger,
): Promise<number> {
  let addrs: string[];
  try {
    addrs = (await firewall.show(table)).filter((a) => net.isIP(a) !== 0);
  } catch (err) {
    log.warning(`cannot read <${table}> to keep its addresses in the fresh database: ${describe(err)}; ` +
      'the first scan will empty it');
    return 0;
  }
  // An address whose entry was salvaged from the old file keeps it (a TRAPPED one stays trapped).
  const have = await store.getMany(addrs);
  const missing = addrs.filter((a) => !have.has(a));
  for (const key of missing) store.put({ key, first: now, pass: now, expire: now + whiteExpiry, bcount: 0, pcount: 0 });
  if (missing.length > 0) log.notice(`kept the ${missing.length} addresses of <${table}> as WHITE entries in the fresh database`);
  return missing.length;
}
