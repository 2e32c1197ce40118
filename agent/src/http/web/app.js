// hark's status page: live state from /api/v1/events (the same JSON as
// /api/v1/status), listening over WHEP. Device strings are untrusted: every
// value goes in as text, never as markup.
'use strict';

const hark = (window.hark = { state: null, events: 0, listeners: {}, errors: [] });
const $ = (id) => document.getElementById(id);
const cards = new Map();

function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

// -60..0 dBFS onto 0..100 %.
const pct = (db) => (db == null || !isFinite(db) ? 0 : Math.max(0, Math.min(100, ((db + 60) / 60) * 100)));
const dbText = (db) => (db == null || !isFinite(db) ? '–' : `${db.toFixed(1)} dB`);

function meter(label) {
  const bar = el('span');
  const peak = el('i');
  const m = el('div', { class: 'meter', role: 'meter', 'aria-label': label, 'aria-valuemin': '-60', 'aria-valuemax': '0' }, bar, peak);
  const text = el('span', { class: 'meter-label' });
  return {
    root: el('div', {}, m, text),
    set(rms, peakDb) {
      bar.style.width = `${pct(rms)}%`;
      peak.style.left = `${pct(peakDb)}%`;
      m.setAttribute('aria-valuenow', rms == null || !isFinite(rms) ? '-60' : rms.toFixed(1));
      text.textContent = `${label}: ${dbText(rms)} rms, ${dbText(peakDb)} peak`;
    },
  };
}

function identity(d) {
  if (!d) return '';
  const who = [d.manufacturer, d.product].filter(Boolean).join(' ');
  const where = d.serial ? `serial ${d.serial}` : d.port ? `port ${d.port}` : '';
  return [who, d.vendor_product, where].filter(Boolean).join(' · ');
}

function stateClass(s) {
  if (s.state === 'running' && !s.silent) return 'ok';
  if (s.state === 'running' || s.state === 'starting' || s.state === 'backoff') return 'warn';
  return 'bad';
}

function makeCard(s) {
  const c = { name: s.name, meters: [] };
  c.badge = el('span', { class: 'badge' });
  c.plan = el('p');
  c.who = el('p', { class: 'muted' });
  c.reason = el('p', { class: 'reason' });
  c.meterBox = el('div', { class: 'meters' });
  c.stats = el('p', { class: 'muted' });
  c.rec = el('p');
  const url = el('code');
  c.url = url;
  const copy = el('button', {
    type: 'button',
    text: 'Copy',
    'aria-label': `Copy the RTSP URL of ${s.name}`,
    onclick: () => copyText(url.textContent, copy),
  });
  c.play = el('button', {
    type: 'button',
    class: 'play',
    text: 'Listen',
    'aria-pressed': 'false',
    'aria-label': `Listen to ${s.name}`,
    onclick: () => (hark.listeners[c.name] ? stop(c.name) : listen(c.name, c)),
  });
  c.heard = meter('in this browser');
  c.heard.root.hidden = true;
  c.listenNote = el('p', { class: 'muted', role: 'status' });
  c.root = el(
    'li',
    { class: 'card', 'data-stream': s.name },
    el('h3', {}, el('span', { text: s.name }), c.badge),
    c.plan,
    c.who,
    c.reason,
    c.meterBox,
    c.stats,
    c.rec,
    el('div', { class: 'url' }, url, copy),
    el('div', { class: 'listen' }, c.play, c.heard.root),
    c.listenNote,
  );
  return c;
}

