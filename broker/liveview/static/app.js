// The live view of a marvelo broker: polls the JSON endpoints of this server every second and
// draws the selected pipeline's graph (SVG, jobs in layers by depth from the sources), its jobs,
// the workers, the events and the log tail. Plain JavaScript, no library, nothing fetched from
// elsewhere; every text from the broker goes in as text, never as markup.
'use strict';

const REFRESH_MS = 1000;
const SVGNS = 'http://www.w3.org/2000/svg';
const NODE_W = 184, NODE_H = 66, COL_W = 270, ROW_H = 100, PAD = 24;

let selected = decodeURIComponent(location.hash.slice(1));
let timer = null;
let busy = false, again = false; // one refresh at a time; a selection during one asks for another

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  e.append(...children.filter(c => c !== null && c !== undefined).map(c => (typeof c === 'object' ? c : String(c))));
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVGNS, tag);
  setAttrs(e, attrs);
  e.append(...children.filter(c => c !== null && c !== undefined).map(c => (typeof c === 'object' ? c : String(c))));
  return e;
}

function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : String(v));
  }
}

// The endpoints beside the page, without the user name and password a URL may carry (fetch
// refuses those; the browser sends the credentials it authenticated the page with).
const BASE = location.origin + location.pathname.replace(/[^/]*$/, '');

