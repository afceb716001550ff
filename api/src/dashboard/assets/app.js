// syncledger dashboard: small conveniences on top of pages that work without JavaScript.
// - <time data-local> shows the instant in the browser's own time zone;
// - forms with data-confirm ask before they post;
// - elements with an id and data-live are refreshed in place when the workspace's event
//   stream (/events) reports a change;
// - inputs with data-filter="<selector>" hide the items of a list that do not match.
(function () {
  "use strict";

  function localTimes(root) {
    var fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) { el.textContent = fmt.format(d); el.title = el.getAttribute("datetime"); }
    });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { ev.preventDefault(); }
  });

  function refreshLive() {
    var live = document.querySelectorAll("[data-live][id]");
    if (!live.length) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "x-live-refresh": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        live.forEach(function (el) {
          var next = fresh.getElementById(el.id);
          if (next && next.innerHTML !== el.innerHTML) {
            el.innerHTML = next.innerHTML;
            localTimes(el);
            el.dispatchEvent(new CustomEvent("live-updated", { bubbles: true }));
          }
        });
      })
      .catch(function () {});
  }

  function followEvents() {
    if (!document.querySelector("[data-live][id]") || !window.EventSource) { return; }
    var pending = null;
    // The dashboard's stream sends unnamed events, so onmessage sees every one.
    var source = new EventSource("/events");
    function schedule() {
      if (pending) { return; }
      pending = setTimeout(function () { pending = null; refreshLive(); }, 300);
    }
    source.onmessage = schedule;
    source.onopen = function () { document.documentElement.dataset.live = "open"; };
    window.addEventListener("pagehide", function () { source.close(); });
    window.syncledgerLive = { refresh: refreshLive, schedule: schedule };
  }

  function filters() {
    document.querySelectorAll("input[data-filter]").forEach(function (input) {
      var items = document.querySelectorAll(input.getAttribute("data-filter"));
      input.addEventListener("input", function () {
        var q = input.value.trim().toLowerCase();
        items.forEach(function (item) {
          item.hidden = q !== "" && item.textContent.toLowerCase().indexOf(q) === -1;
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    followEvents();
    filters();
  });
})();
