// The status page (--http, /) in a real headless browser (Debian's chromium, driven by
// playwright-core): it loads from the daemon alone, with no request leaving the machine, draws
// its plots from the last hour's samples, shows what is held, the last push and the lists in
// force, and the browser reports no error. A screenshot is kept in .build/artefacts/.

import test from 'ava';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import type { StatusDocument } from '../src/http/server.js';
import { testDaemon } from './helpers/daemon.js';
import { attemptFrom, connectFrom, get, passTuple } from './helpers/http.js';
import { lacking } from './helpers/require.js';
import { eventually, sendConfig } from './helpers/smtp.js';

// The wrapper /usr/bin/chromium prints a harmless warning as root; the binary behind it does not.
const CHROMIUM = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));
const ARTEFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../artefacts');

/** Pixels of the canvas under `selector` within 60 of the colour (r, g, b) in each channel. */
const pixelsNear = (selector: string, [r, g, b]: [number, number, number]) => `(() => {
  const c = document.querySelector(${JSON.stringify(selector)});
  if (!c) return -1;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0 && Math.abs(d[i] - ${r}) < 60 && Math.abs(d[i + 1] - ${g}) < 60 && Math.abs(d[i + 2] - ${b}) < 60) n++;
  }
  return n;
})()`;

test('the status page loads offline in a headless browser, draws its plots with data, shows the push and the lists, and logs no error', async (t) => {
  if (!CHROMIUM) return lacking(t, 'chromium (Debian\'s chromium package)');
  const { port, daemon } = await testDaemon(t, ['--stutter', '0', '--passtime', '0', '--http', '127.0.0.1:0'], undefined, (c) => {
    c.http!.sampleEvery = 50;
  });
  const http = daemon.httpAddress!.port;
  await sendConfig(daemon.configAddress.port, 'nixspam;"listed";inet;2;127.0.0.3/32;198.51.100.0/24\n');
  await eventually(() => daemon.lists.lookup('127.0.0.3'), 'the list loaded');
  // 127.0.0.6 passes on its retry and the scan whitelists it; 127.0.0.2 stays greylisted.
  await attemptFrom(port, '127.0.0.2', '<a@us.example>');
  await passTuple(daemon, port, '127.0.0.6', '<c@us.example>');
  const held = await Promise.all(['127.0.0.4', '127.0.0.3'].map((a) => connectFrom(port, a)));
  t.teardown(() => held.forEach((c) => c.socket.destroy()));
  await daemon.scanner!.scanOnce();
  await eventually(async () => {
    const doc = JSON.parse((await get(http, '/status.json')).body) as StatusDocument;
    return doc.lastPush && doc.samples.filter((s) => s.white === 1 && s.heldBlack === 1).length >= 3;
  }, 'three samples after the scan');

  const browser = await chromium.launch({ executablePath: CHROMIUM });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const problems: string[] = [];
  const elsewhere: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  // Everything the page needs comes from the daemon: anything else would fail offline.
  const origin = `http://127.0.0.1:${http}`;
  await page.route('**/*', (route) => {
    if (route.request().url().startsWith(`${origin}/`)) return route.continue();
    elsewhere.push(route.request().url());
    return route.abort();
  });

  await page.goto(`${origin}/`);
  await page.waitForSelector('body[data-loaded="yes"]');
  // The icon is fetched after the page; it must not be a 404.
  await page.waitForResponse((r) => r.url() === `${origin}/favicon.ico`, { timeout: 10_000 }).catch(() => undefined);

  const points = await page.evaluate('Object.fromEntries(Object.entries(window.pfgreyPlots).map(([id, u]) => [id, u.data[0].length]))') as Record<string, number>;
  t.true(points['plot-counts']! >= 4, `counts plot has ${points['plot-counts']} points`);
  t.true(points['plot-held']! >= 4, `held plot has ${points['plot-held']} points`);
  t.true(await page.evaluate(pixelsNear('#plot-counts canvas', [0x22, 0xaa, 0x77])) as number > 20, 'the white series is drawn');
  t.true(await page.evaluate(pixelsNear('#plot-held canvas', [0x22, 0x22, 0x22])) as number > 20, 'the black series is drawn');

  const now = await page.textContent('#now');
  t.regex(now!, /connections held2 \(grey 1, black 1, trapped 0\)/);
  t.regex(now!, /WHITE addresses1/);
  t.regex((await page.textContent('#push'))!, /to <spamd-white> \(none\): replaced the table; 1 address, \d+ ms/);
  t.regex((await page.textContent('#lists'))!, /nixspam2/);

  mkdirSync(ARTEFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTEFACTS, 'status-page.png'), fullPage: true });
  t.deepEqual(elsewhere, [], 'no request left the daemon');
  t.deepEqual(problems, []);
});
