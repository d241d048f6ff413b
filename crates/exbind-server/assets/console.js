// exbind console: the little script of the console's pages. The pages work without it;
// it adds live updates (from GET /_exbind/v1/events), confirmations, copy buttons and
// reading a seed file into the form. No framework, nothing loaded from elsewhere.
(function () {
  'use strict';

  // Forms that ask before they do something that cannot be undone.
  document.addEventListener('submit', function (e) {
    var msg = e.target.getAttribute('data-confirm');
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // Selects that navigate as soon as they change (their form has a button without script).
  document.querySelectorAll('select[data-autosubmit]').forEach(function (sel) {
    sel.addEventListener('change', function () { sel.form.submit(); });
  });
  document.querySelectorAll('.js-hide').forEach(function (el) { el.hidden = true; });

  // Copy buttons: data-copy names the element whose text is copied.
  document.addEventListener('click', function (e) {
    var btn = e.target.closest('button[data-copy]');
    if (!btn) return;
    var src = document.getElementById(btn.getAttribute('data-copy'));
    if (!src || !navigator.clipboard) return;
    navigator.clipboard.writeText(src.textContent).then(function () {
      btn.textContent = 'Copied';
      setTimeout(function () { btn.textContent = 'Copy'; }, 1500);
    });
  });

  // A seed file is read into the text box, its format taken from its name.
  var file = document.getElementById('seed-file');
  if (file) {
    file.addEventListener('change', function () {
      var f = file.files && file.files[0];
      if (!f) return;
      f.text().then(function (text) {
        document.getElementById('seed-text').value = text;
        var fmt = document.getElementById('seed-format');
        if (fmt) fmt.value = /\.json$/i.test(f.name) ? 'json' : 'toml';
      });
    });
  }

  // ---- live updates ------------------------------------------------------------------
  var main = document.getElementById('main');
  var kind = main && main.getAttribute('data-live');
  var region = document.getElementById('live');
  if (!kind || !region || !window.EventSource) return;
  var tenant = main.getAttribute('data-tenant');
  var binding = main.getAttribute('data-binding');
  var badge = document.getElementById('live-badge');
  var status = document.getElementById('live-status');

  function setState(state, text) {
    if (!badge) return;
    badge.setAttribute('data-state', state);
    badge.textContent = text;
    badge.className = 'badge live-badge ' + (state === 'live' ? 'badge-ok' : state === 'off' ? 'badge-failed' : 'badge-muted');
  }
  function announce(text) { if (status) status.textContent = text; }

  // Re-reads the live region from the server; at most one read at a time, and one more if
  // something happened meanwhile, so a burst of events costs a few reads.
  var busy = false, again = false, last = 0;
  var minGap = kind === 'overview' ? 1000 : 300;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var wait = Math.max(0, minGap - (Date.now() - last));
    setTimeout(function () {
      fetch(location.pathname + location.search, {
        headers: { 'X-Exbind-Fragment': '1' },
        credentials: 'same-origin',
        redirect: 'manual',
      }).then(function (r) {
        // No longer signed in (a redirect to the sign-in page): show it.
        if (r.type === 'opaqueredirect' || r.status === 401) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      }).then(function (html) {
        if (html === null || html === undefined) return;
        var focused = document.activeElement && document.activeElement.id;
        // What the user chose but has not sent survives the new rows.
        var chosen = [];
        region.querySelectorAll('[data-dirty]').forEach(function (el) {
          if (el.id) chosen.push([el.id, el.value]);
        });
        region.innerHTML = html;
        chosen.forEach(function (c) {
          var el = document.getElementById(c[0]);
          if (el) { el.value = c[1]; el.setAttribute('data-dirty', '1'); }
        });
        if (focused && !document.getElementById(focused)) focused = null;
        if (focused) document.getElementById(focused).focus();
        region.setAttribute('data-refreshed', String(Date.now()));
      }).catch(function () {}).then(function () {
        last = Date.now();
        busy = false;
        if (again) { again = false; refresh(); }
      });
    }, wait);
  }

  region.addEventListener('change', function (e) {
    if (e.target.id) e.target.setAttribute('data-dirty', '1');
  });

  var types = kind === 'requests' ? 'request' : kind === 'overview' ? 'binding,request' : 'binding,request';
  var q = 'types=' + types + (tenant && kind !== 'overview' ? '&tenant_key=' + encodeURIComponent(tenant) : '');
  var es = new EventSource('/_exbind/v1/events?' + q);
  var opened = false;
  es.addEventListener('hello', function () {
    setState('live', 'Live');
    // After a reconnect, events may have been missed: read the region again.
    if (opened) refresh();
    opened = true;
  });
  es.addEventListener('binding', function (e) {
    var d = JSON.parse(e.data);
    if (kind === 'requests') return;
    if (kind === 'binding' && d.action !== 'reload' && d.exchange_binding_id !== binding) return;
    if (kind === 'bindings' && d.action !== 'reload') {
      announce(d.exchange_account + ': ' + (d.action === 'deleted' ? 'deleted' : d.status));
    }
    refresh();
  });
  es.addEventListener('request', function (e) {
    if (kind === 'requests' || kind === 'overview') { refresh(); return; }
    if (kind === 'binding') {
      var d = JSON.parse(e.data);
      if (d.exchange_binding_id === binding) refresh();
    }
  });
  es.addEventListener('lagged', function () {
    announce('Some updates were dropped while this page fell behind; it was read again.');
    setState('live', 'Live (caught up)');
    refresh();
  });
  es.onerror = function () {
    if (es.readyState === EventSource.CLOSED) setState('off', 'Not live: reload');
    else setState('connecting', 'Reconnecting…');
  };
  window.addEventListener('pagehide', function () { es.close(); });
})();
