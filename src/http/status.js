// The status page: reads /status.json every 15 seconds and draws it. Plain script, no build
// step; uPlot (served beside it, from the package's dependencies) draws the plots.
'use strict';

(function () {
  const REFRESH_MS = 15000;
  const plots = {};
  // For whoever drives the page (the tests): the plots, once drawn.
  window.pfgreyPlots = plots;

  const $ = (id) => document.getElementById(id);

  function text(el, value) {
    el.textContent = value;
    return el;
  }

  function fill(dl, pairs) {
    dl.replaceChildren();
    for (const [k, v] of pairs) {
      dl.append(text(document.createElement('dt'), k), text(document.createElement('dd'), String(v)));
    }
  }

  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 120) return s + ' s ago';
    if (s < 7200) return Math.round(s / 60) + ' min ago';
    return Math.round(s / 3600) + ' h ago';
  }

  // uPlot wants [xs, ys…]; a missing value is null (a gap).
  function columns(samples, keys) {
    return [samples.map((s) => s.t), ...keys.map((k) => samples.map((s) => (s[k] === undefined ? null : s[k])))];
  }

  function plot(id, series, data) {
    const el = $(id);
    const width = Math.max(300, el.clientWidth || 600);
    if (plots[id]) {
      plots[id].setData(data);
      return;
    }
    const opts = {
      width,
      height: 220,
      series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 2, points: { show: true, size: 4 } }))],
      axes: [{}, { size: 60 }],
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    };
    plots[id] = new uPlot(opts, data, el);
  }

  function render(s) {
    text($('command'), s.command === 'policy' ? 'policy' : 'run');
    text($('updated'), 'version ' + s.version + ', up since ' + new Date(s.startedAt).toLocaleString() +
      '; updated ' + new Date(s.now).toLocaleTimeString());
    const now = [];
    if (s.held) {
      const h = s.held;
      now.push(['connections held', (h.grey + h.black + h.trapped) + ' (grey ' + h.grey + ', black ' + h.black + ', trapped ' + h.trapped + ')']);
    }
    if (s.counts) {
      now.push(['GREY entries', s.counts.grey], ['WHITE addresses', s.counts.white], ['TRAPPED addresses', s.counts.trapped],
        ['spamtraps', s.counts.spamtraps], ['last scan', ago(s.now - s.counts.at)]);
    } else {
      now.push(['last scan', 'none yet']);
    }
    if (s.backlog !== undefined) now.push(['waiting for the database', s.backlog]);
    fill($('now'), now);

    plot('plot-counts', [['grey', '#888'], ['white', '#2a7'], ['trapped', '#c33']], columns(s.samples, ['grey', 'white', 'trapped']));
    if (s.held) {
      plot('plot-held', [['grey', '#888'], ['black', '#222'], ['trapped', '#c33']], columns(s.samples, ['heldGrey', 'heldBlack', 'heldTrapped']));
    } else {
      $('held-section').classList.add('hidden');
    }

    const push = $('push');
    if (!s.firewall) {
      $('push-section').classList.add('hidden');
    } else if (!s.lastPush) {
      text(push, 'none yet (' + s.firewall.name + ', table <' + s.firewall.table + '>)');
    } else {
      const p = s.lastPush;
      const what = p.kind === 'diff' ? 'added ' + p.added + ', removed ' + p.removed : 'replaced the table';
      text(push, ago(s.now - p.at) + ' to <' + p.table + '> (' + s.firewall.name + '): ' +
        (p.error ? 'failed: ' + p.error : what + '; ' + p.size + (p.size === 1 ? ' address' : ' addresses')) + ', ' + Math.round(p.seconds * 1000) + ' ms');
      push.classList.toggle('failed', Boolean(p.error));
    }

    const body = $('lists').tBodies[0];
    body.replaceChildren();
    if (!s.lists) {
      $('lists-section').classList.add('hidden');
    } else if (s.lists.length === 0) {
      const td = text(document.createElement('td'), 'none: pfgrey setup loads them from spamd.conf');
      td.colSpan = 2;
      body.append(document.createElement('tr'));
      body.rows[0].append(td);
    } else {
      for (const l of s.lists) {
        const tr = document.createElement('tr');
        tr.append(text(document.createElement('td'), l.tag), text(document.createElement('td'), String(l.blocks)));
        body.append(tr);
      }
    }

    const t = s.totals;
    const totals = [];
    if (s.held) totals.push(['tuples', t.tuples]);
    totals.push(['promotions', t.promotions], ['traps', t.traps], ['expiries', t.expiries]);
    if (s.firewall) totals.push(['firewall pushes', t.pushes + ' (' + t.pushFailures + ' failed)']);
    totals.push(['store commits', t.commits + ' (' + t.commitFailures + ' failed)']);
    const answered = Object.entries(s.policy).filter(([, n]) => n > 0);
    if (s.command === 'policy' || answered.length > 0) {
      totals.push(['policy requests', answered.length ? answered.map(([k, n]) => k + ' ' + n).join(', ') : 'none']);
    }
    fill($('totals'), totals);
  }

  async function refresh() {
    try {
      const res = await fetch('/status.json', { cache: 'no-store' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      render(await res.json());
      document.body.dataset.loaded = 'yes';
    } catch (err) {
      text($('updated'), 'cannot read /status.json: ' + err.message + ' (retrying)');
    }
  }

  window.addEventListener('resize', () => {
    for (const id of Object.keys(plots)) plots[id].setSize({ width: Math.max(300, $(id).clientWidth), height: 220 });
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