function updateCard(c, s, st) {
  c.badge.textContent = s.silent && s.state === 'running' ? 'silent' : s.state;
  c.badge.className = `badge ${stateClass(s)}`;
  c.plan.textContent = `${s.codec} · ${s.sample_rate} Hz · ${s.channels} ch · ${s.source}`;
  const dev = s.card != null ? st.devices.find((d) => d.card === s.card) : null;
  c.who.textContent = identity(dev);
  c.who.hidden = !dev;
  c.reason.textContent = s.last_error || '';
  c.reason.hidden = !s.last_error || s.state === 'running';
  // One meter per channel for groups; the loudest channel otherwise.
  const levels = s.group
    ? s.group.rms_dbfs.map((r, i) => [`channel ${i + 1}`, r, s.group.peak_dbfs[i]])
    : [['level', s.rms_dbfs, s.peak_dbfs]];
  if (c.meters.length !== levels.length) {
    c.meterBox.replaceChildren();
    c.meters = levels.map(([label]) => meter(label));
    c.meters.forEach((m) => c.meterBox.append(m.root));
  }
  levels.forEach(([, r, p], i) => c.meters[i].set(r, p));
  const flags = [];
  if (s.silent) flags.push('silent');
  if (s.state === 'stalled') flags.push('stalled');
  c.stats.textContent = [
    `${s.clients} client${s.clients === 1 ? '' : 's'}`,
    `${s.restarts} restart${s.restarts === 1 ? '' : 's'}`,
    `${s.stalls} stall${s.stalls === 1 ? '' : 's'}`,
    ...flags,
  ].join(' · ');
  const r = st.recording && st.recording.streams[s.name];
  c.rec.textContent = r ? `recording: ${r.state}${r.reason ? ` (${r.reason})` : ''}` : '';
  c.rec.hidden = !r;
  c.url.textContent = `rtsp://${location.hostname}:${st.rtsp_port}/${s.name}`;
}

function render(st) {
  hark.state = st;
  $('summary').textContent = `${st.state}: ${st.summary}`;
  $('summary').className = st.state === 'running' ? 'ok' : 'warn';
  const d = st.deadman;
  const dm = $('deadman');
  dm.textContent = d.enabled
    ? `deadman ${d.state}: ${d.reboots_in_window}/${d.max_reboots} reboots in ${Math.round(d.window_s / 3600)} h`
    : 'deadman off';
  dm.className = `badge ${['armed', 'disabled'].includes(d.state) ? 'ok' : 'warn'}`;
  $('version').textContent = `harkd ${st.version}, up ${Math.floor(st.uptime_seconds / 60)} min`;

  const names = new Set(st.streams.map((s) => s.name));
  for (const [name, c] of cards) {
    if (!names.has(name)) {
      stop(name);
      c.root.remove();
      cards.delete(name);
    }
  }
  const list = $('streams');
  st.streams.forEach((s) => {
    let c = cards.get(s.name);
    if (!c) {
      c = makeCard(s);
      cards.set(s.name, c);
    }
    list.append(c.root); // keeps the agent's order
    updateCard(c, s, st);
  });
  $('no-streams').hidden = st.streams.length > 0;

  const body = $('devices').tBodies[0];
  body.replaceChildren(
    ...st.devices.map((dv) =>
      el(
        'tr',
        {},
        el('td', { text: String(dv.card) }),
        el('td', { text: dv.name || dv.card_id }),
        el('td', { text: dv.reason ? `${dv.status} (${dv.reason})` : dv.status }),
        el('td', { text: identity(dv) }),
        el('td', { text: `${dv.formats.join(' ')} · ${dv.rates.join(', ')} Hz · ${dv.channels} ch` }),
      ),
    ),
  );
  $('no-devices').hidden = st.devices.length > 0;
  $('devices').hidden = st.devices.length === 0;

  const rec = st.recording;
  $('recordings-section').hidden = !rec;
  if (rec) {
    const disk = rec.disk || {};
    $('disk').textContent = disk.free_bytes != null ? `${(disk.free_bytes / 1e9).toFixed(1)} GB free` : '';
  }
}

let recordingsAt = 0;
async function refreshRecordings() {
  if (!hark.state || !hark.state.recording || Date.now() - recordingsAt < 30000) return;
  recordingsAt = Date.now();
  try {
    const r = await fetch('/api/v1/recordings');
    if (!r.ok) return;
    const files = await r.json();
    const by = new Map();
    files.forEach((f) => by.set(f.stream, [...(by.get(f.stream) || []), f]));
    $('recordings').replaceChildren(
      ...[...by].map(([stream, fs]) =>
        el(
          'details',
          {},
          el('summary', { text: `${stream}: ${fs.length} file${fs.length === 1 ? '' : 's'}` }),
          el(
            'ul',
            {},
            ...fs.map((f) =>
              el('li', {}, el('a', { href: f.url, download: f.file, text: f.file }), ` ${(f.bytes / 1e6).toFixed(1)} MB`),
            ),
          ),
        ),
      ),
    );
  } catch (e) {
    hark.errors.push(String(e));
  }
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    // Not a secure context (plain http on the LAN): select it instead.
    const range = document.createRange();
    range.selectNodeContents(button.previousSibling);
    const sel = getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    button.textContent = 'Selected';
  }
  setTimeout(() => (button.textContent = 'Copy'), 1500);
}

