// Rounds dashboard: the one script, served by the collector (CSP script-src 'self').
// - Shows every <time datetime> in the viewer's time zone (the server renders UTC).
// - Keeps statuses current from /events (Server-Sent Events) without a reload.
// Data from the server is only ever set with textContent, never parsed as HTML.
(function () {
  'use strict';

  function localTimes(root) {
    root.querySelectorAll('time[datetime]').forEach(function (t) {
      var d = new Date(t.getAttribute('datetime'));
      if (isNaN(d.getTime()) || t.dataset.local) { return; }
      t.title = t.textContent + ' (UTC)';
      t.textContent = d.toLocaleString();
      t.dataset.local = '1';
    });
  }

  function badge(cell, cls, text) {
    while (cell.firstChild) { cell.removeChild(cell.firstChild); }
    var s = document.createElement('span');
    s.className = 'badge ' + cls;
    s.textContent = text;
    cell.appendChild(s);
  }

  function each(selector, f) {
    document.querySelectorAll(selector).forEach(f);
  }

  function attr(v) { return String(v).replace(/["\\]/g, '\\$&'); }

  function onAgent(d) {
    each('[data-agent="' + attr(d.agent_id) + '"] .online', function (c) {
      badge(c, d.online ? 'online' : 'offline', d.online ? '● Online' : '○ Offline');
    });
    each('[data-practice="' + attr(d.practice_id) + '"] [data-domain="agents"]', function (c) {
      badge(c, d.practice_class, d.practice_icon + ' ' + d.practice_text);
    });
    fleet(d);
  }

  // The overview's total line: every agent the user sees, online and offline.
  function fleet(d) {
    if (typeof d.fleet_online !== 'number' || typeof d.fleet_offline !== 'number') { return; }
    var set = function (selector, text) {
      each(selector, function (e) { e.textContent = text; });
    };
    set('#fleet-counts', d.fleet_online + ' online, ' + d.fleet_offline + ' offline');
    set('#fleet-total .badge.online', d.fleet_online + ' online');
    set('#fleet-total .badge.offline', d.fleet_offline + ' offline');
  }

  function onFindings(d) {
    each('[data-agent="' + attr(d.agent_id) + '"] .findings', function (c) {
      badge(c, d.class, d.text);
    });
  }

  function onDomain(d) {
    each('[data-practice="' + attr(d.practice_id) + '"] [data-domain="' + attr(d.domain) + '"]', function (c) {
      badge(c, d.class, d.icon + ' ' + d.text);
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    localTimes(document);
    var live = document.getElementById('live');
    if (!live || typeof EventSource === 'undefined') { return; }
    var es = new EventSource('/events');
    es.addEventListener('hello', function () { live.textContent = '● live'; });
    es.onerror = function () { live.textContent = '○ reconnecting'; };
    es.addEventListener('agent', function (e) { onAgent(JSON.parse(e.data)); });
    es.addEventListener('findings', function (e) { onFindings(JSON.parse(e.data)); });
    es.addEventListener('domain', function (e) { onDomain(JSON.parse(e.data)); });
  });
})();