async function getJSON(path) {
  const r = await fetch(BASE + path, { cache: 'no-store', credentials: 'same-origin' });
  if (!r.ok) {
    let msg = r.status + ' ' + r.statusText;
    try { msg += ': ' + (await r.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.json();
}

function fmtRate(x) {
  if (!x) return '0';
  return x >= 100 ? Math.round(x).toString() : x.toFixed(1);
}

function fmtCount(n) {
  return (n || 0).toLocaleString('en-US');
}

function fmtBytes(n) {
  if (!n) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toString() : n.toFixed(1)) + ' ' + units[i];
}

function fmtTime(s) {
  const d = new Date(s);
  const p = (n, w) => String(n).padStart(w || 2, '0');
  return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()) + '.' + p(d.getMilliseconds(), 3);
}

function fmtAge(s) {
  if (s < 1) return Math.round(s * 1000) + ' ms';
  if (s < 120) return s.toFixed(1) + ' s';
  return Math.round(s / 60) + ' min';
}

const TERMINAL = new Set(['finished', 'failed', 'stopped']);

// choose keeps the selected pipeline, or picks the latest unfinished one, else the latest.
function choose(pipelines) {
  if (pipelines.some(p => p.name === selected)) return;
  const bySubmitted = [...pipelines].sort((a, b) => new Date(b.submitted) - new Date(a.submitted));
  const live = bySubmitted.find(p => !TERMINAL.has(p.state));
  selected = (live || bySubmitted[0] || { name: '' }).name;
}

function renderList(pipelines) {
  const ul = document.getElementById('pipelines');
  if (pipelines.length === 0) {
    ul.replaceChildren(el('li', { class: 'empty' }, 'no pipeline yet'));
    return;
  }
  ul.replaceChildren(...pipelines.map(p => el('li', {},
    el('a', { href: '#' + encodeURIComponent(p.name), class: p.name === selected ? 'selected' : null, 'data-pipeline': p.name },
      el('span', { class: 'name' }, p.name),
      el('span', { class: 'badge ' + p.state }, p.state), ' ',
      el('span', { class: 'meta' }, 'run ' + p.run + ' · ' + p.jobs.length + ' jobs')))));
}

function nodePos(j) {
  return { x: PAD + j.depth * COL_W, y: PAD + j.row * ROW_H };
}

function renderGraph(p) {
  const g = document.getElementById('graph');
  if (!p) {
    g.replaceChildren();
    g.setAttribute('viewBox', '0 0 400 60');
    return;
  }
  const rows = Math.max(1, ...p.jobs.map(j => j.row + 1));
  const cols = Math.max(1, p.depth);
  let width = PAD * 2 + (cols - 1) * COL_W + NODE_W;
  let height = PAD * 2 + (rows - 1) * ROW_H + NODE_H + 30; // room below for feedback pipes
  g.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
  g.setAttribute('data-pipeline', p.name);
  const byID = new Map(p.jobs.map(j => [j.id, j]));
  const defs = svg('defs', {},
    svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' })));
  const edges = [];
  for (const e of p.edges) {
    const a = byID.get(e.from), b = byID.get(e.to);
    if (!a || !b) continue;
    const pa = nodePos(a), pb = nodePos(b);
    let d, lx, ly;
    if (b.depth > a.depth) {
      const x1 = pa.x + NODE_W, y1 = pa.y + NODE_H / 2, x2 = pb.x, y2 = pb.y + NODE_H / 2;
      const dx = (x2 - x1) / 2;
      d = `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
      lx = (x1 + x2) / 2; ly = (y1 + y2) / 2 - 6;
    } else { // a feedback pipe: under the jobs, back to the reader
      const x1 = pa.x + NODE_W / 2, y1 = pa.y + NODE_H, x2 = pb.x + NODE_W / 2, y2 = pb.y + NODE_H;
      const low = Math.max(y1, y2) + 28;
      d = `M${x1},${y1} C${x1},${low} ${x2},${low} ${x2},${y2}`;
      lx = (x1 + x2) / 2; ly = low - 4;
    }
    const rate = e.realtime ? e.blocks_per_s : e.messages_per_s;
    const cls = 'edge' + (rate > 0 ? ' flowing' : '') + (e.lag > 0 ? ' lagging' : '');
    const lines = ['pipe ' + e.pipe + (e.realtime ? ' (realtime)' : ''), fmtRate(rate) + (e.realtime ? ' blocks/s' : ' msg/s')];
    if (e.lag > 0) lines.push('lag ' + fmtCount(e.lag));
    const label = svg('text', { x: lx, y: ly - 13 * (lines.length - 1), 'text-anchor': 'middle', class: 'elabel' },
      ...lines.map((t, i) => svg('tspan', { x: lx, dy: i === 0 ? 0 : 13 }, t)));
    edges.push(svg('g', { 'data-pipe': e.pipe }, svg('path', { d, class: cls, 'marker-end': 'url(#arrow)' }), label));
  }
  const nodes = p.jobs.map(j => {
    const { x, y } = nodePos(j);
    const sub = '#' + j.id + (j.kind ? ' · ' + j.kind : '') + ' · ' + j.state;
    const where = (j.worker ? 'on ' + j.worker : 'not placed') + ' · out ' + fmtRate(j.blocks_out_per_s) + '/s';
    return svg('g', { class: 'node ' + j.state, 'data-job': j.id, transform: `translate(${x},${y})` },
      svg('title', {}, j.name + (j.error ? ': ' + j.error : '')),
      svg('rect', { width: NODE_W, height: NODE_H, rx: 6 }),
      svg('rect', { class: 'bar', width: 5, height: NODE_H, rx: 2 }),
      svg('text', { x: 14, y: 20, class: 'jname' }, clip(j.name, 22)),
      svg('text', { x: 14, y: 38, class: 'jsub' }, clip(sub, 30)),
      svg('text', { x: 14, y: 56, class: 'jsub' }, clip(where, 30)));
  });
  g.replaceChildren(defs, ...edges, ...nodes);
}

function clip(s, n) {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

function renderJobs(p) {
  const tbody = document.querySelector('#jobs tbody');
  if (!p) { tbody.replaceChildren(); return; }
  const cell = (j, field, text, cls) => el('td', { class: cls, 'data-job': j.id, 'data-field': field }, text);
  tbody.replaceChildren(...p.jobs.map(j => el('tr', { 'data-job': j.id },
    cell(j, 'name', '#' + j.id + ' ' + j.name),
    el('td', {}, el('span', { class: 'badge ' + j.state, title: j.error || null }, j.state)),
    cell(j, 'worker', j.worker || '–'),
    cell(j, 'blocks_in', fmtCount(j.blocks_in), 'num'),
    cell(j, 'blocks_out', fmtCount(j.blocks_out), 'num'),
    cell(j, 'blocks_in_per_s', fmtRate(j.blocks_in_per_s), 'num'),
    cell(j, 'blocks_out_per_s', fmtRate(j.blocks_out_per_s), 'num'),
    cell(j, 'cpu_percent', j.cpu_percent.toFixed(1), 'num'),
    cell(j, 'mem_bytes', fmtBytes(j.mem_bytes), 'num'),
    cell(j, 'restarts', j.restarts || 0, 'num'))));
}

function renderWorkers(workers) {
  const tbody = document.querySelector('#workers tbody');
  if (workers.length === 0) {
    tbody.replaceChildren(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'no worker registered')));
    return;
  }
  const rows = [];
  for (const w of workers) {
    const used = w.slots > 0 ? Math.min(100, 100 * w.slots_used / w.slots) : 0;
    const bar = el('span', { class: 'slots', title: w.slots_used + ' of ' + w.slots + ' slots' }, el('span', {}));
    bar.firstChild.style.width = used.toFixed(0) + '%';
    rows.push(el('tr', { 'data-worker': w.name },
      el('td', {}, el('b', {}, w.name), ' ',
        !w.alive ? el('span', { class: 'badge dead' }, 'lost') : null,
        w.cordoned ? el('span', { class: 'badge cordoned' }, 'cordoned') : null,
        w.local ? el('span', { class: 'badge local' }, 'LOCAL') : null),
      el('td', {}, bar, w.slots_used + '/' + w.slots),
      el('td', { class: 'num', title: 'CPU in use' }, (100 - w.cpu_free).toFixed(0) + '%'),
      el('td', { class: 'num', title: 'memory in use' }, (100 - w.mem_free).toFixed(0) + '%'),
      el('td', { class: 'num' }, w.load1.toFixed(2)),
      el('td', { class: 'num' }, fmtAge(w.heartbeat_age_s))));
    if (w.jobs.length > 0) {
      rows.push(el('tr', {}, el('td', { colspan: 6, class: 'jobsof' }, w.jobs.join(' · '))));
    }
  }
  tbody.replaceChildren(...rows);
}

function eventClass(kind) {
  if (/fail|lost|forced|error/.test(kind)) return 'bad';
  if (/moved|degraded|stale|pending|stopping/.test(kind)) return 'warn';
  if (/running|started|submitted|placed|finished/.test(kind)) return 'good';
  return '';
}

function renderEvents(events) {
  const ol = document.getElementById('events');
  if (events.length === 0) {
    ol.replaceChildren(el('li', { class: 'empty' }, 'no event'));
    return;
  }
  ol.replaceChildren(...events.slice().reverse().map(e => el('li', { class: eventClass(e.kind) },
    el('span', { class: 't' }, fmtTime(e.time)),
    el('span', { class: 'k' }, e.kind + (e.job ? ' #' + e.job : '')),
    e.message)));
}

function renderLogs(lines) {
  const pre = document.getElementById('logs');
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  if (lines.length === 0) {
    pre.replaceChildren(el('span', { class: 'empty' }, 'no line yet'));
    return;
  }
  pre.replaceChildren(...lines.map(l => el('span', { class: l.level === 'warn' || l.level === 'error' ? l.level : null },
    fmtTime(l.time) + ' ', el('span', { class: 'who' }, l.name + '#' + l.job + '@' + l.worker), ' ' + l.text + '\n')));
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function setStatus(ok, text) {
  const s = document.getElementById('status');
  s.className = 'status ' + (ok ? 'ok' : 'error');
  s.textContent = text;
}

async function refresh() {
  if (busy) { again = true; return; }
  busy = true;
  clearTimeout(timer);
  try {
    const [pl, wk] = await Promise.all([getJSON('api/pipelines'), getJSON('api/workers')]);
    choose(pl.pipelines);
    const p = pl.pipelines.find(x => x.name === selected);
    document.getElementById('pipeline-title').textContent = p ? p.name + ' · run ' + p.run + ' · ' + p.state + (p.error ? ' · ' + p.error : '') : '';
    document.title = 'marvelo · ' + (p ? p.name : 'live');
    renderList(pl.pipelines);
    renderGraph(p);
    renderJobs(p);
    renderWorkers(wk.workers);
    if (p) {
      const q = encodeURIComponent(p.name);
      const [ev, lg] = await Promise.all([getJSON('api/events?pipeline=' + q + '&limit=60'), getJSON('api/logs?pipeline=' + q + '&tail=100')]);
      renderEvents(ev.events);
      renderLogs(lg.lines);
    } else {
      renderEvents([]);
      renderLogs([]);
    }
    setStatus(true, 'live · ' + fmtTime(pl.time));
  } catch (err) {
    setStatus(false, 'cannot update: ' + err.message);
  } finally {
    busy = false;
    if (again) {
      again = false;
      refresh();
    } else {
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }
}

window.addEventListener('hashchange', () => {
  selected = decodeURIComponent(location.hash.slice(1));
  refresh();
});
refresh();