// ---- listening (WHEP) ----

function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((done) => {
    const t = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(t);
        done();
      }
    });
  });
}

function analyse(L, stream, c) {
  try {
    const ctx = new AudioContext();
    const an = ctx.createAnalyser();
    an.fftSize = 2048;
    ctx.createMediaStreamSource(stream).connect(an);
    L.ctx = ctx;
    const buf = new Float32Array(an.fftSize);
    const tick = () => {
      if (hark.listeners[c.name] !== L) return;
      an.getFloatTimeDomainData(buf);
      let sum = 0;
      let peak = 0;
      for (const v of buf) {
        sum += v * v;
        peak = Math.max(peak, Math.abs(v));
      }
      L.rms = 10 * Math.log10(sum / buf.length || 1e-12);
      L.peak = 20 * Math.log10(peak || 1e-6);
      c.heard.set(L.rms, L.peak);
      requestAnimationFrame(tick);
    };
    tick();
  } catch (e) {
    hark.errors.push(`analyser: ${e}`);
  }
}

async function listen(name, c) {
  const pc = new RTCPeerConnection();
  const L = { pc, location: null, audio: new Audio(), ctx: null };
  hark.listeners[name] = L;
  c.play.setAttribute('aria-pressed', 'true');
  c.play.textContent = 'Stop';
  c.listenNote.textContent = 'connecting…';
  c.heard.root.hidden = false;
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.ontrack = (ev) => {
    const stream = ev.streams[0] || new MediaStream([ev.track]);
    L.audio.srcObject = stream;
    L.audio.play().catch((e) => hark.errors.push(`play: ${e}`));
    analyse(L, stream, c);
  };
  pc.onconnectionstatechange = () => {
    if (hark.listeners[name] !== L) return;
    if (pc.connectionState === 'connected') c.listenNote.textContent = 'listening';
    if (pc.connectionState === 'failed') stop(name, 'the connection failed');
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 2000);
    const r = await fetch(`/${encodeURIComponent(name)}/whep`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    if (r.status !== 201) throw new Error(`${r.status} ${(await r.text()).trim()}`);
    L.location = r.headers.get('Location');
    if (hark.listeners[name] !== L) {
      fetch(L.location, { method: 'DELETE', keepalive: true }).catch(() => {});
      return;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  } catch (e) {
    hark.errors.push(`${name}: ${e.message || e}`);
    stop(name, e.message || String(e));
  }
}

function stop(name, why) {
  const L = hark.listeners[name];
  if (!L) return;
  delete hark.listeners[name];
  L.pc.close();
  L.audio.srcObject = null;
  if (L.ctx) L.ctx.close().catch(() => {});
  if (L.location) fetch(L.location, { method: 'DELETE', keepalive: true }).catch(() => {});
  const c = cards.get(name);
  if (c) {
    c.play.setAttribute('aria-pressed', 'false');
    c.play.textContent = 'Listen';
    c.heard.root.hidden = true;
    c.listenNote.textContent = why ? `stopped: ${why}` : '';
  }
}

window.addEventListener('pagehide', () => Object.keys(hark.listeners).forEach((n) => stop(n)));

function connect() {
  const es = new EventSource('/api/v1/events');
  es.addEventListener('status', (e) => {
    hark.events += 1;
    render(JSON.parse(e.data));
    $('conn').textContent = 'live';
    refreshRecordings();
  });
  es.onerror = () => {
    $('conn').textContent = 'connection lost; retrying…';
  };
}

connect();
