// Runs SQL on a database file with the sqlite3 module directly, bypassing the store: how tests
// write rows an older pfgrey (or another program) left behind.

import sqlite3 from 'sqlite3';

export function rawSql(file: string, statements: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const d: sqlite3.Database = new sqlite3.Database(file, (err) => {
      if (err) return reject(err);
      d.exec(statements, (e) => d.close(() => (e ? reject(e) : resolve())));
    });
  });
}
