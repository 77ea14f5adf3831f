/* Herald portal: a small client of the /v1 API. No build step, no dependencies.
 * Untrusted text (URLs, descriptions, excerpts, errors, headers) is only ever set with textContent. */
(function () {
  'use strict';

  var MAX_ENDPOINTS = 50;
  var MAX_EVENTS = 50;
  var TOKEN_KEY = 'herald.portal.token';
  var ME_KEY = 'herald.portal.me';
  var THEME_KEY = 'herald.portal.theme';

  var state = { token: null, me: null, canWrite: false, types: null, expired: false, dirty: false, seq: 0, ready: false };
  var main = document.getElementById('main');

  // ---------- DOM helpers ----------
  function h(tag, props) {
    var el = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (k) {
        var v = props[k];
        if (v == null || v === false) return;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else if (k.slice(0, 2) === 'on' && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else if (k === 'value') el.value = v;
        else if (k === 'checked') el.checked = !!v;
        else el.setAttribute(k, v === true ? '' : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) add(el, arguments[i]);
    return el;
  }
  function add(el, kid) {
    if (kid == null || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { add(el, k); }); return; }
    el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  function byId(id) { return document.getElementById(id); }
  var uid = 0;
  function nextId(p) { uid += 1; return (p || 'f') + uid; }

  // ---------- Formatting ----------
  function pad(n) { return n < 10 ? '0' + n : String(n); }
  function fmtAbs(iso) {
    var d = new Date(iso);
    return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }
  function fmtUtc(iso) { return new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC'); }
  function relText(iso, now) {
    var ms = new Date(iso).getTime() - (now || Date.now());
    var future = ms > 0, s = Math.round(Math.abs(ms) / 1000);
    var t;
    if (s < 45) return future ? 'in a few seconds' : 'just now';
    if (s < 90) t = '1 min';
    else if (s < 3600) t = Math.round(s / 60) + ' min';
    else if (s < 5400) t = '1 h';
    else if (s < 86400) t = Math.round(s / 3600) + ' h';
    else if (s < 172800) t = '1 day';
    else t = Math.round(s / 86400) + ' days';
    return future ? 'in ' + t : t + ' ago';
  }
  function timeEl(iso, abs) {
    if (!iso) return h('span', { class: 'muted' }, '—');
    var title = fmtAbs(iso) + ' (local) · ' + fmtUtc(iso);
    if (abs) {
      return h('span', null, h('time', { datetime: iso, title: title }, fmtAbs(iso)), ' ',
        h('span', { class: 'muted small', 'data-rel': iso }, '(' + relText(iso) + ')'));
    }
    return h('time', { datetime: iso, title: title, 'data-rel-only': iso }, relText(iso));
  }
  setInterval(function () {
    document.querySelectorAll('[data-rel-only]').forEach(function (el) { el.textContent = relText(el.getAttribute('data-rel-only')); });
    document.querySelectorAll('[data-rel]').forEach(function (el) { el.textContent = '(' + relText(el.getAttribute('data-rel')) + ')'; });
  }, 30000);
  function plural(n, one, many) { return n + ' ' + (n === 1 ? one : (many || one + 's')); }
  function parseUrl(u) { try { return new URL(u); } catch (e) { return null; } }
  function hostOf(u) { var p = parseUrl(u); return p ? p.hostname : u; }
  function urlNode(u) {
    // Split the text as stored, never the parsed form: the parser lower-cases and punycodes the
    // host, so looking it up in the original would cut the URL at the wrong place.
    var m = parseUrl(u) && /^([a-z][a-z0-9+.-]*:\/\/)([^\/?#]*)([\s\S]*)$/i.exec(u);
    if (!m) return h('span', null, u);
    return h('span', { class: 'wrap-any' }, h('span', { class: 'muted' }, m[1]), h('strong', null, m[2]), m[3]);
  }
  function chars(s) { return Array.from(s || '').length; }
  function toLocalInput(d) {
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  }
  function fromLocalInput(v) { if (!v) return null; var d = new Date(v); return isNaN(d.getTime()) ? null : d.toISOString(); }
  var tz = (function () { try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time'; } catch (e) { return 'local time'; } })();
  function prettyMaybeJson(s) {
    if (s == null) return null;
    var t = String(s).trim();
    if (t[0] === '{' || t[0] === '[') { try { return JSON.stringify(JSON.parse(t), null, 2); } catch (e) { /* keep raw */ } }
    return String(s);
  }

  // ---------- Announcements, copy, toasts ----------
  function announce(msg) {
    var a = byId('announce');
    a.textContent = '';
    setTimeout(function () { a.textContent = msg; }, 30);
  }
  function copyText(text, label) {
    function done() { announce((label || 'Text') + ' copied to clipboard'); }
    function fallback() {
      var ta = h('textarea', { class: 'sr-only', readonly: true, 'aria-hidden': 'true' });
      ta.value = text; document.body.appendChild(ta); ta.select();
      var ok = false; try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      ta.remove();
      if (ok) done(); else announce('Copy failed: select the text and copy it by hand');
      return ok;
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      return navigator.clipboard.writeText(text).then(function () { done(); return true; }, fallback);
    }
    return Promise.resolve(fallback());
  }
  function copyBtn(getText, label) {
    var b = h('button', { type: 'button', class: 'btn btn-sm copy-btn', 'aria-label': 'Copy ' + label, 'data-copy': label }, 'Copy');
    b.addEventListener('click', function () {
      copyText(typeof getText === 'function' ? getText() : getText, label).then(function (ok) {
        if (!ok) return;
        b.textContent = 'Copied';
        setTimeout(function () { b.textContent = 'Copy'; }, 1600);
      });
    });
    return b;
  }
  function toast(opts) {
    var box = byId('toasts');
    var t = h('div', { class: 'toast' + (opts.error ? ' error' : ''), role: opts.error ? 'alert' : 'status' });
    var body = h('div', { class: 't-body' }, h('div', { class: 't-title' }, opts.title));
    if (opts.text) add(body, h('div', { class: 'small' }, opts.text));
    if (opts.err) add(body, errMeta(opts.err));
    if (opts.link) add(body, h('div', { class: 'small' }, h('a', { href: opts.link.href }, opts.link.text)));
    var close = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'aria-label': 'Dismiss notification' }, '✕');
    close.addEventListener('click', function () { t.remove(); });
    add(t, [body, close]);
    box.appendChild(t);
    if (!opts.error) setTimeout(function () { t.remove(); }, 6000);
    return t;
  }

  // ---------- API ----------
  function ApiError(status, env, requestId, retryAfter) {
    this.status = status;
    this.code = (env && env.code) || (status ? 'HTTP_' + status : 'NETWORK');
    this.apiMessage = (env && env.message) || '';
    this.details = (env && env.details) || null;
    this.requestId = (env && env.request_id) || requestId || null;
    this.retryAfter = retryAfter;
    this.message = plainMessage(this);
  }
  ApiError.prototype = Object.create(Error.prototype);

  function plainMessage(e) {
    switch (e.code) {
      case 'UNAUTHORIZED': return 'This portal link has expired.';
      case 'FORBIDDEN': return 'This session can only view things; it cannot make changes.';
      case 'NOT_FOUND': return 'We could not find this. It may have been deleted.';
      case 'LIMIT_EXCEEDED': return 'You have reached the limit of ' + MAX_ENDPOINTS + ' endpoints. Delete one to add another.';
      case 'EVENT_EXPIRED': return 'This event is older than the retention period, so its data is gone and it cannot be replayed.';
      case 'RATE_LIMITED': return 'Too many requests. Try again in ' + plural(e.retryAfter || 1, 'second') + '.';
      case 'VALIDATION_FAILED': return 'Some fields need attention.';
      case 'ENDPOINT_INACTIVE': return 'This endpoint is disabled. Enable it first.';
      case 'PAYLOAD_TOO_LARGE': return 'That is too large to send.';
      case 'INVALID_INPUT': return 'The request could not be read. Reload the page and try again.';
      case 'UNAVAILABLE': return 'The service is briefly unavailable. Try again in a moment.';
      case 'INTERNAL': return 'Something went wrong on our side. Try again; if it keeps happening, contact support with the request id.';
      case 'NETWORK': return 'Could not reach the server. Check your connection and try again.';
      default: return e.apiMessage ? 'The request failed: ' + e.apiMessage + '.' : 'The request failed (HTTP ' + e.status + ').';
    }
  }

  function api(method, path, body) {
    var headers = { Accept: 'application/json', Authorization: 'Bearer ' + state.token };
    var init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
    if (body !== undefined) { headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (res) {
      var rid = res.headers.get('X-Request-Id');
      if (res.status === 204) return null;
      return res.text().then(function (txt) {
        var data = null;
        try { data = txt ? JSON.parse(txt) : null; } catch (e) { data = null; }
        if (res.ok) return data;
        var ra = parseInt(res.headers.get('Retry-After') || '', 10);
        var err = new ApiError(res.status, data && data.error, rid, isNaN(ra) ? null : ra);
        if (res.status === 401) sessionExpired(method !== 'GET');
        throw err;
      });
    }, function () { throw new ApiError(0, null, null, null); });
  }
  function qs(params) {
    var p = new URLSearchParams();
    Object.keys(params).forEach(function (k) { var v = params[k]; if (v != null && v !== '') p.set(k, v); });
    var s = p.toString();
    return s ? '?' + s : '';
  }
  function loadTypes() {
    if (state.types) return Promise.resolve(state.types);
    return api('GET', '/v1/event-types').then(function (r) { state.types = (r && r.data) || []; return state.types; });
  }

  function errMeta(err) {
    var box = h('div', { class: 'reqid' });
    var bits = [];
    if (err.code && err.code !== 'NETWORK') bits.push(err.code);
    if (err.status) bits.push('HTTP ' + err.status);
    if (bits.length) add(box, h('span', null, bits.join(' · ')));
    if (err.requestId) add(box, [h('span', null, 'Request id ', h('code', { 'data-request-id': err.requestId }, err.requestId)), copyBtn(err.requestId, 'request id')]);
    return box;
  }
  function errorPanel(err, retry, title) {
    if (state.expired) return h('div');
    var d = h('div', { class: 'alert', role: 'alert' }, h('h2', null, title || err.message));
    if (title) add(d, h('p', null, err.message));
    if (err.details && err.code !== 'VALIDATION_FAILED') add(d, detailsList(err.details));
    if (err.details && err.code === 'VALIDATION_FAILED') add(d, detailsList(err.details));
    add(d, errMeta(err));
    if (retry) add(d, h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'btn btn-sm', onclick: retry }, 'Try again')));
    return d;
  }
  function detailsList(details) {
    var ul = h('ul', { class: 'small' });
    Object.keys(details).forEach(function (k) { add(ul, h('li', null, h('code', null, k), ': ', String(details[k]))); });
    return ul;
  }
  function errorToast(err, title) {
    if (state.expired) return;
    toast({ error: true, title: title || err.message, text: title ? err.message : null, err: err });
  }

  // ---------- Session ----------
  function platformName() {
    var m = state.me;
    return (m && m.theme && m.theme.name) || 'your platform';
  }
  function returnUrl() {
    var m = state.me, u = m && m.return_url && parseUrl(m.return_url);
    return u && (u.protocol === 'https:' || u.protocol === 'http:') ? u.href : null;
  }
  function cacheMe(me) {
    try { sessionStorage.setItem(ME_KEY, JSON.stringify({ t: state.token.slice(-10), me: me })); } catch (e) { /* storage off */ }
  }
  function cachedMe(token) {
    try {
      var c = JSON.parse(sessionStorage.getItem(ME_KEY) || 'null');
      return c && token && c.t === token.slice(-10) ? c.me : null;
    } catch (e) { return null; }
  }

  function sessionPage(title, text) {
    state.seq += 1;
    byId('mainnav').hidden = true;
    byId('session-banner').hidden = true;
    clear(main);
    var back = returnUrl();
    var card = h('div', { class: 'card session-page' }, h('div', { class: 'card-body' },
      h('div', { class: 'empty-ico', 'aria-hidden': 'true' }, '⏱'),
      h('h1', null, title),
      h('p', { class: 'muted' }, text)));
    if (back) add(card.firstChild, h('div', { class: 'form-actions' }, h('a', { class: 'btn btn-primary', href: back, target: '_top', rel: 'noopener noreferrer' }, 'Back to ' + platformName())));
    add(main, card);
    document.title = title;
  }
  function sessionExpired(keepPage) {
    if (state.expired) return;
    state.expired = true;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
    var text = 'Open it again from ' + platformName() + '.';
    if (keepPage && state.dirty) {
      var back = returnUrl();
      var dlg = h('dialog', { 'aria-labelledby': 'exp-t' },
        h('div', { class: 'dlg-head' }, h('h2', { id: 'exp-t' }, 'This portal link has expired.')),
        h('div', { class: 'dlg-body' }, h('p', null, text), h('p', { class: 'muted' }, 'Your changes were not saved. They are still on the page, so you can copy them before you leave.')),
        h('div', { class: 'dlg-foot' }, back ? h('a', { class: 'btn', href: back, target: '_top', rel: 'noopener noreferrer' }, 'Back to ' + platformName()) : null,
          h('button', { type: 'button', class: 'btn btn-primary', onclick: function () { dlg.close(); } }, 'Keep this page open')));
      document.body.appendChild(dlg);
      dlg.showModal();
      return;
    }
    sessionPage('This portal link has expired.', text);
  }
  function applyBranding() {
    var me = state.me || {}, th = me.theme || {};
    var name = th.name || 'Webhooks';
    byId('brand-name').textContent = name;
    byId('brand-org').textContent = me.org_name || '';
    document.title = 'Webhooks · ' + (me.org_name || name);
    var logo = byId('brand-logo'), lu = th.logo_url && parseUrl(th.logo_url);
    if (lu && lu.protocol === 'https:') { logo.src = lu.href; logo.alt = name + ' logo'; logo.hidden = false; byId('brand-mark').hidden = true; }
    else byId('brand-mark').textContent = Array.from(name)[0].toUpperCase();
    if (th.accent_color) applyAccent(th.accent_color);
    byId('ro-label').hidden = !me.read_only;
    var back = byId('back-link'), ru = returnUrl();
    if (ru) { back.href = ru; back.textContent = '← Back to ' + platformName(); back.hidden = false; }
  }
  function hexRgb(hex) { return [1, 3, 5].map(function (i) { return parseInt(hex.substr(i, 2), 16); }); }
  function rgbHex(c) { return '#' + c.map(function (v) { var s = Math.round(v).toString(16); return s.length < 2 ? '0' + s : s; }).join(''); }
  function lum(c) {
    var a = c.map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2];
  }
  function contrast(a, b) { var x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); }
  function mix(c, t, f) { return c.map(function (v, i) { return v + (t[i] - v) * f; }); }
  function readable(c, bg, toward) {
    for (var f = 0; f <= 1; f += 0.05) { var m = mix(c, toward, f); if (contrast(m, bg) >= 4.6) return rgbHex(m); }
    return rgbHex(toward);
  }
  function applyAccent(hex) {
    if (!/^#[0-9a-fA-F]{6}$/.test(hex)) return;
    var c = hexRgb(hex), root = document.documentElement.style;
    var white = [255, 255, 255], black = [17, 20, 26];
    root.setProperty('--accent', hex);
    root.setProperty('--accent-fg', contrast(c, white) >= contrast(c, black) ? '#ffffff' : '#11141a');
    root.setProperty('--accent-text', readable(c, [246, 247, 249], [0, 0, 0]));
    root.setProperty('--accent-text-dark', readable(c, [23, 27, 34], [255, 255, 255]));
  }
  function watchExpiry() {
    var me = state.me;
    if (!me || !me.expires_at) return;
    var exp = new Date(me.expires_at).getTime();
    function tick() {
      if (state.expired) return;
      var left = exp - Date.now(), b = byId('session-banner');
      if (left > 5 * 60000) { b.hidden = true; return; }
      clear(b);
      var mins = Math.max(1, Math.ceil(left / 60000));
      if (left <= 0) add(b, 'This session has ended. Open the portal again from ' + platformName() + ' to continue.');
      else add(b, h('strong', null, 'This session ends in ' + plural(mins, 'minute') + '. '), 'Save what you are working on; then open the portal again from ' + platformName() + '.');
      var ru = returnUrl();
      if (ru) add(b, h('a', { href: ru, target: '_top', rel: 'noopener noreferrer' }, 'Back to ' + platformName()));
      b.hidden = false;
    }
    tick();
    setInterval(tick, 10000);
  }

  function hasToken(hash) { return /(^|&)token=/.test(hash); }
  // A new portal link opened where the portal already runs (the platform sets an iframe's src
  // again, or pastes a fresh link into the tab) only changes the fragment: the page is not
  // loaded again. Take the new token, drop it from the address bar, and start over with it.
  window.addEventListener('hashchange', function () {
    var hash = location.hash.slice(1);
    if (!hasToken(hash)) return;
    var p = new URLSearchParams(hash), token = p.get('token'), th = p.get('theme');
    try {
      if (th === 'light' || th === 'dark') sessionStorage.setItem(THEME_KEY, th);
      if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
      history.replaceState(null, '', location.pathname + location.search + '#/endpoints');
    } catch (e) { /* storage off: the token stays in the fragment, where boot() reads it */ }
    location.reload();
  });

  // A tab opened from the portal (the catalog links, rel=opener) gets a copy of its
  // sessionStorage, except where the portal is embedded in another site's page: the frame's
  // storage is partitioned then, and the new tab's copy is empty. Its opener is still this
  // origin, so the token is taken from there.
  function openerToken() {
    try {
      var o = window.opener;
      if (!o || o.location.origin !== location.origin) return null;
      return o.sessionStorage.getItem(TOKEN_KEY);
    } catch (e) { return null; }
  }
  function boot() {
    var hash = location.hash.slice(1);
    var token = null;
    if (hasToken(hash)) {
      var p = new URLSearchParams(hash);
      token = p.get('token');
      var th = p.get('theme');
      try {
        if (th === 'light' || th === 'dark') sessionStorage.setItem(THEME_KEY, th);
        if (token) sessionStorage.setItem(TOKEN_KEY, token);
      } catch (e) { /* memory only */ }
      history.replaceState(null, '', location.pathname + location.search + '#/endpoints');
    } else {
      try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }
      if (!token) {
        token = openerToken();
        try { if (token) sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* memory only */ }
      }
    }
    var theme = null;
    try { theme = sessionStorage.getItem(THEME_KEY); } catch (e) { theme = null; }
    if (theme) document.documentElement.setAttribute('data-theme', theme);
    if (!token) {
      state.me = null;
      sessionPage('No portal session', 'Open the webhooks portal from the dashboard of the platform you use; it gives you a link that signs you in.');
      return;
    }
    state.token = token;
    state.me = cachedMe(token);
    if (state.me) applyBranding();
    api('GET', '/v1/me').then(function (me) {
      state.me = me;
      cacheMe(me);
      state.canWrite = !me.read_only && (me.scopes || []).indexOf('webhooks:write') >= 0;
      applyBranding();
      byId('mainnav').hidden = false;
      watchExpiry();
      window.addEventListener('hashchange', render);
      render();
    }, function (err) {
      if (state.expired) return;
      clear(main);
      add(main, errorPanel(err, function () { location.reload(); }, 'The portal could not start.'));
    });
  }

  // ---------- Router ----------
  function route() {
    var raw = location.hash.replace(/^#/, '') || '/endpoints';
    var q = raw.indexOf('?');
    var path = q >= 0 ? raw.slice(0, q) : raw;
    var params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
    return { segs: path.split('/').filter(Boolean).map(safeDecode), params: params };
  }
  function safeDecode(seg) {
    // A malformed escape (#/endpoints/%E0%A4%A) must lead to "not found", not to an exception.
    try { return decodeURIComponent(seg); } catch (e) { return seg; }
  }
  function link(path, params) {
    var s = params ? params.toString() : '';
    return '#' + path + (s ? '?' + s : '');
  }
  function render() {
    if (state.expired) return;
    state.seq += 1;
    state.dirty = false;
    statQ.length = 0;
    var r = route(), ctx = { seq: state.seq, params: r.params, segs: r.segs };
    var s = r.segs, view;
    if (s[0] === 'endpoints' && !s[1]) view = viewEndpoints;
    else if (s[0] === 'endpoints' && s[1] === 'new') view = viewCreate;
    else if (s[0] === 'endpoints' && s[2] === 'settings') view = viewSettings;
    else if (s[0] === 'endpoints' && s[2] === 'recover') view = viewRecover;
    else if (s[0] === 'endpoints') view = viewEndpoint;
    else if (s[0] === 'deliveries' && s[1]) view = viewAttempt;
    else if (s[0] === 'deliveries') view = viewDeliveries;
    else if (s[0] === 'catalog') view = viewCatalog;
    else view = viewNotFound;
    document.querySelectorAll('[data-nav]').forEach(function (a) {
      if (a.getAttribute('data-nav') === s[0]) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    });
    clear(main);
    view(ctx);
    if (state.ready) main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  function alive(ctx) { return ctx.seq === state.seq && !state.expired; }
  function setTitle(t) { document.title = t + ' · ' + ((state.me && (state.me.theme && state.me.theme.name)) || 'Webhooks'); }
  function markReady() {
    if (state.ready) return;
    state.ready = true;
    try { performance.mark('portal:interactive'); } catch (e) { /* old browser */ }
    document.body.setAttribute('data-ready', '');
  }

  function pageHead(title, sub, actions, crumbs) {
    var head = h('div', { class: 'page-head' });
    var left = h('div', null);
    if (crumbs) add(left, h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, crumbs));
    add(left, typeof title === 'string' ? h('h1', null, title) : title);
    if (sub) add(left, h('div', { class: 'sub' }, sub));
    add(head, left);
    if (actions) add(head, h('div', { class: 'page-actions' }, actions));
    return head;
  }
  function viewNotFound() {
    setTitle('Not found');
    add(main, h('div', { class: 'card' }, h('div', { class: 'empty' }, h('h1', null, 'Page not found'),
      h('p', { class: 'muted' }, 'This address does not lead anywhere in the portal.'),
      h('div', { class: 'form-actions' }, h('a', { class: 'btn btn-primary', href: '#/endpoints' }, 'Go to endpoints')))));
    markReady();
  }
  function skeletonRows(tbody, cols, n) {
    for (var i = 0; i < n; i++) {
      var tr = h('tr', { 'aria-hidden': 'true' });
      for (var j = 0; j < cols; j++) add(tr, h('td', null, h('span', { class: 'skeleton' })));
      add(tbody, tr);
    }
  }
  function rowLinks(tbody) {
    tbody.addEventListener('click', function (e) {
      if (e.target.closest('a, button, input, select, textarea')) return;
      var sel = window.getSelection && window.getSelection();
      if (sel && String(sel).length) return;
      var tr = e.target.closest('tr'), a = tr && tr.querySelector('a[data-rowlink]');
      if (a) location.hash = a.getAttribute('href');
    });
  }

  // ---------- Badges ----------
  function badge(kind, icon, text) {
    return h('span', { class: 'badge b-' + kind }, h('span', { class: 'ico', 'aria-hidden': 'true' }, icon), text);
  }
  function health(ep) {
    if (ep.active) {
      if (ep.failing_since) return { b: badge('warn', '⚠', 'Failing'), line: h('span', { class: 'small muted' }, 'Failing since ', timeEl(ep.failing_since), ', being retried'), key: 'failing' };
      return { b: badge('ok', '✓', 'Active'), line: null, key: 'active' };
    }
    if (ep.disabled_reason === 'failing') return { b: badge('bad', '‖', 'Disabled after repeated failures'), line: h('span', { class: 'small muted' }, 'Herald retests it periodically'), key: 'disabled-failing' };
    if (ep.disabled_reason === 'gone') return { b: badge('bad', '✕', 'Disabled: receiver answered 410 Gone'), line: null, key: 'disabled-gone' };
    if (ep.disabled_reason === 'manual') return { b: badge('off', '‖', 'Disabled manually'), line: null, key: 'disabled-manual' };
    return { b: badge('off', '‖', 'Disabled'), line: null, key: 'disabled' };
  }
  function healthCell(ep) {
    var x = health(ep);
    return h('div', { class: 'status-line', 'data-health': x.key }, x.b, x.line);
  }
  function outcomeBadge(d) {
    if (d.outcome === 'success') return badge('ok', '✓', 'Delivered');
    if (d.outcome === 'retry') return badge('warn', '↻', 'Retrying');
    return badge('bad', '✕', 'Failed');
  }
  function outcomeCell(d) {
    var bits = ['attempt ' + d.attempt];
    if (d.outcome === 'retry' && d.next_attempt_at) bits.push(new Date(d.next_attempt_at).getTime() > Date.now() ? 'next ' + relText(d.next_attempt_at) : 'next attempt due now');
    return h('div', { class: 'status-line', 'data-outcome': d.outcome }, outcomeBadge(d), h('span', { class: 'small muted' }, bits.join(' · ')));
  }
  function eventsSummary(events) {
    if (!events || !events.length) return 'No events';
    if (events.indexOf('*') >= 0) return 'All events';
    if (events.length === 1) return events[0];
    return events[0] + ' + ' + (events.length - 1) + ' more';
  }
  function statusText(d) { return d.response_status == null ? 'no response' : String(d.response_status); }

  // ---------- Stats ----------
  var statQ = [], statRun = 0;
  var WINDOWS = [['1h', '1 h', 'the last hour'], ['24h', '24 h', 'the last 24 hours'], ['7d', '7 d', 'the last 7 days']];
  function loadStats(id, win) { return api('GET', '/v1/webhooks/' + encodeURIComponent(id) + '/stats' + qs({ window: win })); }
  // The list asks for each row's stats lazily, at most 5 at a time.
  function queueStats(id, cb) { statQ.push({ id: id, cb: cb }); pumpStats(); }
  function pumpStats() { while (statRun < 5 && statQ.length) runStat(statQ.shift()); }
  function runStat(j) {
    statRun += 1;
    function fin() { statRun -= 1; pumpStats(); }
    loadStats(j.id, '24h').then(function (r) { j.cb(r); }, function () { j.cb(null); }).then(fin, fin);
  }
  function listStats(r) {
    if (!r) return h('span', { class: 'small muted' }, 'Stats unavailable');
    var a = r.attempts || {}, failed = (a.retry || 0) + (a.dead || 0);
    return h('div', { class: 'small' },
      h('div', null, h('span', { 'data-delivered': '' }, (a.success || 0) + ' delivered'), ' · ', h('span', { class: failed ? 'warn-text' : null }, failed + ' failed')),
      h('div', { class: 'muted' }, r.last_success_at ? ['Last success ', timeEl(r.last_success_at)] : 'No success recorded'));
  }
  function statsCard(ctx, ep) {
    var win = ctx.params.get('window'), seq = 0;
    if (!WINDOWS.some(function (w) { return w[0] === win; })) win = '24h';
    var body = h('div', { class: 'card-body', 'data-stats': '' });
    var sub = h('span', { class: 'muted small' });
    var sw = h('div', { class: 'seg', role: 'group', 'aria-label': 'Time range' });
    var btns = WINDOWS.map(function (w) {
      var b = h('button', { type: 'button', class: 'btn btn-sm', 'data-window': w[0], title: 'Attempts in ' + w[2] }, w[1]);
      b.addEventListener('click', function () {
        if (win === w[0]) return;
        win = w[0];
        var p = new URLSearchParams(ctx.params); p.set('window', win); p.delete('created');
        history.replaceState(null, '', location.pathname + location.search + link('/endpoints/' + encodeURIComponent(ep.id), p));
        load();
      });
      add(sw, b);
      return b;
    });
    function load() {
      var mine = ++seq;
      btns.forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-window') === win)); });
      WINDOWS.forEach(function (w) { if (w[0] === win) sub.textContent = 'Attempts in ' + w[2]; });
      clear(body); add(body, [h('span', { class: 'skeleton' }), h('br'), h('span', { class: 'skeleton' })]);
      loadStats(ep.id, win).then(function (r) {
        if (alive(ctx) && mine === seq) drawStats(body, r);
      }, function (err) {
        if (!alive(ctx) || mine !== seq) return;
        clear(body);
        add(body, [h('p', { class: 'muted small', 'data-stats-error': '' }, 'Statistics are not available right now. ' + err.message),
          h('button', { type: 'button', class: 'btn btn-sm', onclick: load }, 'Try again')]);
      });
    }
    load();
    var card = h('section', { class: 'card', 'aria-labelledby': 'st-h' },
      h('div', { class: 'card-head' }, h('div', null, h('h2', { id: 'st-h' }, 'Delivery stats'), sub), sw), body);
    card.reload = load;
    return card;
  }
  function drawStats(body, r) {
    clear(body);
    var a = r.attempts || {}, total = 0;
    var parts = [['ok', '✓', a.success || 0, 'delivered', 'success'], ['warn', '↻', a.retry || 0, 'failed, retry scheduled', 'retry'], ['bad', '✕', a.dead || 0, 'failed, no more retries', 'dead']];
    var bar = h('div', { class: 'stat-bar', 'aria-hidden': 'true' });
    var legend = h('ul', { class: 'stat-legend' });
    parts.forEach(function (p) {
      total += p[2];
      if (p[2]) { var seg = h('span', { class: 'seg-' + p[0] }); seg.style.flexGrow = String(p[2]); add(bar, seg); }
      add(legend, h('li', { 'data-stat': p[4] }, h('span', { class: 'badge b-' + p[0] }, h('span', { class: 'ico', 'aria-hidden': 'true' }, p[1]), String(p[2])), ' ' + p[3]));
    });
    add(body, total ? [bar, legend] : h('p', { class: 'muted small', 'data-stats-empty': '' }, 'No delivery activity in this range.'));
    var l = r.latency_ms || {};
    function ms(v) { return v == null ? '—' : v + ' ms'; }
    var dl = h('dl', { class: 'kv' },
      h('dt', null, 'Response time'), h('dd', { 'data-latency': '' }, 'p50 ' + ms(l.p50) + ' · p95 ' + ms(l.p95) + ' · p99 ' + ms(l.p99)),
      h('dt', null, 'Waiting now'), h('dd', { 'data-pending': '' }, r.pending ? plural(r.pending, 'delivery', 'deliveries') + ' waiting for an attempt' : 'Nothing waiting'),
      h('dt', null, 'Last success'), h('dd', null, r.last_success_at ? timeEl(r.last_success_at, true) : h('span', { class: 'muted' }, 'None recorded')));
    if (r.failing_since) add(dl, [h('dt', null, 'Failing since'), h('dd', null, timeEl(r.failing_since, true))]);
    add(body, dl);
  }
  function certWarn(iso) {
    var left = new Date(iso).getTime() - Date.now();
    if (left <= 0) return badge('bad', '✕', 'Expired');
    if (left < 30 * 86400000) return badge('warn', '⚠', 'Expires ' + relText(iso));
    return null;
  }

  // ---------- Dialogs ----------
  function openDialog(opts) {
    // opts: title, body (nodes), confirm, danger, canConfirm(), onConfirm() -> Promise, focus (element)
    return new Promise(function (resolve) {
      var opener = document.activeElement;
      var tid = nextId('dlg');
      var errBox = h('div');
      var confirmBtn = h('button', { type: 'submit', class: 'btn ' + (opts.danger ? 'btn-danger' : 'btn-primary') }, opts.confirm);
      var cancelBtn = h('button', { type: 'button', class: 'btn' }, opts.cancel || 'Cancel');
      var form = h('form', { method: 'dialog', novalidate: true },
        h('div', { class: 'dlg-head' }, h('h2', { id: tid }, opts.title)),
        h('div', { class: 'dlg-body' }, opts.body, errBox),
        h('div', { class: 'dlg-foot' }, cancelBtn, confirmBtn));
      var dlg = h('dialog', { 'aria-labelledby': tid }, form);
      var busy = false, result = null;
      function sync() { confirmBtn.disabled = busy || (opts.canConfirm ? !opts.canConfirm() : false); }
      form.addEventListener('input', sync);
      cancelBtn.addEventListener('click', function () { if (!busy) dlg.close(); });
      dlg.addEventListener('cancel', function (e) { if (busy) e.preventDefault(); });
      dlg.addEventListener('close', function () {
        dlg.remove();
        if (opener && opener.focus && document.contains(opener)) opener.focus();
        resolve(result);
      });
      form.addEventListener('submit', function (e) {
        e.preventDefault();
        if (busy || confirmBtn.disabled) return;
        busy = true; sync(); confirmBtn.setAttribute('aria-busy', 'true'); clear(errBox);
        Promise.resolve(opts.onConfirm ? opts.onConfirm() : true).then(function (r) {
          busy = false; result = r == null ? true : r; dlg.close();
        }, function (err) {
          busy = false; confirmBtn.removeAttribute('aria-busy'); sync();
          if (state.expired) { dlg.close(); return; }
          add(errBox, errorPanel(err));
        });
      });
      document.body.appendChild(dlg);
      sync();
      dlg.showModal();
      (opts.focus || cancelBtn).focus();
    });
  }

  function showSecret(secret, title, intro, extra) {
    return new Promise(function (resolve) {
      var tid = nextId('sec'), sid = nextId('sec'), wid = nextId('sec');
      var acknowledged = false;
      var doneBtn = h('button', { type: 'button', class: 'btn btn-primary' }, 'I have stored it');
      var dlg = h('dialog', { 'aria-labelledby': tid, class: 'secret-dialog', 'data-secret-dialog': '' },
        h('div', { class: 'dlg-head' }, h('h2', { id: tid }, title)),
        h('div', { class: 'dlg-body' },
          h('p', null, intro), extra,
          h('div', { class: 'alert warn' }, h('strong', null, 'This secret will not be shown again. '), 'Herald keeps it only to sign deliveries and cannot reveal it later. If you lose it, rotate the secret.'),
          h('label', { for: sid, class: 'label' }, 'Signing secret'),
          h('div', { class: 'secret-box' }, h('input', { id: sid, type: 'text', readonly: true, value: secret, spellcheck: 'false', autocomplete: 'off', 'data-secret': '' }), copyBtn(secret, 'signing secret')),
          h('label', { for: wid, class: 'label' }, 'Standard Webhooks form'),
          h('div', { class: 'secret-box' }, h('input', { id: wid, type: 'text', readonly: true, value: 'whsec_' + secret, spellcheck: 'false', autocomplete: 'off' }), copyBtn('whsec_' + secret, 'whsec secret')),
          h('p', { class: 'hint' }, 'Use the whsec_ form with the official Standard Webhooks libraries; use the plain form for the X-AmCore-Signature header.')),
        h('div', { class: 'dlg-foot' }, doneBtn));
      // It must not close by accident: no Esc, no backdrop click.
      dlg.addEventListener('cancel', function (e) { e.preventDefault(); });
      dlg.addEventListener('close', function () {
        if (!acknowledged) { dlg.showModal(); return; }
        dlg.remove();
        resolve();
      });
      doneBtn.addEventListener('click', function () { acknowledged = true; dlg.close(); });
      document.body.appendChild(dlg);
      dlg.showModal();
      dlg.querySelector('[data-secret]').focus();
      dlg.querySelector('[data-secret]').select();
    });
  }

  // ---------- Endpoints list ----------
  function viewEndpoints(ctx) {
    setTitle('Endpoints');
    var actions = h('div', { class: 'page-actions' });
    var head = pageHead('Endpoints', 'The URLs we send webhooks to. Each endpoint receives the event types it subscribes to, signed with its own secret.', actions);
    var countLine = h('span', { class: 'muted small', 'data-count': '' });
    var tbody = h('tbody');
    var card = h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, 'Your endpoints'), countLine),
      h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Endpoints', class: 'stack' },
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Endpoint'), h('th', { scope: 'col', class: 'hide-sm' }, 'Events'), h('th', { scope: 'col' }, 'Last 24 h'), h('th', { scope: 'col', class: 'hide-sm' }, 'Updated'))),
        tbody)));
    add(main, [head, card]);
    skeletonRows(tbody, 5, 3);
    api('GET', '/v1/webhooks?limit=100').then(function (res) {
      if (!alive(ctx)) return;
      var list = res.data || [], total = res.meta && typeof res.meta.total === 'number' ? res.meta.total : list.length;
      countLine.textContent = total + ' of ' + MAX_ENDPOINTS + ' endpoints';
      if (state.canWrite) {
        if (total >= MAX_ENDPOINTS) {
          add(actions, [h('span', { class: 'small muted' }, 'Limit reached: delete an endpoint to add another.'),
            h('button', { type: 'button', class: 'btn btn-primary', disabled: true }, 'Add endpoint')]);
        } else add(actions, h('a', { class: 'btn btn-primary', href: '#/endpoints/new' }, '+ Add endpoint'));
      }
      clear(tbody);
      if (!list.length) {
        card.replaceChild(emptyEndpoints(), card.lastChild);
        markReady();
        return;
      }
      list.forEach(function (ep) {
        var href = '#/endpoints/' + encodeURIComponent(ep.id);
        var stats = h('td', { 'data-ep-stats': '' }, h('span', { class: 'skeleton' }));
        queueStats(ep.id, function (r) { if (alive(ctx)) { clear(stats); add(stats, listStats(r)); } });
        add(tbody, h('tr', { class: 'rowlink', 'data-endpoint-id': ep.id },
          h('td', null, healthCell(ep)),
          h('td', null, h('div', { class: 'ep-url' }, h('a', { href: href, 'data-rowlink': '' }, urlNode(ep.url))),
            ep.description ? h('div', { class: 'ep-desc' }, ep.description) : null),
          h('td', { class: 'hide-sm', title: (ep.events || []).join(', ') }, h('span', { class: 'small' }, eventsSummary(ep.events))),
          stats,
          h('td', { class: 'hide-sm nowrap small' }, timeEl(ep.updated_at))));
      });
      rowLinks(tbody);
      markReady();
    }, function (err) {
      if (!alive(ctx)) return;
      card.replaceChild(h('div', { class: 'card-body' }, errorPanel(err, render)), card.lastChild);
    });
  }
  function emptyEndpoints() {
    return h('div', { class: 'empty', 'data-empty': 'endpoints' },
      h('div', { class: 'empty-ico', 'aria-hidden': 'true' }, '↗'),
      h('h2', null, 'No endpoints yet'),
      h('p', { class: 'muted' }, state.canWrite
        ? 'Add the HTTPS URL of your receiver and choose which events it should get.'
        : 'No endpoint has been set up for this account yet.'),
      h('div', { class: 'form-actions' },
        state.canWrite ? h('a', { class: 'btn btn-primary', href: '#/endpoints/new' }, '+ Add endpoint') : null,
        h('a', { class: 'btn', href: '#/catalog' }, 'Browse event types')));
  }

  // ---------- Event picker ----------
  function groupOf(name) {
    if (name.indexOf('endpoint.') === 0 || name === 'delivery.exhausted') return 'operational';
    return name.split('.')[0];
  }
  function groupTitle(g) { return g === 'operational' ? 'Operational (sent by Herald about your endpoints)' : g; }
  function groupTypes(types) {
    var groups = {}, order = [];
    types.forEach(function (t) {
      if (t.name === 'webhook.test') return;
      var g = groupOf(t.name);
      if (!groups[g]) { groups[g] = []; order.push(g); }
      groups[g].push(t);
    });
    order.sort(function (a, b) { return a === 'operational' ? 1 : b === 'operational' ? -1 : a < b ? -1 : a > b ? 1 : 0; });
    return order.map(function (g) { return { name: g, types: groups[g] }; });
  }
  // A type's wildcard prefix: its first dot segment (`wallet` for `wallet.balance_low`).
  function prefixOf(name) { return name.split('.')[0]; }
  // The prefixes a group's box writes as `prefix.*`, so that types added to the catalog later reach
  // the endpoint too (the operational group spans `endpoint.*` and `delivery.*`). A prefix that also
  // has types in another group would leak into it, and a name without a dot has no wildcard, so a
  // group holding either writes names instead.
  function groupPrefixes(groups) {
    var owner = {};
    groups.forEach(function (g) {
      g.types.forEach(function (t) {
        var p = t.name.indexOf('.') > 0 ? prefixOf(t.name) : '';
        owner[p] = owner[p] === undefined || owner[p] === g.name ? g.name : null;
      });
    });
    owner[''] = null;
    groups.forEach(function (g) {
      var ps = [];
      g.types.forEach(function (t) { var p = t.name.indexOf('.') > 0 ? prefixOf(t.name) : ''; if (ps.indexOf(p) < 0) ps.push(p); });
      g.prefixes = ps.every(function (p) { return owner[p] === g.name; }) ? ps : [];
    });
  }
  // The picker keeps what the endpoint's `events` say (`*`, `prefix.*`, names) rather than a set of
  // checked boxes: the boxes are drawn from it. Checking a group writes its wildcard, checking a
  // type writes its name; unchecking one type of a wildcard (or of `*`) spells the rest out as names.
  function eventPicker(types, initial, onChange, label) {
    var groups = groupTypes(types);
    groupPrefixes(groups);
    var known = {}, wildable = {};
    types.forEach(function (t) { known[t.name] = true; });
    groups.forEach(function (g) { g.prefixes.forEach(function (p) { wildable[p] = true; }); });
    var star = false, wild = {}, named = {}, extra = [];
    (initial || []).forEach(function (e) {
      if (e === '*') star = true;
      else if (e.slice(-2) === '.*' && wildable[e.slice(0, -2)]) wild[e.slice(0, -2)] = true;
      else if (known[e] && e !== 'webhook.test') named[e] = true;
      else { named[e] = true; extra.push(e); }
    });
    var searchId = nextId('ps');
    var count = h('span', { class: 'picker-count', 'aria-live': 'polite' });
    var search = h('input', { type: 'search', id: searchId, placeholder: 'Search event types', 'aria-label': 'Search event types', autocomplete: 'off' });
    var allBtn = h('button', { type: 'button', class: 'btn btn-sm' }, 'Select all');
    var noneBtn = h('button', { type: 'button', class: 'btn btn-sm' }, 'Clear');
    var list = h('div', { class: 'picker-list' });
    var boxes = [], groupUis = [];
    var aid = nextId('pa'), anid = nextId('pn');
    var allBox = h('input', { type: 'checkbox', id: aid, 'aria-describedby': anid, 'data-all-events': '' });
    var allNote = h('span', { class: 'picker-note', id: anid }, 'Every event type, including types added later');
    allBox.addEventListener('change', function () {
      if (allBox.checked) star = true;
      else { star = false; wild = {}; named = {}; }
      sync();
    });
    add(list, h('div', { class: 'picker-all check' }, allBox, h('div', null, h('label', { for: aid }, 'All events'), allNote)));
    // Wildcards and `*` in force become what they stand for, one level down.
    function expandStar() {
      if (!star) return;
      star = false;
      groups.forEach(function (g) {
        if (g.prefixes.length) g.prefixes.forEach(function (p) { wild[p] = true; });
        else g.types.forEach(function (t) { named[t.name] = true; });
      });
    }
    function expandWild(p) {
      if (!wild[p]) return;
      wild[p] = false;
      types.forEach(function (t) { if (t.name !== 'webhook.test' && prefixOf(t.name) === p) named[t.name] = true; });
    }
    if (extra.length) groups.push({ name: 'other', other: true, prefixes: [], types: extra.map(function (n) { return { name: n, description: n.slice(-2) === '.*' ? 'Every type whose name starts with ' + n.slice(0, -1) : 'Not in the current catalog' }; }) });
    groups.forEach(function (g) {
      var gid = nextId('pg'), nid = nextId('pn');
      var gbox = h('input', { type: 'checkbox', id: gid, 'aria-describedby': nid });
      var note = h('span', { class: 'picker-note', id: nid, 'data-wildcard-note': '', hidden: true });
      var items = h('div', { class: 'picker-items' });
      var mine = [];
      g.types.forEach(function (t) {
        var id = nextId('pe'), did = nextId('pd');
        var cb = h('input', { type: 'checkbox', id: id, value: t.name, 'aria-describedby': t.description ? did : null, 'data-event': t.name });
        cb.addEventListener('change', function () {
          if (!cb.checked && !g.other) { expandStar(); expandWild(prefixOf(t.name)); }
          named[t.name] = cb.checked;
          sync();
        });
        mine.push(cb); boxes.push({ box: cb, other: !!g.other });
        var row = h('div', { class: 'check', 'data-name': (t.name + ' ' + (t.description || '')).toLowerCase() }, cb,
          h('div', null, h('label', { for: id }, h('code', null, t.name)), t.deprecated ? [' ', badge('warn', '!', 'Deprecated')] : null,
            t.description ? h('span', { class: 'desc', id: did }, t.description) : null));
        add(items, row);
      });
      gbox.addEventListener('change', function () {
        if (!gbox.checked && !g.other) expandStar();
        g.prefixes.forEach(function (p) { wild[p] = gbox.checked; });
        g.types.forEach(function (t) { named[t.name] = gbox.checked && !g.prefixes.length; });
        sync();
      });
      groupUis.push({ g: g, box: gbox, items: mine, note: note });
      add(list, h('div', { class: 'picker-group', 'data-group': g.name },
        h('div', { class: 'check' }, gbox, h('div', null, h('label', { for: gid }, 'All ' + groupTitle(g.name) + ' events (' + g.types.length + ')'), note)), items));
    });
    function values() {
      var out = star ? ['*'] : [];
      groups.forEach(function (g) {
        g.types.forEach(function (t) {
          var p = prefixOf(t.name);
          if (g.other) { if (named[t.name]) out.push(t.name); }
          else if (star) return;
          else if (wild[p]) { if (out.indexOf(p + '.*') < 0) out.push(p + '.*'); }
          else if (named[t.name]) out.push(t.name);
        });
      });
      return out;
    }
    function sync(silent) {
      boxes.forEach(function (b) {
        b.box.checked = b.other ? !!named[b.box.value] : star || !!wild[prefixOf(b.box.value)] || !!named[b.box.value];
      });
      groupUis.forEach(function (u) {
        var on = u.items.filter(function (b) { return b.checked; }).length;
        var wildOn = !u.g.other && (star || (u.g.prefixes.length > 0 && u.g.prefixes.every(function (p) { return wild[p]; })));
        var whole = wildOn || (!u.g.prefixes.length && on === u.items.length);
        u.box.checked = whole; u.box.indeterminate = !whole && on > 0;
        var text = '';
        if (wildOn && !star) text = 'All ' + u.g.prefixes.map(function (p) { return p + '.*'; }).join(' and ') + ' events, including types added later';
        else if (!wildOn && u.g.prefixes.length && on === u.items.length) text = 'These types only: check the group to include types added later';
        u.note.textContent = text; u.note.hidden = !text;
      });
      var vals = values();
      allBox.checked = star; allBox.indeterminate = !star && vals.length > 0;
      allNote.hidden = !star;
      var n = boxes.filter(function (b) { return b.box.checked; }).length;
      count.textContent = (star ? 'All events' : n + ' selected') + (vals.length > MAX_EVENTS ? ' · at most ' + MAX_EVENTS + ' entries' : '');
      if (!silent && onChange) onChange(vals);
    }
    search.addEventListener('input', function () {
      var q = search.value.trim().toLowerCase();
      list.querySelectorAll('.picker-group').forEach(function (g) {
        var any = false;
        g.querySelectorAll('.picker-items .check').forEach(function (row) {
          var hit = !q || row.getAttribute('data-name').indexOf(q) >= 0;
          row.hidden = !hit; any = any || hit;
        });
        g.hidden = !any;
      });
    });
    // Select all takes the types the search shows, by name; "All events" is the wildcard.
    allBtn.addEventListener('click', function () { boxes.forEach(function (b) { if (!b.box.closest('[hidden]')) named[b.box.value] = true; }); sync(); });
    noneBtn.addEventListener('click', function () { star = false; wild = {}; named = {}; sync(); });
    // The catalog opens in a new tab (rel=opener lets it inherit this tab's session), so a
    // half-filled form is not lost.
    var catalogLink = h('a', { href: '#/catalog', target: '_blank', rel: 'opener', class: 'small', 'data-catalog-link': '', 'aria-label': 'See the catalog (opens in a new tab)' }, 'See the catalog ↗');
    var el = h('div', { class: 'picker', role: 'group', 'aria-label': label || 'Event types' },
      h('div', { class: 'picker-top' }, search, allBtn, noneBtn, count, catalogLink), list);
    sync(true);
    return { el: el, values: values, focus: function () { (boxes[0] ? boxes[0].box : search).focus(); } };
  }

  // ---------- Field errors ----------
  function fieldBlock(label, control, hintText, extraLabel) {
    var errId = nextId('err'), hid = nextId('hint');
    var err = h('div', { class: 'field-error', id: errId, hidden: true });
    var hint = hintText ? h('div', { class: 'hint', id: hid }, hintText) : null;
    var lab = control.id ? h('label', { for: control.id }, label, extraLabel) : h('div', { class: 'label' }, label, extraLabel);
    if (control.setAttribute && control.id) control.setAttribute('aria-describedby', (hint ? hid + ' ' : '') + errId);
    var block = h('div', { class: 'field' }, lab, control, hint, err);
    return {
      el: block, hint: hint,
      error: function (msg) {
        err.hidden = !msg; clear(err); if (msg) add(err, msg);
        if (control.setAttribute) { if (msg) control.setAttribute('aria-invalid', 'true'); else control.removeAttribute('aria-invalid'); }
      }
    };
  }
  function applyFieldErrors(err, fields) {
    // Returns true when every detail was shown next to a field.
    Object.keys(fields).forEach(function (k) { fields[k].error(null); });
    if (!err.details) return false;
    var all = true, first = null;
    Object.keys(err.details).forEach(function (k) {
      var f = fields[k] || fields[k.split(/[.[]/)[0]];
      if (f) { f.error(String(err.details[k])); first = first || f; } else all = false;
    });
    if (first) { var c = first.el.querySelector('input, textarea, select'); if (c) c.focus(); }
    return all;
  }
  function checkUrl(v) {
    v = v.trim();
    if (!v || v === 'https://') return { ok: false, msg: 'Enter the URL of your receiver.' };
    if (/\s/.test(v)) return { ok: false, msg: 'A URL cannot contain spaces.' };
    var u = parseUrl(v);
    if (!u) return { ok: false, msg: 'Enter a full URL, such as https://example.com/webhooks.' };
    if (u.protocol !== 'https:') return { ok: false, msg: 'Must start with https:// — we only deliver over TLS.' };
    if (!u.hostname) return { ok: false, msg: 'The URL needs a host name.' };
    if (u.username || u.password) return { ok: false, msg: 'Remove the user name and password from the URL.' };
    if (v.length > 2048) return { ok: false, msg: 'At most 2048 characters.' };
    return { ok: true, msg: 'Deliveries will go to ' + u.host + '.' };
  }
  function urlInput(value, onInput) {
    var id = nextId('url');
    var input = h('input', { id: id, type: 'url', value: value, inputmode: 'url', autocomplete: 'off', spellcheck: 'false', required: true, name: 'url' });
    var live = h('div', { class: 'hint', 'aria-live': 'polite' });
    var f = fieldBlock('Endpoint URL', input, null);
    f.el.insertBefore(live, f.el.lastChild);
    function check() {
      var c = checkUrl(input.value);
      live.textContent = (input.value.trim() === 'https://' || !input.value.trim()) ? 'The HTTPS address of your receiver. We send each event as a signed POST request.' : (c.ok ? '✓ ' : '⚠ ') + c.msg;
    }
    input.addEventListener('input', function () { check(); if (onInput) onInput(); });
    check();
    return { input: input, field: f };
  }
  function descInput(value, onInput) {
    var id = nextId('desc');
    var ta = h('textarea', { id: id, rows: '2', name: 'description', value: value || '' });
    var counter = h('span', { class: 'counter', 'aria-live': 'off' });
    var f = fieldBlock('Description', ta, 'Optional. Helps your team recognise this endpoint.', [h('span', { class: 'muted' }, ' (optional)'), counter]);
    function upd() {
      var n = chars(ta.value);
      counter.textContent = n + ' / 200';
      if (n > 200) counter.setAttribute('data-over', ''); else counter.removeAttribute('data-over');
    }
    ta.addEventListener('input', function () { upd(); if (onInput) onInput(); });
    upd();
    return { input: ta, field: f };
  }

  // ---------- Custom headers ----------
  var MAX_HEADERS = 20, REDACTED = '<redacted>';
  function headersEditor(initial, onChange, label) {
    var rows = [], list = h('div', { class: 'hdr-list' });
    var addBtn = h('button', { type: 'button', class: 'btn btn-sm', 'data-action': 'add-header' }, '+ Add header');
    var f = fieldBlock(label || 'Custom headers', h('div', null, list, addBtn),
      'Sent with every delivery, after our own headers: for example the API key your gateway asks for. Values are stored encrypted and never shown again. Up to ' + MAX_HEADERS + '.');
    function sync() { addBtn.disabled = rows.length >= MAX_HEADERS; if (onChange) onChange(); }
    function addRow(name, existing) {
      var nid = nextId('hn'), vid = nextId('hv'), hid = nextId('hh');
      var nameIn = h('input', { type: 'text', id: nid, value: name || '', autocomplete: 'off', spellcheck: 'false', maxlength: '64', readonly: !!existing, 'data-header-name': '' });
      var valIn = h('input', { type: 'text', id: vid, autocomplete: 'off', spellcheck: 'false', maxlength: '1024', placeholder: existing ? 'value hidden' : null, 'aria-describedby': existing ? hid : null, 'data-header-value': '' });
      var rm = h('button', { type: 'button', class: 'btn btn-sm', 'aria-label': 'Remove header ' + (name || (rows.length + 1)) }, 'Remove');
      var row = { name: nameIn, value: valIn, existing: !!existing };
      var el = h('div', { class: 'hdr-row', 'data-header-row': name || '' },
        h('div', { class: 'hdr-cell' }, h('label', { for: nid, class: 'small' }, 'Name'), nameIn),
        h('div', { class: 'hdr-cell' }, h('label', { for: vid, class: 'small' }, 'Value'), valIn,
          existing ? h('div', { class: 'hint', id: hid }, 'Value hidden; leave as is to keep it, or type a new one.') : null),
        rm);
      nameIn.addEventListener('input', function () { rm.setAttribute('aria-label', 'Remove header ' + (nameIn.value.trim() || (rows.indexOf(row) + 1))); sync(); });
      valIn.addEventListener('input', sync);
      rm.addEventListener('click', function () { rows.splice(rows.indexOf(row), 1); el.remove(); sync(); addBtn.focus(); });
      rows.push(row); add(list, el);
      return row;
    }
    Object.keys(initial || {}).forEach(function (n) { addRow(n, true); });
    addBtn.addEventListener('click', function () { if (rows.length < MAX_HEADERS) { addRow('', false).name.focus(); sync(); } });
    sync();
    function value() {
      var o = {};
      rows.forEach(function (r) {
        var k = r.name.value.trim(), v = r.value.value;
        if (!k && !v) return;
        o[k] = v === '' && r.existing ? REDACTED : v;
      });
      return o;
    }
    return {
      field: f, value: value,
      changed: function () { return JSON.stringify(value()) !== JSON.stringify(initial || {}); }
    };
  }
  function hasDetail(err, name) { return Object.keys(err.details || {}).some(function (k) { return k.split(/[.[]/)[0] === name; }); }

  // ---------- Payload filter ----------
  // The endpoint's `filter` as JSON text, checked by the server when saved, and a tester that
  // sends it with a sample event to POST /v1/webhooks/filters/test before anything is saved.
  function pointerError(msg) {
    // The server's message starts with the JSON pointer of the fault inside the filter
    // (`/data/balance/$lt: must be a number or a string`): show the place apart from the rule.
    var m = /^(\/[^\n]*?): ([\s\S]*)$/.exec(String(msg));
    if (!m) return String(msg);
    return h('span', null, 'At ', h('code', { class: 'wrap-any', 'data-pointer': m[1] }, m[1]), ': ' + m[2]);
  }
  function readJson(text) {
    var t = text.trim();
    if (!t) return { empty: true, value: null };
    try { return { value: JSON.parse(t) }; } catch (e) { return { error: 'Not valid JSON: ' + e.message }; }
  }
  function filterGuide(onUse) {
    var examples = [
      ['Only low balances', { data: { balance: { $lt: 100 } } }],
      ['Only some currencies', { data: { currency: { $in: ['EUR', 'USD'] } } }],
      ['Either of two cases', { $or: [{ type: 'brand.vetted' }, { data: { balance: { $lt: 0 } } }] }]
    ];
    return h('details', { class: 'filter-guide' }, h('summary', null, 'How filters work'),
      h('ul', { class: 'small' },
        h('li', null, 'The filter is matched against ', h('code', null, '{"type": …, "data": …}'), ' of each event.'),
        h('li', null, 'Field names descend: ', h('code', null, '{"data": {"currency": "EUR"}}'), ' matches when data.currency is "EUR". Several fields must all match.'),
        h('li', null, 'Operators: ', h('code', null, '$eq $neq $gt $gte $lt $lte $in $nin $exists $startsWith $and $or $not'), '.'),
        h('li', null, 'Values of different kinds never match: "50" is not 50.'),
        h('li', null, 'At most 4 KiB and 8 levels deep.')),
      examples.map(function (x) {
        var txt = JSON.stringify(x[1]);
        return h('div', { class: 'guide-ex' }, h('span', { class: 'small' }, x[0]), h('code', { class: 'wrap-any' }, txt),
          h('button', { type: 'button', class: 'btn btn-sm', 'aria-label': 'Use the example: ' + x[0], onclick: function () { onUse(JSON.stringify(x[1], null, 2)); } }, 'Use'));
      }));
  }
  function filterEditor(types, initial, onChange) {
    var listed = types.filter(function (t) { return t.name !== 'webhook.test'; });
    var byName = {};
    listed.forEach(function (t) { byName[t.name] = t; });
    var initialText = initial ? JSON.stringify(initial, null, 2) : '';
    var ta = h('textarea', { id: nextId('flt'), rows: '5', class: 'code-input', spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off', placeholder: '{"data": {"balance": {"$lt": 100}}}', 'data-filter-input': '' });
    ta.value = initialText;
    var field = fieldBlock('Payload filter', ta, 'JSON. Only the subscribed events it matches are sent; leave it empty to send every subscribed event.', h('span', { class: 'muted' }, ' (optional)'));
    add(field.el, filterGuide(function (txt) { ta.value = txt; ta.dispatchEvent(new Event('input', { bubbles: true })); ta.focus(); }));

    // The tester: a sample event, prefilled from the catalog's example of its type.
    var sel = h('select', { id: nextId('fts'), 'data-sample-type': '' }, listed.map(function (t) { return h('option', { value: t.name }, t.name); }));
    var selField = fieldBlock('Sample event type', sel, null);
    var data = h('textarea', { id: nextId('ftd'), rows: '6', class: 'code-input', spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off', 'data-sample-data': '' });
    var dataField = fieldBlock('Sample event data', data, ' ');
    var catLink = h('a', { target: '_blank', rel: 'opener', class: 'small' });
    var resetBtn = h('button', { type: 'button', class: 'btn btn-sm', 'data-action': 'reset-sample' }, 'Use the catalog example');
    var tryBtn = h('button', { type: 'button', class: 'btn', 'data-action': 'try-filter' }, 'Try the filter');
    var verdict = h('div', { class: 'verdict', 'aria-live': 'polite', 'data-verdict-box': '' });
    var typeChosen = false, sampleEdited = false, trySeq = 0;
    function fillSample() {
      var t = byName[sel.value];
      data.value = t && t.example != null ? JSON.stringify(t.example, null, 2) : '{}';
      sampleEdited = false;
      dataField.hint.textContent = t && t.example != null
        ? 'Prefilled from the catalog’s example of ' + t.name + '. Edit it to try other values.'
        : 'The catalog has no example for ' + sel.value + ': write the event’s data here.';
      resetBtn.hidden = !(t && t.example != null);
      linkType();
    }
    function linkType() {
      catLink.href = link('/catalog', new URLSearchParams({ type: sel.value }));
      catLink.textContent = 'See ' + sel.value + ' in the catalog ↗';
      catLink.setAttribute('aria-label', 'See ' + sel.value + ' in the catalog (opens in a new tab)');
    }
    function setType(name) {
      if (!byName[name]) return;
      sel.value = name;
      fillSample();
    }
    // An edit makes the last verdict (or one still on its way) stale.
    function stale() { trySeq += 1; clear(verdict); }
    // A new type brings its example, unless the sample was edited ("Use the catalog example" then).
    sel.addEventListener('change', function () {
      typeChosen = true; dataField.error(null); selField.error(null);
      if (sampleEdited) linkType(); else fillSample();
      stale();
    });
    data.addEventListener('input', function () { sampleEdited = true; dataField.error(null); stale(); });
    resetBtn.addEventListener('click', function () { fillSample(); dataField.error(null); stale(); data.focus(); });
    ta.addEventListener('input', function () {
      stale();
      if (!readJson(ta.value).error) field.error(null);
      if (onChange) onChange();
    });
    ta.addEventListener('blur', function () { var f = readJson(ta.value); if (f.error) field.error(f.error); });

    function showVerdict(kind, icon, title, text) {
      clear(verdict);
      var look = { match: 'ok', 'no-match': 'off', none: 'neutral' }[kind] || 'bad';
      add(verdict, h('div', { 'data-verdict': kind }, badge(look, icon, title), text ? h('span', { class: 'small' }, text) : null));
    }
    // Puts a 422's faults next to their fields; returns whether any was the filter's.
    function showErrors(err) {
      var d = err.details || {}, filterFault = false;
      Object.keys(d).forEach(function (k) {
        if (k === 'filter') { field.error(pointerError(d[k])); filterFault = true; }
        else if (k === 'event.data') dataField.error(String(d[k]));
        else if (k === 'event.type') selField.error(String(d[k]));
      });
      if (filterFault) ta.focus();
      return filterFault;
    }
    tryBtn.addEventListener('click', function () {
      if (tryBtn.disabled) return;
      field.error(null); dataField.error(null); selField.error(null); clear(verdict);
      var f = readJson(ta.value);
      if (f.error) { field.error(f.error); showVerdict('invalid', '✕', 'Not tried', 'Fix the filter first.'); ta.focus(); return; }
      if (f.empty) { showVerdict('none', '–', 'No filter', 'Without a filter every subscribed event is sent.'); return; }
      var d = readJson(data.value);
      if (d.error || d.empty) { dataField.error(d.error || 'Write the event’s data as a JSON object.'); data.focus(); return; }
      tryBtn.disabled = true; tryBtn.setAttribute('aria-busy', 'true');
      add(verdict, h('p', { class: 'muted small' }, 'Trying…'));
      var mine = ++trySeq;
      api('POST', '/v1/webhooks/filters/test', { filter: f.value, event: { type: sel.value, data: d.value } }).then(function (r) {
        if (mine !== trySeq) return;
        if (r.matches) showVerdict('match', '✓', 'Matches', 'An endpoint with this filter receives this ' + sel.value + ' event.');
        else showVerdict('no-match', '✕', 'Does not match', 'This ' + sel.value + ' event would not be sent to the endpoint.');
      }, function (err) {
        if (mine !== trySeq) return;
        clear(verdict);
        if (err.code === 'VALIDATION_FAILED') {
          var filterFault = showErrors(err);
          showVerdict('invalid', '!', 'Not tried', filterFault ? 'The filter has a problem: see the message under it.' : 'The sample event has a problem: see the message under it.');
        } else add(verdict, errorPanel(err));
      }).then(function () { tryBtn.disabled = false; tryBtn.removeAttribute('aria-busy'); });
    });

    if (listed.length) fillSample();
    var tester = h('fieldset', { class: 'filter-try', 'data-filter-try': '' }, h('legend', null, 'Try the filter'),
      h('p', { class: 'muted small' }, 'Checks the filter above against a sample event, before you save. Nothing is sent to the endpoint.'),
      selField.el, h('div', { class: 'form-actions sample-actions' }, resetBtn, catLink), dataField.el,
      h('div', { class: 'form-actions' }, tryBtn), verdict);
    return {
      el: h('div', { class: 'filter-editor' }, field.el, tester),
      field: field,
      read: function () { return readJson(ta.value); },
      changed: function () { return ta.value.trim() !== initialText.trim(); },
      showErrors: showErrors,
      // Follows the event picker: the sample is of the first subscribed type, until one is chosen.
      suggest: function (names) {
        if (typeChosen || sampleEdited) return;
        var first = sampleTypeFor(names || [], listed);
        if (first && first !== sel.value) setType(first);
      }
    };
  }
  // The first catalog type an endpoint's `events` cover: a name, or a wildcard's first type.
  function sampleTypeFor(events, listed) {
    for (var i = 0; i < events.length; i++) {
      var e = events[i];
      for (var j = 0; j < listed.length; j++) {
        var n = listed[j].name;
        if (e === n || e === '*' || (e.slice(-2) === '.*' && n.indexOf(e.slice(0, -1)) === 0)) return n;
      }
    }
    return null;
  }

  // ---------- Create ----------
  function viewCreate(ctx) {
    setTitle('Add endpoint');
    add(main, pageHead('Add endpoint', 'Herald sends each subscribed event to this URL as a signed HTTPS POST request.', null,
      [h('a', { href: '#/endpoints' }, 'Endpoints'), ' / Add endpoint']));
    if (!state.canWrite) { add(main, readOnlyNotice()); markReady(); return; }
    var holder = h('div', { class: 'card' }, h('div', { class: 'card-body' }, h('p', { class: 'muted' }, 'Loading event types…')));
    add(main, holder);
    loadTypes().then(function (types) {
      if (!alive(ctx)) return;
      function dirty() { state.dirty = true; }
      var url = urlInput('https://', dirty);
      var desc = descInput('', dirty);
      var filt = filterEditor(types, null, dirty);
      var picker = eventPicker(types, [], function (vals) { dirty(); filt.suggest(vals); }, 'Events to send');
      var evField = fieldBlock('Events to send', picker.el, 'Choose at least one. A checked group (or All events) also takes types added to it later; types checked one by one stay as they are.');
      var hdrs = headersEditor({}, dirty);
      var adv = h('details', { class: 'advanced' }, h('summary', null, 'Advanced: payload filter, custom headers'), filt.el, hdrs.field.el);
      var formErr = h('div');
      var submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create endpoint');
      var form = h('form', { novalidate: true, 'aria-label': 'New endpoint' },
        h('div', { class: 'card-body' }, formErr, url.field.el, desc.field.el, evField.el, adv),
        h('div', { class: 'card-foot' }, h('span', { class: 'muted small' }, 'A signing secret is created with the endpoint and shown once.'),
          h('div', { class: 'form-actions' }, h('a', { class: 'btn', href: '#/endpoints' }, 'Cancel'), submit)));
      clear(holder); add(holder, form);
      var fields = { url: url.field, description: desc.field, events: evField, headers: hdrs.field, filter: filt.field };
      form.addEventListener('submit', function (e) {
        e.preventDefault();
        if (submit.disabled) return;
        clear(formErr);
        var fv = filt.read();
        if (fv.error) { adv.open = true; filt.field.error(fv.error); filt.field.el.querySelector('textarea').focus(); return; }
        submit.disabled = true; submit.setAttribute('aria-busy', 'true');
        var body = { url: url.input.value.trim(), events: picker.values() };
        if (desc.input.value.trim()) body.description = desc.input.value;
        if (!fv.empty) body.filter = fv.value;
        var hv = hdrs.value();
        if (Object.keys(hv).length) body.headers = hv;
        api('POST', '/v1/webhooks', body).then(function (ep) {
          state.dirty = false;
          var secret = ep.secret;
          ep.secret = null;
          return showSecret(secret, 'Endpoint created: store its signing secret', 'Your receiver needs this secret to check that each delivery really comes from us.').then(function () {
            location.hash = '#/endpoints/' + encodeURIComponent(ep.id) + '?created=1';
          });
        }, function (err) {
          submit.disabled = false; submit.removeAttribute('aria-busy');
          if (err.code === 'VALIDATION_FAILED') {
            if (hasDetail(err, 'headers') || hasDetail(err, 'filter')) adv.open = true;
            var allShown = applyFieldErrors(err, fields);
            filt.showErrors(err);
            add(formErr, h('div', { class: 'alert', role: 'alert' }, h('h2', null, 'Some fields need attention.'), allShown ? null : detailsList(err.details || {}), errMeta(err)));
          } else add(formErr, errorPanel(err));
          formErr.scrollIntoView({ block: 'nearest' });
        });
      });
      url.input.focus();
      var end = url.input.value.length; url.input.setSelectionRange(end, end);
      markReady();
    }, function (err) {
      if (!alive(ctx)) return;
      clear(holder); add(holder, h('div', { class: 'card-body' }, errorPanel(err, render, 'Could not load the event types.')));
    });
  }
  function readOnlyNotice() {
    return h('div', { class: 'alert info' }, h('h2', null, 'Read-only session'), h('p', null, 'This portal link lets you look, not change. Ask for a link with edit access from ' + platformName() + '.'));
  }

  // ---------- Endpoint detail ----------
  function loadEndpoint(ctx, id, then) {
    var holder = h('div', null, h('div', { class: 'card' }, h('div', { class: 'card-body' }, h('span', { class: 'skeleton' }), h('br'), h('span', { class: 'skeleton' }))));
    add(main, holder);
    api('GET', '/v1/webhooks/' + encodeURIComponent(id)).then(function (ep) {
      if (!alive(ctx)) return;
      clear(holder); holder.remove();
      then(ep);
      markReady();
    }, function (err) {
      if (!alive(ctx)) return;
      clear(holder);
      if (err.status === 404) {
        add(holder, h('div', { class: 'card' }, h('div', { class: 'empty' }, h('h1', null, 'Endpoint not found'),
          h('p', { class: 'muted' }, 'It may have been deleted. Its past deliveries are still in the deliveries feed.'),
          h('div', { class: 'form-actions' }, h('a', { class: 'btn btn-primary', href: '#/endpoints' }, 'All endpoints'),
            h('a', { class: 'btn', href: link('/deliveries', new URLSearchParams({ endpoint_id: id })) }, 'Its deliveries')))));
      } else add(holder, errorPanel(err, render));
      markReady();
    });
  }
  function endpointHeader(ep, tab) {
    var id = encodeURIComponent(ep.id);
    var x = health(ep);
    var title = h('div', { class: 'title-row' }, h('h1', { class: 'wrap-any' }, urlNode(ep.url)), x.b);
    var sub = [ep.description ? h('div', { class: 'wrap-any' }, ep.description) : null, x.line];
    var actions = [];
    if (state.canWrite && tab === 'overview') actions.push(h('button', { type: 'button', class: 'btn', 'data-action': 'test', onclick: function () { var b = byId('test-card'); if (b) { b.scrollIntoView({ block: 'center' }); b.querySelector('button').focus(); } } }, 'Send test event'));
    var head = pageHead(title, sub, actions, [h('a', { href: '#/endpoints' }, 'Endpoints'), ' / ', hostOf(ep.url)]);
    var tabs = h('nav', { class: 'tabs', 'aria-label': 'Endpoint' },
      h('a', { href: '#/endpoints/' + id, 'aria-current': tab === 'overview' ? 'page' : null }, 'Overview'),
      h('a', { href: link('/deliveries', new URLSearchParams({ endpoint_id: ep.id })) }, 'Deliveries'),
      state.canWrite ? h('a', { href: '#/endpoints/' + id + '/recover', 'aria-current': tab === 'recover' ? 'page' : null }, 'Recover') : null,
      state.canWrite ? h('a', { href: '#/endpoints/' + id + '/settings', 'aria-current': tab === 'settings' ? 'page' : null }, 'Settings') : null);
    return [head, tabs];
  }
  function viewEndpoint(ctx) {
    var id = ctx.segs[1];
    setTitle('Endpoint');
    loadEndpoint(ctx, id, function (ep) {
      setTitle(hostOf(ep.url));
      add(main, endpointHeader(ep, 'overview'));
      if (ctx.params.get('created') && state.canWrite) {
        add(main, h('div', { class: 'alert ok', role: 'status' }, h('h2', null, 'Endpoint created'), h('p', null, 'Send a test event to check that your receiver gets deliveries and verifies their signature.')));
      }
      if (!ep.active) {
        add(main, h('div', { class: 'alert warn' }, h('h2', null, 'This endpoint receives no new events'),
          h('p', null, ep.disabled_reason === 'gone' ? 'Its receiver answered 410 Gone, which means it no longer wants deliveries.'
            : ep.disabled_reason === 'failing' ? 'Its deliveries failed for too long. Herald retests it periodically and turns it back on when it answers again.'
              : 'It was disabled by your team.'),
          state.canWrite ? h('p', null, h('a', { href: '#/endpoints/' + encodeURIComponent(ep.id) + '/settings' }, 'Enable it in Settings'), ', then recover what it missed.') : null));
      }
      var grid = h('div', { class: 'grid-2' });
      var left = h('div'), right = h('div');
      add(grid, [left, right]);
      add(main, grid);
      var sc = statsCard(ctx, ep);
      add(left, [sc, recentAttempts(ctx, ep)]);
      if (state.canWrite) add(right, testCard(ep, function () { if (alive(ctx)) sc.reload(); }));
      add(right, detailsCard(ep));
    });
  }
  // A wildcard is shown as written, with what it stands for: it also covers types added later.
  function eventChip(n) {
    if (n === '*') return h('span', { class: 'chip', 'data-wildcard': n }, '* (all events, incl. future types)');
    if (n.slice(-2) === '.*') return h('span', { class: 'chip', 'data-wildcard': n }, n + ' (all ' + n.slice(0, -2) + ' events, incl. future types)');
    return h('span', { class: 'chip' }, n);
  }
  function detailsCard(ep) {
    var dl = h('dl', { class: 'kv' },
      h('dt', null, 'Endpoint id'), h('dd', null, h('code', { class: 'wrap-any' }, ep.id), copyBtn(ep.id, 'endpoint id')),
      h('dt', null, 'URL'), h('dd', null, h('span', { class: 'wrap-any' }, ep.url), copyBtn(ep.url, 'URL')),
      h('dt', null, 'Events'), h('dd', null, h('div', { class: 'chips' }, (ep.events || []).map(eventChip))),
      h('dt', null, 'API version'), h('dd', null, h('code', null, ep.api_version)),
      h('dt', null, 'Created'), h('dd', null, timeEl(ep.created_at, true)),
      h('dt', null, 'Last updated'), h('dd', null, timeEl(ep.updated_at, true)));
    if (ep.failing_since) add(dl, [h('dt', null, 'Failing since'), h('dd', null, timeEl(ep.failing_since, true))]);
    var names = Object.keys(ep.headers || {}), cert = ep.client_certificate;
    add(dl, [h('dt', null, 'Custom headers'), h('dd', { 'data-header-names': '' }, names.length
      ? h('div', { class: 'chips' }, names.map(function (n) { return h('span', { class: 'chip' }, n); }))
      : h('span', { class: 'muted' }, 'None'))]);
    add(dl, [h('dt', null, 'Client certificate'), h('dd', { 'data-cert': '' }, cert
      ? h('div', null, h('div', { class: 'wrap-any', 'data-cert-subject': '' }, cert.subject),
        h('div', { class: 'small' }, 'Expires ', timeEl(cert.not_after, true), ' ', certWarn(cert.not_after)))
      : h('span', { class: 'muted' }, 'None'))]);
    add(dl, [h('dt', null, 'Filter'), h('dd', { 'data-filter': '' }, ep.filter
      ? h('pre', { class: 'code filter-shown' }, JSON.stringify(ep.filter, null, 2))
      : h('span', { class: 'muted' }, 'None: every subscribed event'))]);
    return h('section', { class: 'card', 'aria-labelledby': 'det-h' }, h('div', { class: 'card-head' }, h('h2', { id: 'det-h' }, 'Details')), h('div', { class: 'card-body' }, dl));
  }
  function testCard(ep, onDone) {
    var out = h('div', { class: 'outcome', 'aria-live': 'polite' });
    var btn = h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'send-test' }, 'Send test event');
    btn.addEventListener('click', function () {
      if (btn.disabled) return;
      btn.disabled = true; btn.setAttribute('aria-busy', 'true'); clear(out);
      add(out, h('p', { class: 'muted small' }, 'Sending…'));
      api('POST', '/v1/webhooks/' + encodeURIComponent(ep.id) + '/test').then(function (r) {
        btn.disabled = false; btn.removeAttribute('aria-busy'); clear(out);
        var ok = r.outcome === 'success';
        var dl = h('dl', { class: 'kv' },
          h('dt', null, 'Outcome'), h('dd', { 'data-test-outcome': r.outcome }, ok ? badge('ok', '✓', 'success') : badge('bad', '✕', 'failed (' + r.outcome + ')')),
          h('dt', null, 'HTTP status'), h('dd', null, r.response_status == null ? 'no response' : String(r.response_status)),
          h('dt', null, 'Time'), h('dd', null, r.response_time_ms + ' ms'));
        if (r.error) add(dl, [h('dt', null, 'Error'), h('dd', { class: 'wrap-any' }, r.error)]);
        add(out, dl);
        if (r.response_body_excerpt) add(out, [h('div', { class: 'hint' }, 'Response body (first 1 KiB)'), h('pre', { class: 'code' }, prettyMaybeJson(r.response_body_excerpt))]);
        add(out, h('p', { class: 'small' }, h('a', { href: '#/deliveries/' + encodeURIComponent(r.delivery_id) }, 'View this attempt')));
        if (onDone) onDone();
      }, function (err) {
        btn.disabled = false; btn.removeAttribute('aria-busy'); clear(out);
        add(out, errorPanel(err));
      });
    });
    return h('section', { class: 'card', id: 'test-card', 'aria-labelledby': 'test-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'test-h' }, 'Send a test event')),
      h('div', { class: 'card-body' },
        h('p', { class: 'muted small' }, 'Sends a signed webhook.test event now and shows the answer. Works even when the endpoint is disabled, so you can check a fix first.'),
        btn, out));
  }
  function deliveriesTable(list, opts) {
    var tbody = h('tbody');
    list.forEach(function (d) {
      add(tbody, h('tr', { class: 'rowlink', 'data-delivery-id': d.id },
        h('td', null, outcomeCell(d)),
        h('td', null, h('a', { href: '#/deliveries/' + encodeURIComponent(d.id), 'data-rowlink': '' }, h('code', null, d.event_type))),
        opts && opts.host ? h('td', { class: 'wrap-any small' }, hostOf(d.url)) : null,
        h('td', { class: 'num' }, statusText(d)),
        h('td', { class: 'num hide-sm' }, d.response_time_ms + ' ms'),
        h('td', { class: 'nowrap small' }, timeEl(d.occurred_at))));
    });
    rowLinks(tbody);
    return h('div', { class: 'table-wrap' }, h('table', { 'aria-label': (opts && opts.label) || 'Delivery attempts', class: 'stack' },
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Event'),
        opts && opts.host ? h('th', { scope: 'col' }, 'Endpoint') : null,
        h('th', { scope: 'col', class: 'num' }, 'HTTP'), h('th', { scope: 'col', class: 'num hide-sm' }, 'Duration'), h('th', { scope: 'col' }, 'Time'))),
      tbody));
  }
  function recentAttempts(ctx, ep) {
    var body = h('div', { class: 'card-body' }, h('span', { class: 'skeleton' }));
    var card = h('section', { class: 'card', 'aria-labelledby': 'rec-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'rec-h' }, 'Recent attempts'),
        h('a', { class: 'small', href: link('/deliveries', new URLSearchParams({ endpoint_id: ep.id })) }, 'All deliveries →')), body);
    api('GET', '/v1/webhooks/deliveries' + qs({ endpoint_id: ep.id, limit: 10 })).then(function (r) {
      if (!alive(ctx)) return;
      var list = r.data || [];
      if (!list.length) {
        card.replaceChild(h('div', { class: 'empty' }, h('h3', null, 'No deliveries yet'),
          h('p', { class: 'muted small' }, state.canWrite ? 'Send a test event to see the first one here.' : 'Attempts will appear here once events are sent.')), body);
        return;
      }
      card.replaceChild(deliveriesTable(list, { label: 'Recent attempts' }), body);
    }, function (err) { if (alive(ctx)) { clear(body); add(body, errorPanel(err)); } });
    return card;
  }

  // ---------- Settings ----------
  function viewSettings(ctx) {
    var id = ctx.segs[1];
    setTitle('Endpoint settings');
    loadEndpoint(ctx, id, function (ep) {
      setTitle('Settings · ' + hostOf(ep.url));
      add(main, endpointHeader(ep, 'settings'));
      if (!state.canWrite) { add(main, readOnlyNotice()); return; }
      var base = '/v1/webhooks/' + encodeURIComponent(ep.id);
      function refreshed(newEp, msg) { toast({ title: msg }); ep = newEp; render(); }

      // Destination
      var url = urlInput(ep.url, sync1), desc = descInput(ep.description || '', sync1);
      var save1 = h('button', { type: 'submit', class: 'btn btn-primary', disabled: true }, 'Save destination');
      var err1 = h('div');
      function sync1() {
        var changed = url.input.value.trim() !== ep.url || desc.input.value !== (ep.description || '');
        save1.disabled = !changed; state.dirty = changed;
      }
      var f1 = h('form', { novalidate: true, 'aria-labelledby': 's1-h' },
        h('div', { class: 'card-head' }, h('h2', { id: 's1-h' }, 'Destination')),
        h('div', { class: 'card-body' }, err1, url.field.el, desc.field.el),
        h('div', { class: 'card-foot' }, h('span', { class: 'muted small' }, 'Changes apply to the next attempt.'), save1));
      f1.addEventListener('submit', function (e) {
        e.preventDefault();
        if (save1.disabled) return;
        var body = {};
        if (url.input.value.trim() !== ep.url) body.url = url.input.value.trim();
        if (desc.input.value !== (ep.description || '')) body.description = desc.input.value;
        save1.disabled = true; save1.setAttribute('aria-busy', 'true'); clear(err1);
        api('PATCH', base, body).then(function (n) { state.dirty = false; refreshed(n, 'Destination saved'); }, function (err) {
          save1.removeAttribute('aria-busy'); sync1();
          if (err.code === 'VALIDATION_FAILED') applyFieldErrors(err, { url: url.field, description: desc.field });
          add(err1, errorPanel(err));
        });
      });

      // Events
      var err2 = h('div');
      var save2 = h('button', { type: 'submit', class: 'btn btn-primary', disabled: true }, 'Save events');
      var f2 = h('form', { novalidate: true, 'aria-labelledby': 's2-h' },
        h('div', { class: 'card-head' }, h('h2', { id: 's2-h' }, 'Subscribed events')),
        h('div', { class: 'card-body' }, err2, h('p', { class: 'muted small' }, 'Loading event types…')),
        h('div', { class: 'card-foot' }, h('span', { class: 'muted small' }, 'The new set replaces the old one.'), save2));
      var picker = null, evField = null;
      loadTypes().then(function (types) {
        if (!alive(ctx)) return;
        picker = eventPicker(types, ep.events, function (vals) {
          var a = vals.slice().sort().join(','), b = (ep.events || []).slice().sort().join(',');
          save2.disabled = a === b; state.dirty = state.dirty || a !== b;
        }, 'Subscribed events');
        evField = fieldBlock('Event types', picker.el, null);
        var cb = f2.querySelector('.card-body');
        clear(cb); add(cb, [err2, evField.el]);
      }, function (err) { if (alive(ctx)) add(err2, errorPanel(err)); });
      f2.addEventListener('submit', function (e) {
        e.preventDefault();
        if (save2.disabled || !picker) return;
        save2.disabled = true; save2.setAttribute('aria-busy', 'true'); clear(err2); evField.error(null);
        api('PATCH', base, { events: picker.values() }).then(function (n) { state.dirty = false; refreshed(n, 'Events saved'); }, function (err) {
          save2.disabled = false; save2.removeAttribute('aria-busy');
          if (err.code === 'VALIDATION_FAILED') applyFieldErrors(err, { events: evField });
          add(err2, errorPanel(err));
        });
      });

      // Payload filter
      var err9 = h('div');
      var save9 = h('button', { type: 'submit', class: 'btn btn-primary', disabled: true }, 'Save filter');
      var f9 = h('form', { novalidate: true, 'aria-labelledby': 's9-h', 'data-form': 'filter' },
        h('div', { class: 'card-head' }, h('h2', { id: 's9-h' }, 'Payload filter')),
        h('div', { class: 'card-body' }, err9, h('p', { class: 'muted small' }, 'Loading event types…')),
        h('div', { class: 'card-foot' }, h('span', { class: 'muted small' }, 'Applies to events published after you save.'), save9));
      var filt = null;
      loadTypes().then(function (types) {
        if (!alive(ctx)) return;
        filt = filterEditor(types, ep.filter, function () { var c = filt.changed(); save9.disabled = !c; if (c) state.dirty = true; });
        filt.suggest(ep.events);
        var cb = f9.querySelector('.card-body');
        clear(cb); add(cb, [err9, filt.el]);
      }, function (err) { if (alive(ctx)) add(err9, errorPanel(err)); });
      f9.addEventListener('submit', function (e) {
        e.preventDefault();
        if (save9.disabled || !filt) return;
        clear(err9); filt.field.error(null);
        var fv = filt.read();
        if (fv.error) { filt.field.error(fv.error); return; }
        save9.disabled = true; save9.setAttribute('aria-busy', 'true');
        // An emptied field removes the filter: every subscribed event is sent again.
        api('PATCH', base, { filter: fv.empty ? null : fv.value }).then(function (n) {
          state.dirty = false; refreshed(n, fv.empty ? 'Filter removed' : 'Filter saved');
        }, function (err) {
          save9.disabled = false; save9.removeAttribute('aria-busy');
          if (err.code === 'VALIDATION_FAILED') filt.showErrors(err);
          add(err9, errorPanel(err));
        });
      });

      // Status
      var host = hostOf(ep.url);
      var statusBody = h('div', { class: 'card-body' });
      if (ep.active) {
        add(statusBody, [h('p', null, 'Active: new events are sent to this endpoint.'),
          h('button', { type: 'button', class: 'btn', 'data-action': 'disable' , onclick: function () {
            openDialog({
              title: 'Disable ' + host + '?', confirm: 'Disable endpoint', danger: true,
              body: [h('p', null, 'No new events will be sent to ', h('strong', null, ep.url), '.'),
                h('p', null, 'Deliveries still waiting for a retry will end as failed. You can enable it again later and recover what it missed.')],
              onConfirm: function () { return api('PATCH', base, { active: false }); }
            }).then(function (n) { if (n) refreshed(n, 'Endpoint disabled'); });
          } }, 'Disable endpoint')]);
      } else {
        add(statusBody, [h('p', null, 'Disabled: this endpoint receives no new events.'),
          h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'enable', onclick: function (e) {
            var b = e.currentTarget; b.disabled = true; b.setAttribute('aria-busy', 'true');
            api('PATCH', base, { active: true }).then(function (n) {
              toast({ title: 'Endpoint enabled', text: 'Events published while it was disabled are not sent by themselves.', link: { href: '#/endpoints/' + encodeURIComponent(n.id) + '/recover?include_missing=1', text: 'Recover what was missed' } });
              ep = n; render();
            }, function (err) { b.disabled = false; b.removeAttribute('aria-busy'); errorToast(err, 'Could not enable the endpoint'); });
          } }, 'Enable endpoint')]);
      }
      var statusCard = h('section', { class: 'card', 'aria-labelledby': 's3-h' }, h('div', { class: 'card-head' }, h('h2', { id: 's3-h' }, 'Status')), statusBody);

      // Secret
      var secretCard = h('section', { class: 'card', 'aria-labelledby': 's4-h' }, h('div', { class: 'card-head' }, h('h2', { id: 's4-h' }, 'Signing secret')),
        h('div', { class: 'card-body' }, h('p', { class: 'muted small' }, 'Rotating creates a new secret. The old one can keep signing for a while, so your receivers switch without rejecting deliveries.'),
          h('button', { type: 'button', class: 'btn', 'data-action': 'rotate', onclick: function () {
            var gname = nextId('grace'), radios = [], chosen = 86400;
            var warnBox = h('div', { class: 'alert warn', hidden: true, 'data-grace-warning': '' },
              h('p', null, h('strong', null, 'Receivers that have not switched will break. '), 'The old secret stops at once: until a receiver uses the new one, it rejects our deliveries and they are retried.'));
            var fs = h('fieldset', null, h('legend', null, 'Keep the old secret valid for'),
              [[0, 'Immediately (no overlap)'], [3600, '1 hour'], [86400, '24 hours (recommended)'], [604800, '7 days']].map(function (c) {
                var rid = nextId('gr');
                var r = h('input', { type: 'radio', name: gname, id: rid, value: String(c[0]), checked: c[0] === 86400 });
                radios.push(r);
                return h('div', { class: 'check' }, r, h('label', { for: rid }, c[1]));
              }));
            function grace() { var r = radios.filter(function (x) { return x.checked; })[0]; return r ? +r.value : 86400; }
            fs.addEventListener('change', function () { warnBox.hidden = grace() !== 0; });
            openDialog({
              title: 'Rotate the signing secret?', confirm: 'Rotate secret', danger: true,
              body: [h('p', null, 'A new secret is created for ', h('strong', null, host), ' and shown once.'), fs,
                h('p', { class: 'hint' }, 'Until then every delivery is signed with both secrets, so receivers keep working while you update them.'), warnBox],
              onConfirm: function () { chosen = grace(); return api('POST', base + '/rotate-secret', { grace_period_seconds: chosen }); }
            }).then(function (r) {
              if (!r) return;
              var s = r.secret, until = r.previous_valid_until; r.secret = null;
              var note = chosen && until
                ? h('p', { 'data-previous-valid-until': until }, 'The previous secret also signs deliveries until ', h('strong', null, fmtAbs(until)), ' (' + fmtUtc(until) + '). Update your receivers before then.')
                : h('p', { 'data-previous-valid-until': until || '' }, 'The previous secret no longer signs deliveries.');
              showSecret(s, 'New signing secret', 'Put this secret into your receiver now.', note).then(function () {
                refreshed(r, chosen && until ? 'Secret rotated; the old one works until ' + fmtAbs(until) : 'Secret rotated');
              });
            });
          } }, 'Rotate secret…')));

      // Advanced: custom headers and client certificate
      var err6 = h('div');
      var save6 = h('button', { type: 'submit', class: 'btn btn-primary', disabled: true }, 'Save headers');
      var hed = headersEditor(ep.headers || {}, function () { var c = hed && hed.changed(); save6.disabled = !c; if (c) state.dirty = true; }, 'Headers sent with each delivery');
      var f6 = h('form', { novalidate: true, 'aria-labelledby': 's6-h', 'data-form': 'headers' },
        h('div', { class: 'card-body' }, h('h3', { id: 's6-h' }, 'Custom headers'), err6, hed.field.el),
        h('div', { class: 'card-foot' }, h('span', { class: 'muted small' }, 'The whole set is saved: a removed header is no longer sent.'), save6));
      f6.addEventListener('submit', function (e) {
        e.preventDefault();
        if (save6.disabled) return;
        save6.disabled = true; save6.setAttribute('aria-busy', 'true'); clear(err6); hed.field.error(null);
        api('PATCH', base, { headers: hed.value() }).then(function (n) { state.dirty = false; refreshed(n, 'Headers saved'); }, function (err) {
          save6.disabled = false; save6.removeAttribute('aria-busy');
          if (err.code === 'VALIDATION_FAILED') applyFieldErrors(err, { headers: hed.field });
          add(err6, errorPanel(err));
        });
      });
      var advCard = h('section', { class: 'card', 'aria-labelledby': 's7-h' }, h('div', { class: 'card-head' }, h('h2', { id: 's7-h' }, 'Advanced')),
        f6, certForm(ep, base, host, refreshed));

      // Delete
      var delCard = h('section', { class: 'card', 'aria-labelledby': 's5-h' }, h('div', { class: 'card-head' }, h('h2', { id: 's5-h' }, 'Delete endpoint')),
        h('div', { class: 'card-body' }, h('p', { class: 'muted small' }, 'Deleting cannot be undone. Deliveries still pending are abandoned; past deliveries stay in the feed.'),
          h('button', { type: 'button', class: 'btn btn-danger', 'data-action': 'delete', onclick: function () {
            var cid = nextId('del');
            var input = h('input', { id: cid, type: 'text', autocomplete: 'off', spellcheck: 'false' });
            openDialog({
              title: 'Delete this endpoint?', confirm: 'Delete endpoint', danger: true, focus: input,
              body: [h('p', null, h('strong', { class: 'wrap-any' }, ep.url), ' will stop receiving events. There is no undo.'),
                h('div', { class: 'field' }, h('label', { for: cid }, 'Type ', h('code', null, host), ' to confirm'), input)],
              canConfirm: function () { return input.value.trim() === host; },
              onConfirm: function () { return api('DELETE', base); }
            }).then(function (r) {
              if (!r) return;
              toast({ title: 'Endpoint deleted' });
              location.hash = '#/endpoints';
            });
          } }, 'Delete endpoint…')));

      add(main, h('div', { class: 'grid-2' },
        h('div', null, h('section', { class: 'card' }, f1), h('section', { class: 'card' }, f2), h('section', { class: 'card' }, f9), advCard),
        h('div', null, statusCard, secretCard, delCard)));
    });
  }

  function certForm(ep, base, host, refreshed) {
    var cur = ep.client_certificate, err = h('div');
    var save = h('button', { type: 'submit', class: 'btn btn-primary', disabled: true }, cur ? 'Replace certificate' : 'Save certificate');
    function pem(label, ph, hint) {
      var id = nextId('pem'), fid = nextId('pemf');
      var ta = h('textarea', { id: id, rows: '4', class: 'pem', placeholder: ph, spellcheck: 'false', autocomplete: 'off', 'data-pem': label });
      var file = h('input', { type: 'file', id: fid, accept: '.pem,.crt,.cer,.key,text/plain' });
      file.addEventListener('change', function () {
        var fl = file.files && file.files[0];
        if (!fl) return;
        if (fl.size > 65536) { fb.error('That file is too large for a PEM file (at most 32 KiB is accepted).'); return; }
        var rd = new FileReader();
        rd.addEventListener('load', function () { ta.value = String(rd.result); fb.error(null); sync(); });
        rd.addEventListener('error', function () { fb.error('The file could not be read.'); });
        rd.readAsText(fl);
      });
      var fb = fieldBlock(label, ta, hint);
      add(fb.el, h('div', { class: 'file-row small' }, h('label', { for: fid }, 'Or read it from a file: '), file));
      return { ta: ta, fb: fb };
    }
    var c = pem('Certificate (PEM)', '-----BEGIN CERTIFICATE-----', 'The leaf certificate first, then any intermediates.');
    var k = pem('Private key (PEM)', '-----BEGIN PRIVATE KEY-----', 'Unencrypted PKCS#8, PKCS#1 RSA or SEC1 EC key of the leaf. Stored encrypted; it is never shown again.');
    function sync() { var on = !!(c.ta.value.trim() && k.ta.value.trim()); save.disabled = !on; if (on) state.dirty = true; }
    c.ta.addEventListener('input', sync); k.ta.addEventListener('input', sync);
    var now = h('div', null);
    if (cur) {
      add(now, [h('dl', { class: 'kv' },
        h('dt', null, 'Subject'), h('dd', { class: 'wrap-any', 'data-cert-subject': '' }, cur.subject),
        h('dt', null, 'Expires'), h('dd', null, timeEl(cur.not_after, true), certWarn(cur.not_after))),
        h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'btn btn-danger', 'data-action': 'remove-cert', onclick: function () {
          openDialog({
            title: 'Remove the client certificate?', confirm: 'Remove certificate', danger: true,
            body: [h('p', null, 'Herald will stop presenting ', h('strong', { class: 'wrap-any' }, cur.subject), ' to ', h('strong', null, host), '.'),
              h('p', null, 'If the receiver requires a client certificate, its deliveries will fail until you add one again.')],
            onConfirm: function () { return api('PATCH', base, { client_certificate: null }); }
          }).then(function (n) { if (n) refreshed(n, 'Client certificate removed'); });
        } }, 'Remove certificate…'))]);
    } else add(now, h('p', { class: 'muted small' }, 'None. Add one if the receiver’s gateway asks for mutual TLS.'));
    var form = h('form', { novalidate: true, 'aria-labelledby': 's8-h', 'data-form': 'certificate' },
      h('div', { class: 'card-body' }, h('h3', { id: 's8-h' }, 'Client certificate'), now, err,
        h('p', { class: 'small' }, cur ? 'Replace it with a new pair:' : 'Paste the certificate and its key, or choose their files:'), c.fb.el, k.fb.el),
      h('div', { class: 'card-foot' }, h('span', { class: 'muted small' }, 'Presented when the receiver asks for one.'), save));
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      if (save.disabled) return;
      save.disabled = true; save.setAttribute('aria-busy', 'true'); clear(err); c.fb.error(null);
      api('PATCH', base, { client_certificate: { cert_pem: c.ta.value, key_pem: k.ta.value } }).then(function (n) {
        c.ta.value = ''; k.ta.value = ''; state.dirty = false; refreshed(n, 'Client certificate saved');
      }, function (e2) {
        save.disabled = false; save.removeAttribute('aria-busy');
        if (e2.code === 'VALIDATION_FAILED') applyFieldErrors(e2, { client_certificate: c.fb });
        add(err, errorPanel(e2));
      });
    });
    return form;
  }

  // ---------- Recovery ----------
  function viewRecover(ctx) {
    var id = ctx.segs[1];
    setTitle('Recover');
    loadEndpoint(ctx, id, function (ep) {
      setTitle('Recover · ' + hostOf(ep.url));
      add(main, endpointHeader(ep, 'recover'));
      if (!state.canWrite) { add(main, readOnlyNotice()); return; }
      var base = '/v1/webhooks/' + encodeURIComponent(ep.id);
      var sinceDefault = ctx.params.get('since') || ep.failing_since || new Date(Date.now() - 86400000).toISOString();
      var sinceIn = h('input', { type: 'datetime-local', id: nextId('since'), value: toLocalInput(new Date(sinceDefault)), step: '60' });
      var untilIn = h('input', { type: 'datetime-local', id: nextId('until'), value: ctx.params.get('until') ? toLocalInput(new Date(ctx.params.get('until'))) : '', step: '60' });
      var fSince = fieldBlock('From', sinceIn, 'Times are in your time zone (' + tz + ') and sent as UTC.');
      var fUntil = fieldBlock('Until', untilIn, 'Leave empty for “now”.', h('span', { class: 'muted' }, ' (optional)'));
      var typesBox = h('div', { class: 'chips' });
      var typeBoxes = [];
      (ep.events || []).forEach(function (n) {
        var cid = nextId('rt');
        var cb = h('input', { type: 'checkbox', id: cid, value: n });
        typeBoxes.push(cb);
        add(typesBox, h('div', { class: 'check chip' }, cb, h('label', { for: cid }, n)));
      });
      var fTypes = fieldBlock('Only these event types', typesBox, 'None checked means every type.', h('span', { class: 'muted' }, ' (optional)'));
      var missingId = nextId('miss');
      var missing = h('input', { type: 'checkbox', id: missingId, checked: ctx.params.get('include_missing') === '1' });
      var fMissing = fieldBlock('Missed events', h('div', { class: 'check' }, missing, h('label', { for: missingId }, 'Also send events this endpoint never received: those published while it was disabled, of the types it subscribes to now.')), null);
      var out = h('div', { 'aria-live': 'polite' });
      var preview = h('button', { type: 'submit', class: 'btn' }, 'Preview');
      var fields = { since: fSince, until: fUntil, event_types: fTypes, include_missing: fMissing };
      var form = h('form', { novalidate: true, 'aria-labelledby': 'rc-h' },
        h('div', { class: 'card-head' }, h('h2', { id: 'rc-h' }, 'Recover failed deliveries')),
        h('div', { class: 'card-body' },
          h('p', { class: 'muted small' }, 'Sends again every event in the window whose delivery to this endpoint failed for good. Events keep their original ids, so a receiver that de-duplicates on the event id will not process one twice.'),
          fSince.el, fUntil.el, fTypes.el, fMissing.el, out),
        h('div', { class: 'card-foot' }, h('span', { class: 'muted small' }, 'Preview first: it counts the matching events and sends nothing.'), preview));
      function body(dry) {
        var b = { since: fromLocalInput(sinceIn.value), dry_run: dry, include_missing: missing.checked };
        var u = fromLocalInput(untilIn.value);
        if (u) b.until = u;
        var t = typeBoxes.filter(function (c) { return c.checked; }).map(function (c) { return c.value; });
        if (t.length) b.event_types = t;
        return b;
      }
      form.addEventListener('input', function () { clear(out); state.dirty = true; });
      function fail(err, btn) {
        btn.disabled = false; btn.removeAttribute('aria-busy');
        if (err.code === 'VALIDATION_FAILED') applyFieldErrors(err, fields);
        if (err.code === 'ENDPOINT_INACTIVE' || err.status === 409) {
          var en = h('button', { type: 'button', class: 'btn btn-primary' }, 'Enable endpoint');
          en.addEventListener('click', function () {
            en.disabled = true;
            api('PATCH', base, { active: true }).then(function () { toast({ title: 'Endpoint enabled' }); clear(out); form.requestSubmit(); }, function (e2) { en.disabled = false; errorToast(e2); });
          });
          add(out, h('div', { class: 'alert warn', role: 'alert' }, h('h2', null, 'This endpoint is disabled'), h('p', null, 'Nothing can be delivered to it. Enable it first, then recover.'), en));
          return;
        }
        add(out, errorPanel(err));
      }
      form.addEventListener('submit', function (e) {
        e.preventDefault();
        if (preview.disabled) return;
        clear(out); Object.keys(fields).forEach(function (k) { fields[k].error(null); });
        var b = body(true);
        if (!b.since) { fSince.error('Choose a start time.'); return; }
        preview.disabled = true; preview.setAttribute('aria-busy', 'true');
        api('POST', base + '/recover', b).then(function (r) {
          preview.disabled = false; preview.removeAttribute('aria-busy');
          if (!r.matched) {
            add(out, h('div', { class: 'alert info', 'data-preview': '0' }, h('h2', null, '0 events match'), h('p', null, 'Nothing failed for good in this window. Try an earlier start, or include missed events.')));
            return;
          }
          var go = h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'recover-run' }, 'Recover ' + plural(r.matched, 'event'));
          add(out, h('div', { class: 'alert info', 'data-preview': String(r.matched) }, h('h2', null, plural(r.matched, 'event') + (r.matched === 1 ? ' matches' : ' match')),
            h('p', null, 'They will be sent again to ', h('strong', null, hostOf(ep.url)), ' under their original event ids.'), go));
          go.addEventListener('click', function () {
            go.disabled = true; go.setAttribute('aria-busy', 'true');
            api('POST', base + '/recover', body(false)).then(function (rr) {
              state.dirty = false;
              clear(out); add(out, recoveryProgress(ctx, rr));
            }, function (err) { clear(out); fail(err, go); });
          });
          go.focus();
        }, function (err) { fail(err, preview); });
      });
      add(main, h('section', { class: 'card' }, form));
    });
  }
  function recoveryProgress(ctx, r) {
    var box = h('div', { class: 'alert ok', 'data-recovery': r.recovery_id });
    var line = h('p', { 'data-recovery-status': r.status });
    function show(x) {
      clear(line);
      line.setAttribute('data-recovery-status', x.status);
      add(line, [h('strong', null, x.status === 'done' ? 'Done. ' : x.status === 'running' ? 'Running… ' : 'Queued… '),
        (x.enqueued != null ? x.enqueued : 0) + ' of ' + x.matched + ' events queued for delivery.']);
    }
    add(box, [h('h2', null, 'Recovery started'), line, h('p', { class: 'small' }, 'Recovery id ', h('code', null, r.recovery_id), ' ', copyBtn(r.recovery_id, 'recovery id')),
      h('p', { class: 'small' }, h('a', { href: link('/deliveries', new URLSearchParams({ endpoint_id: r.endpoint_id })) }, 'Follow the deliveries →'))]);
    show({ status: r.status, matched: r.matched, enqueued: 0 });
    function poll() {
      if (!alive(ctx)) return;
      api('GET', '/v1/webhooks/recoveries/' + encodeURIComponent(r.recovery_id)).then(function (x) {
        show(x);
        if (x.status !== 'done') setTimeout(poll, 1000);
      }, function (err) { if (alive(ctx)) add(box, errorPanel(err)); });
    }
    setTimeout(poll, 500);
    return box;
  }

  // ---------- Deliveries feed ----------
  var RANGES = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };
  var STATUS = { '2xx': [200, 299], '3xx': [300, 399], '4xx': [400, 499], '5xx': [500, 599] };
  var FILTER_KEYS = ['endpoint_id', 'event_type', 'outcome', 'status', 'range', 'since', 'until', 'event_id'];
  function viewDeliveries(ctx) {
    setTitle('Deliveries');
    var p = ctx.params;
    function navigate(changes) {
      var n = new URLSearchParams(p.toString());
      Object.keys(changes).forEach(function (k) { if (changes[k] == null || changes[k] === '') n.delete(k); else n.set(k, changes[k]); });
      n.delete('cursor'); n.delete('prev');
      location.hash = link('/deliveries', n);
    }
    var hasFilter = FILTER_KEYS.some(function (k) { return p.get(k); });
    add(main, pageHead('Deliveries', 'Every attempt to deliver an event, newest first. Open one to see the request and the answer.', null));
    // Filters
    var epSel = h('select', { id: 'flt-ep' }, h('option', { value: '' }, 'All endpoints'));
    var typeSel = h('select', { id: 'flt-type' }, h('option', { value: '' }, 'All event types'));
    var outSel = h('select', { id: 'flt-out' }, h('option', { value: '' }, 'Any outcome'), h('option', { value: 'success' }, 'Delivered'), h('option', { value: 'retry' }, 'Retrying'), h('option', { value: 'dead' }, 'Failed'));
    var stSel = h('select', { id: 'flt-st' }, h('option', { value: '' }, 'Any status'), Object.keys(STATUS).map(function (k) { return h('option', { value: k }, 'HTTP ' + k); }));
    var rgSel = h('select', { id: 'flt-rg' }, h('option', { value: '' }, 'Any time'), h('option', { value: '1h' }, 'Last hour'), h('option', { value: '24h' }, 'Last 24 hours'), h('option', { value: '7d' }, 'Last 7 days'), h('option', { value: '30d' }, 'Last 30 days'), h('option', { value: 'custom' }, 'Custom range'));
    outSel.value = p.get('outcome') || ''; stSel.value = p.get('status') || ''; rgSel.value = p.get('range') || '';
    var filters = h('div', { class: 'filters', role: 'search', 'aria-label': 'Filter deliveries' },
      h('div', { class: 'field' }, h('label', { for: 'flt-ep' }, 'Endpoint'), epSel),
      h('div', { class: 'field' }, h('label', { for: 'flt-type' }, 'Event type'), typeSel),
      h('div', { class: 'field' }, h('label', { for: 'flt-out' }, 'Outcome'), outSel),
      h('div', { class: 'field' }, h('label', { for: 'flt-st' }, 'Response status'), stSel),
      h('div', { class: 'field' }, h('label', { for: 'flt-rg' }, 'Time'), rgSel));
    var customRow = null;
    if (p.get('range') === 'custom') {
      var cs = h('input', { type: 'datetime-local', id: 'flt-since', value: p.get('since') ? toLocalInput(new Date(p.get('since'))) : '' });
      var cu = h('input', { type: 'datetime-local', id: 'flt-until', value: p.get('until') ? toLocalInput(new Date(p.get('until'))) : '' });
      var apply = h('button', { type: 'button', class: 'btn' }, 'Apply');
      apply.addEventListener('click', function () { navigate({ since: fromLocalInput(cs.value), until: fromLocalInput(cu.value) }); });
      customRow = h('div', { class: 'filters' }, h('div', { class: 'field' }, h('label', { for: 'flt-since' }, 'From (' + tz + ')'), cs),
        h('div', { class: 'field' }, h('label', { for: 'flt-until' }, 'Until'), cu), h('div', { class: 'field' }, apply));
    }
    epSel.addEventListener('change', function () { navigate({ endpoint_id: epSel.value }); });
    typeSel.addEventListener('change', function () { navigate({ event_type: typeSel.value }); });
    outSel.addEventListener('change', function () { navigate({ outcome: outSel.value }); });
    stSel.addEventListener('change', function () { navigate({ status: stSel.value }); });
    rgSel.addEventListener('change', function () {
      var v = rgSel.value;
      if (RANGES[v]) navigate({ range: v, since: new Date(Date.now() - RANGES[v]).toISOString(), until: null });
      else if (v === 'custom') navigate({ range: 'custom' });
      else navigate({ range: null, since: null, until: null });
    });
    var chipRow = null;
    if (p.get('event_id')) {
      chipRow = h('div', { class: 'card-body' }, h('span', { class: 'chip' }, 'Event ', p.get('event_id')), ' ',
        h('button', { type: 'button', class: 'btn btn-sm', onclick: function () { navigate({ event_id: null }); } }, 'Show all events'));
    }
    var refresh = h('button', { type: 'button', class: 'btn btn-sm', 'data-action': 'refresh' }, '↻ Refresh');
    refresh.addEventListener('click', function () { render(); });
    var clearBtn = hasFilter ? h('a', { class: 'btn btn-sm', href: '#/deliveries' }, 'Clear filters') : null;
    var totalLine = h('span', { class: 'muted small', 'data-total': '' });
    var listBox = h('div');
    var tb = h('tbody'); skeletonRows(tb, 6, 5);
    add(listBox, h('div', { class: 'table-wrap' }, h('table', { 'aria-hidden': 'true' }, tb)));
    var pager = h('div', { class: 'pager' });
    var card = h('section', { class: 'card', 'aria-label': 'Delivery attempts' },
      h('div', { class: 'card-head' }, h('h2', null, 'Attempts'), h('div', { class: 'page-actions' }, totalLine, clearBtn, refresh)),
      filters, customRow, chipRow, listBox, h('div', { class: 'card-foot' }, h('span', { class: 'muted small' }, 'Refresh to see new attempts; pages stay put until you do.'), pager));
    add(main, card);

    // Options
    loadTypes().then(function (types) {
      types.concat([{ name: 'webhook.test' }]).forEach(function (t) { add(typeSel, h('option', { value: t.name }, t.name)); });
      typeSel.value = p.get('event_type') || '';
    }, function () { /* the list still works */ });
    api('GET', '/v1/webhooks?limit=100').then(function (r) {
      var found = false;
      (r.data || []).forEach(function (ep) { if (ep.id === p.get('endpoint_id')) found = true; add(epSel, h('option', { value: ep.id }, hostOf(ep.url) + (ep.description ? ' — ' + ep.description : ''))); });
      if (p.get('endpoint_id') && !found) add(epSel, h('option', { value: p.get('endpoint_id') }, 'Deleted endpoint ' + p.get('endpoint_id').slice(0, 8) + '…'));
      epSel.value = p.get('endpoint_id') || '';
    }, function () { /* ignore */ });

    var q = { limit: 50, endpoint_id: p.get('endpoint_id'), event_type: p.get('event_type'), outcome: p.get('outcome'), event_id: p.get('event_id'), since: p.get('since'), until: p.get('until'), cursor: p.get('cursor') };
    if (STATUS[p.get('status')]) { q.http_status_min = STATUS[p.get('status')][0]; q.http_status_max = STATUS[p.get('status')][1]; }
    api('GET', '/v1/webhooks/deliveries' + qs(q)).then(function (r) {
      if (!alive(ctx)) return;
      var list = r.data || [], meta = r.meta || {};
      var prev = p.getAll('prev');
      var offset = prev.length * 50;
      totalLine.textContent = list.length ? 'Showing ' + (offset + 1) + '–' + (offset + list.length) + ' of ' + (meta.total != null ? meta.total : '?') : (meta.total || 0) + ' attempts';
      clear(listBox);
      if (!list.length) {
        add(listBox, hasFilter
          ? h('div', { class: 'empty', 'data-empty': 'filtered' }, h('h3', null, 'No deliveries match these filters'), h('p', { class: 'muted small' }, 'There was no delivery activity matching them in this range.'), h('div', { class: 'form-actions' }, h('a', { class: 'btn', href: '#/deliveries' }, 'Clear filters')))
          : h('div', { class: 'empty', 'data-empty': 'deliveries' }, h('h3', null, 'No deliveries yet'), h('p', { class: 'muted small' }, state.canWrite ? 'Send a test event from an endpoint to see your first delivery here.' : 'Deliveries appear here once events are sent.'),
            h('div', { class: 'form-actions' }, h('a', { class: 'btn', href: '#/endpoints' }, 'Go to endpoints'))));
      } else add(listBox, deliveriesTable(list, { host: true, label: 'Delivery attempts' }));
      if (prev.length) {
        var pp = new URLSearchParams(p.toString()); pp.delete('prev'); pp.delete('cursor');
        var stack = prev.slice(0, -1), last = prev[prev.length - 1];
        stack.forEach(function (c) { pp.append('prev', c); });
        if (last) pp.set('cursor', last);
        add(pager, h('a', { class: 'btn btn-sm', href: link('/deliveries', pp), rel: 'prev' }, '← Previous'));
      }
      if (meta.next_cursor) {
        var np = new URLSearchParams(p.toString()); np.delete('cursor');
        np.append('prev', p.get('cursor') || '');
        np.set('cursor', meta.next_cursor);
        add(pager, h('a', { class: 'btn btn-sm', href: link('/deliveries', np), rel: 'next' }, 'Next →'));
      }
      markReady();
    }, function (err) {
      if (!alive(ctx)) return;
      clear(listBox); add(listBox, h('div', { class: 'card-body' }, errorPanel(err, render)));
      markReady();
    });
  }

  // ---------- Attempt detail ----------
  function viewAttempt(ctx) {
    var id = ctx.segs[1];
    setTitle('Delivery attempt');
    var holder = h('div', null, h('div', { class: 'card' }, h('div', { class: 'card-body' }, h('span', { class: 'skeleton' }))));
    add(main, holder);
    api('GET', '/v1/webhooks/deliveries/' + encodeURIComponent(id)).then(function (d) {
      if (!alive(ctx)) return;
      holder.remove();
      renderAttempt(ctx, d);
      markReady();
    }, function (err) {
      if (!alive(ctx)) return;
      clear(holder);
      add(holder, err.status === 404 ? h('div', { class: 'card' }, h('div', { class: 'empty' }, h('h1', null, 'Delivery not found'),
        h('p', { class: 'muted' }, 'Attempt records are kept for a limited time.'), h('div', { class: 'form-actions' }, h('a', { class: 'btn btn-primary', href: '#/deliveries' }, 'All deliveries'))))
        : errorPanel(err, render));
      markReady();
    });
  }
  function kvRow(dl, label, value, copy) {
    add(dl, [h('dt', null, label), h('dd', null, value, copy ? copyBtn(copy[0], copy[1]) : null)]);
  }
  function renderAttempt(ctx, d) {
    setTitle(d.event_type + ' attempt ' + d.attempt);
    var actions = [];
    if (state.canWrite) {
      actions.push(h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'replay', onclick: function (e) { replay(d, e.currentTarget); } }, 'Replay…'));
      if (d.event_type !== 'webhook.test') actions.push(h('a', { class: 'btn', href: link('/endpoints/' + encodeURIComponent(d.endpoint_id) + '/recover', new URLSearchParams({ since: d.occurred_at })), 'data-action': 'recover' }, 'Recover all failed since…'));
    }
    add(main, pageHead(h('div', { class: 'title-row' }, h('h1', null, h('code', null, d.event_type), ' · attempt ' + d.attempt), outcomeBadge(d)),
      h('span', null, 'To ', h('span', { class: 'wrap-any' }, d.url), ' · ', timeEl(d.occurred_at, true)),
      actions, [h('a', { href: '#/deliveries' }, 'Deliveries'), ' / Attempt']));
    var replayOut = h('div', { 'aria-live': 'polite', id: 'replay-out' });
    add(main, replayOut);

    // Response
    var resp = h('dl', { class: 'kv' });
    kvRow(resp, 'Outcome', h('span', { 'data-outcome': d.outcome }, d.outcome === 'success' ? 'Delivered' : d.outcome === 'retry' ? 'Failed; will be retried' : 'Failed; no more attempts'));
    kvRow(resp, 'HTTP status', d.response_status == null ? 'No response' : String(d.response_status));
    kvRow(resp, 'Response time', d.response_time_ms + ' ms');
    if (d.error) kvRow(resp, 'Error', h('span', { class: 'wrap-any', 'data-error': '' }, d.error));
    if (d.next_attempt_at) kvRow(resp, 'Next attempt', timeEl(d.next_attempt_at, true));
    var respCard = h('section', { class: 'card', 'aria-labelledby': 'rs-h' }, h('div', { class: 'card-head' }, h('h2', { id: 'rs-h' }, 'Response')),
      h('div', { class: 'card-body' }, resp,
        h('h3', { class: 'small muted' }, 'Body (first 1 KiB)'),
        d.response_body_excerpt ? h('pre', { class: 'code', 'data-excerpt': '' }, prettyMaybeJson(d.response_body_excerpt)) : h('p', { class: 'muted small' }, 'No response body.')));

    // Request
    var req = h('dl', { class: 'kv' });
    kvRow(req, 'Attempt id', h('code', { class: 'wrap-any' }, d.id), [d.id, 'attempt id']);
    kvRow(req, 'Event id', h('code', { class: 'wrap-any' }, d.event_id), [d.event_id, 'event id']);
    kvRow(req, 'Endpoint', h('a', { href: '#/endpoints/' + encodeURIComponent(d.endpoint_id) }, h('code', { class: 'wrap-any' }, d.endpoint_id)), [d.endpoint_id, 'endpoint id']);
    kvRow(req, 'URL', h('span', { class: 'wrap-any' }, d.url));
    if (d.sequence != null) kvRow(req, 'Sequence', String(d.sequence));
    if (d.ordering_key) kvRow(req, 'Ordering key', h('code', null, d.ordering_key));
    kvRow(req, 'Body SHA-256', h('code', { class: 'wrap-any', 'data-sha': '' }, d.request_body_sha256), [d.request_body_sha256, 'body SHA-256']);
    kvRow(req, 'Body size', d.request_body_bytes + ' bytes');
    var headers = d.request_headers || {};
    var hk = Object.keys(headers);
    var htable = hk.length ? h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Request headers' },
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Header'), h('th', { scope: 'col' }, 'Value'))),
      h('tbody', null, hk.map(function (k) { return h('tr', null, h('td', { class: 'nowrap' }, h('code', null, k)), h('td', { class: 'wrap-any' }, h('code', null, String(headers[k])))); }))))
      : h('p', { class: 'muted small' }, 'Nothing was sent.');
    var reqCard = h('section', { class: 'card', 'aria-labelledby': 'rq-h' }, h('div', { class: 'card-head' }, h('h2', { id: 'rq-h' }, 'Request')),
      h('div', { class: 'card-body' }, req, h('p', { class: 'hint' }, 'To check what you received, hash the raw body with SHA-256 and compare.')), htable);

    // Payload
    var payBody = h('div', { class: 'card-body' });
    var payCard = h('section', { class: 'card', 'aria-labelledby': 'pl-h' }, h('div', { class: 'card-head' }, h('h2', { id: 'pl-h' }, 'Payload')), payBody);
    if (d.sequence == null) add(payBody, h('p', { class: 'muted small' }, d.event_type === 'webhook.test' ? 'Test events are not stored; the payload was the standard test message.' : 'The payload is not available for this attempt.'));
    else {
      add(payBody, h('span', { class: 'skeleton' }));
      api('GET', '/v1/webhooks/' + encodeURIComponent(d.endpoint_id) + '/events' + qs({ after_sequence: d.sequence - 1, limit: 1 })).then(function (r) {
        if (!alive(ctx)) return;
        clear(payBody);
        var ev = (r.data || [])[0];
        if (!ev || ev.sequence !== d.sequence) { add(payBody, h('p', { class: 'muted small' }, 'No longer retained: event payloads are kept for a limited time.')); return; }
        var txt = JSON.stringify(ev.body, null, 2);
        add(payBody, [h('div', { class: 'form-actions' }, h('span', { class: 'muted small' }, 'The envelope as delivered'), copyBtn(txt, 'payload')), h('pre', { class: 'code', 'data-payload': '' }, txt)]);
      }, function (err) {
        if (!alive(ctx)) return;
        clear(payBody);
        add(payBody, err.status === 404 ? h('p', { class: 'muted small' }, 'The endpoint was deleted, so its payloads can no longer be read.') : errorPanel(err));
      });
    }

    // Other attempts of the same event
    var others = h('section', { class: 'card', 'aria-labelledby': 'oa-h' }, h('div', { class: 'card-head' }, h('h2', { id: 'oa-h' }, 'All attempts of this event')), h('div', { class: 'card-body' }, h('span', { class: 'skeleton' })));
    api('GET', '/v1/webhooks/deliveries' + qs({ event_id: d.event_id, endpoint_id: d.endpoint_id, limit: 20 })).then(function (r) {
      if (!alive(ctx)) return;
      others.replaceChild(deliveriesTable(r.data || [], { label: 'All attempts of this event' }), others.lastChild);
    }, function () { others.remove(); });

    add(main, h('div', { class: 'grid-2' }, h('div', null, respCard, payCard), h('div', null, reqCard, others)));
  }
  function replay(d, btn) {
    var rid = nextId('reason');
    var reason = h('textarea', { id: rid, rows: '2' });
    var counter = h('span', { class: 'counter' }, '0 / 500');
    reason.addEventListener('input', function () { counter.textContent = chars(reason.value) + ' / 500'; });
    openDialog({
      title: 'Replay this delivery?', confirm: 'Replay',
      body: [h('p', null, 'We send the same data to ', h('strong', { class: 'wrap-any' }, hostOf(d.url)), ' again as a ', h('strong', null, 'new event with a new event id'), '. A receiver that de-duplicates on the event id will process it again.'),
        h('p', { class: 'muted small' }, 'To send failed events again under their original ids instead, use Recover.'),
        h('div', { class: 'field' }, h('label', { for: rid }, 'Reason ', h('span', { class: 'muted' }, '(optional, kept in the audit log)'), counter), reason)],
      canConfirm: function () { return chars(reason.value) <= 500; },
      onConfirm: function () { return api('POST', '/v1/webhooks/deliveries/' + encodeURIComponent(d.id) + '/replay', reason.value.trim() ? { reason: reason.value } : {}); }
    }).then(function (r) {
      if (!r) return;
      var out = byId('replay-out');
      if (!out) return;
      clear(out);
      add(out, h('div', { class: 'alert ok', role: 'status', 'data-replayed': r.new_event_id }, h('h2', null, 'Replay queued'),
        h('p', null, 'New event ', h('code', { class: 'wrap-any' }, r.new_event_id), ' ', copyBtn(r.new_event_id, 'new event id')),
        h('p', { class: 'small' }, h('a', { href: link('/deliveries', new URLSearchParams({ event_id: r.new_event_id })) }, 'Follow its attempts →'))));
    }).catch(function () { /* handled in dialog */ });
    // 429: show how long to wait
    void btn;
  }

  // ---------- Catalog ----------
  function viewCatalog(ctx) {
    setTitle('Event catalog');
    var qv = ctx.params.get('q') || '', opened = ctx.params.get('type');
    var search = h('input', { type: 'search', id: 'cat-q', value: qv, placeholder: 'Search by name or description', autocomplete: 'off', 'aria-describedby': 'cat-count' });
    var count = h('p', { class: 'hint', id: 'cat-count', 'aria-live': 'polite', 'data-catalog-count': '' });
    add(main, pageHead('Event catalog', 'The event types you can subscribe an endpoint to. Open one to see the shape of its data and an example.', null));
    var listCol = h('div', null, h('div', { class: 'card' }, h('div', { class: 'card-body' }, h('label', { for: 'cat-q', class: 'label' }, 'Search event types'), search, count)));
    var results = h('div', { 'aria-busy': 'true' }, h('div', { class: 'card' }, h('div', { class: 'card-body' }, h('span', { class: 'skeleton' }), h('br'), h('span', { class: 'skeleton' }))));
    add(listCol, results);
    add(main, h('div', { class: 'grid-2' }, listCol, h('div', null, signaturePanel())));
    // The search and the last opened type live in the address, so a reload or a shared link
    // shows the same thing.
    function remember(name, open) {
      if (name && open) opened = name;
      else if (name && opened === name) opened = null;
      var n = new URLSearchParams();
      if (search.value) n.set('q', search.value);
      if (opened) n.set('type', opened);
      history.replaceState(null, '', location.pathname + link('/catalog', n));
    }
    loadTypes().then(function (types) {
      if (!alive(ctx)) return;
      var listed = types.filter(function (t) { return t.name !== 'webhook.test'; });
      function draw() {
        var q = search.value.trim().toLowerCase();
        clear(results);
        results.removeAttribute('aria-busy');
        var hits = listed.filter(function (t) { return !q || (t.name + ' ' + (t.description || '')).toLowerCase().indexOf(q) >= 0; });
        count.textContent = q ? plural(hits.length, 'type') + ' of ' + listed.length + ' match' : plural(listed.length, 'event type');
        var groups = groupTypes(hits);
        if (!groups.length) {
          add(results, h('div', { class: 'card' }, h('div', { class: 'empty', 'data-empty': 'catalog' }, h('h2', null, 'No event type matches “' + search.value + '”'),
            h('p', { class: 'muted small' }, 'Search looks at names and descriptions. Try another word.'),
            h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'btn', onclick: function () { search.value = ''; remember(null, false); draw(); search.focus(); } }, 'Clear search')))));
          return;
        }
        groups.forEach(function (g) {
          var gid = nextId('cg');
          add(results, h('section', { class: 'card', 'aria-labelledby': gid, 'data-group': g.name },
            h('div', { class: 'card-head' }, h('h2', { id: gid }, g.name === 'operational' ? 'Operational events' : g.name + '.*'),
              h('span', { class: 'muted small' }, g.name === 'operational' ? 'Sent by Herald about your endpoints' : plural(g.types.length, 'type'))),
            h('div', { class: 'type-list' }, g.types.map(function (t) { return typeEntry(t, t.name === opened, remember); }))));
        });
      }
      var timer = null;
      search.addEventListener('input', function () {
        clearTimeout(timer);
        timer = setTimeout(function () { remember(null, false); draw(); }, 120);
      });
      draw();
      var target = opened && results.querySelector('details[open]');
      if (target) target.scrollIntoView({ block: 'start' });
      markReady();
    }, function (err) {
      if (!alive(ctx)) return;
      results.removeAttribute('aria-busy');
      clear(results); add(results, errorPanel(err, render, 'Could not load the event catalog.'));
      markReady();
    });
  }
  // One type as a disclosure: name, badges and description when closed; its data's fields, the
  // JSON Schema and the example when open. Nothing is built until it is first opened.
  function typeEntry(t, open, onToggle) {
    var body = h('div', { class: 'type-body' });
    var built = false;
    var tags = h('span', { class: 'type-tags' },
      t.deprecated ? badge('warn', '!', 'Deprecated') : null,
      t.schema ? badge('neutral', '{ }', 'Schema') : badge('off', '–', 'No schema'));
    var box = h('details', { class: 'type-entry', 'data-type': t.name, open: !!open },
      h('summary', null, h('span', { class: 'type-name' }, h('code', null, t.name), tags),
        h('span', { class: 'type-desc muted small' }, t.description || 'No description.')),
      body);
    function build() {
      if (built) return;
      built = true;
      add(body, h('div', { class: 'form-actions' }, h('span', { class: 'muted small' }, 'Type name'), copyBtn(t.name, t.name)));
      if (t.deprecated) add(body, h('p', { class: 'alert warn small', 'data-deprecated': '' }, 'Deprecated: it is still sent to endpoints that subscribe to it, but new integrations should not rely on it.'));
      if (t.schema) {
        add(body, h('h3', null, 'Data fields'));
        var tree = schemaTree(t.schema, 0);
        add(body, tree || h('p', { class: 'muted small' }, 'The schema does not list named fields; see it below.'));
        var txt = JSON.stringify(t.schema, null, 2);
        add(body, h('details', { class: 'schema-raw', 'data-schema': '' }, h('summary', null, 'JSON Schema (2020-12) of data'),
          h('div', { class: 'form-actions' }, copyBtn(txt, 'schema of ' + t.name)), h('pre', { class: 'code', tabindex: '0' }, txt)));
      } else {
        add(body, h('p', { class: 'muted small', 'data-no-schema': '' }, 'The catalog has no schema for this type, so its data is neither described nor checked: expect any JSON object.'));
      }
      var ex = t.example != null ? JSON.stringify(t.example, null, 2) : null;
      add(body, h('div', { class: 'title-row example-head' }, h('h3', null, 'Example data'), ex ? copyBtn(ex, 'example of ' + t.name) : null));
      add(body, ex ? h('pre', { class: 'code', 'data-example': '', tabindex: '0' }, ex)
        : h('p', { class: 'muted small', 'data-no-example': '' }, 'The catalog has no example for this type.'));
    }
    if (open) build();
    box.addEventListener('toggle', function () { if (box.open) build(); if (onToggle) onToggle(t.name, box.open); });
    return box;
  }
  // A readable outline of a JSON Schema's properties (nested objects and arrays of objects),
  // or null when it names none. Keywords it does not know are left to the raw schema below it.
  function schemaTree(schema, depth) {
    if (!schema || typeof schema !== 'object' || depth > 6) return null;
    var props = schema.properties;
    if (schema.type === 'array' && schema.items && typeof schema.items === 'object') props = schema.items.properties;
    if (!props || typeof props !== 'object' || !Object.keys(props).length) return null;
    var req = Array.isArray(schema.required) ? schema.required : (schema.items && Array.isArray(schema.items.required) ? schema.items.required : []);
    return h('ul', { class: 'schema-tree' }, Object.keys(props).map(function (k) {
      var s = props[k] && typeof props[k] === 'object' ? props[k] : {};
      var rules = schemaRules(s);
      return h('li', { 'data-field': k },
        h('code', { class: 'field-name' }, k), ' ',
        h('span', { class: 'field-type' }, schemaType(s)),
        req.indexOf(k) >= 0 ? h('span', { class: 'field-req' }, 'required') : h('span', { class: 'muted small' }, 'optional'),
        s.description ? h('div', { class: 'small' }, s.description) : null,
        rules.length ? h('div', { class: 'muted small' }, rules.join(' · ')) : null,
        schemaTree(s, depth + 1));
    }));
  }
  function schemaType(s) {
    if (s.$ref) return 'see ' + s.$ref;
    var t = Array.isArray(s.type) ? s.type.join(' or ') : (s.type || (s.enum ? 'value' : s.const !== undefined ? 'constant' : 'any'));
    if (t === 'array' && s.items && s.items.type) t = 'array of ' + (Array.isArray(s.items.type) ? s.items.type.join(' or ') : s.items.type);
    return t;
  }
  function schemaRules(s) {
    var r = [];
    if (Array.isArray(s.enum)) r.push('one of ' + s.enum.map(function (v) { return JSON.stringify(v); }).join(', '));
    if (s.const !== undefined) r.push('always ' + JSON.stringify(s.const));
    if (s.format) r.push('format ' + s.format);
    if (s.pattern) r.push('pattern ' + s.pattern);
    if (s.minLength != null && s.minLength === s.maxLength) r.push('length ' + s.minLength);
    else if (s.minLength != null || s.maxLength != null) r.push('length ' + (s.minLength != null ? s.minLength : 0) + '–' + (s.maxLength != null ? s.maxLength : '∞'));
    if (s.minimum != null) r.push('≥ ' + s.minimum);
    if (s.maximum != null) r.push('≤ ' + s.maximum);
    if (s.items && typeof s.items === 'object' && !s.items.properties) {
      var each = schemaRules(s.items);
      if (each.length) r.push('each ' + each.join(', '));
    }
    return r;
  }
  function signaturePanel() {
    function row(name, text) { return [h('dt', null, h('code', null, name)), h('dd', { class: 'small' }, text)]; }
    var keys = h('div', { 'data-keys': '' }, h('span', { class: 'skeleton' }));
    api('GET', '/v1/webhook-keys').then(function (r) {
      clear(keys);
      var list = (r && r.keys) || [];
      if (!list.length) add(keys, h('p', { class: 'muted small' }, 'No signing key yet.'));
      list.forEach(function (k) {
        var jwk = JSON.stringify({ kty: 'OKP', crv: k.crv, x: k.x, kid: k.kid, alg: k.alg, use: 'sig' });
        add(keys, h('div', { class: 'key-box', 'data-key': k.kid },
          h('dl', { class: 'kv' },
            h('dt', null, 'Key id (kid)'), h('dd', null, h('code', { class: 'wrap-any', 'data-kid': '' }, k.kid), copyBtn(k.kid, 'key id')),
            h('dt', null, 'Public key (x)'), h('dd', null, h('code', { class: 'wrap-any', 'data-key-x': '' }, k.x), copyBtn(k.x, 'public key')),
            h('dt', null, 'Algorithm'), h('dd', null, k.alg + ' · ' + k.crv),
            h('dt', null, 'Created'), h('dd', null, timeEl(k.created_at, true))),
          h('div', { class: 'form-actions' }, h('span', { class: 'muted small' }, 'As a JSON Web Key'), copyBtn(jwk, 'key as JWK'))));
      });
    }, function (err) {
      clear(keys);
      add(keys, h('p', { class: 'muted small', 'data-keys-error': '' }, 'The public keys could not be loaded. ' + err.message));
    });
    return h('section', { class: 'card', 'aria-labelledby': 'sig-h' }, h('div', { class: 'card-head' }, h('h2', { id: 'sig-h' }, 'Verifying signatures')),
      h('div', { class: 'card-body' },
        h('p', { class: 'small' }, 'Every delivery is a POST with a JSON body and these headers:'),
        h('dl', { class: 'kv' },
          row('webhook-id', 'The event id; de-duplicate on it.'),
          row('webhook-timestamp', 'Unix seconds of the attempt.'),
          row('webhook-signature', 'Space-separated signatures of "<webhook-id>.<webhook-timestamp>.<raw body>". Verify any one of them.'),
          row('X-AmCore-Signature', 't=<unix seconds>,v1=<hex HMAC-SHA256 of "t\\n" + raw body>, keyed with your secret’s decoded bytes.'),
          row('X-AmCore-Sequence', 'The delivery’s number for this endpoint: a gap means you missed one.')),
        h('h3', null, 'Two kinds of signature'),
        h('dl', { class: 'kv' },
          row('v1', 'HMAC-SHA256 with the endpoint’s secret. Verify with the official Standard Webhooks libraries and the secret written whsec_<your secret>. Whoever holds the secret can also forge deliveries, so keep it like a password. During a rotation with overlap a second v1 follows, made with the previous secret.'),
          row('v1a', 'Ed25519 with your organization’s signing key. Verify with the public key below: no secret is needed, so it can go to serverless functions, third-party gateways or many services at once, and none of them can forge a delivery.')),
        h('h3', null, 'Public signing keys'),
        h('p', { class: 'small muted' }, 'Accept a v1a made by any key listed here. Also available from GET /v1/webhook-keys.'),
        keys,
        h('p', { class: 'small' }, 'Reject timestamps more than 5 minutes from your clock and compare HMAC signatures in constant time.'),
        h('p', { class: 'small' }, h('a', { href: '/openapi.json' }, 'OpenAPI document'), ' describes the API.')));
  }

  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') { var t = document.querySelector('.toast.error .btn-ghost'); if (t && !document.querySelector('dialog[open]')) t.click(); }
  });
  boot();
}());
