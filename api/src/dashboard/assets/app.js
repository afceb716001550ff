// syncledger dashboard: small conveniences on top of pages that work without JavaScript.
// - <time data-local> shows the instant in the browser's own time zone;
// - forms with data-confirm ask before they post;
// - elements with an id and data-live are refreshed in place when the workspace's event
//   stream (/events) reports a change, and every 3 s while they hold a [data-active] part;
// - inputs with data-filter="<selector>" hide the items of a list that do not match;
// - inputs with data-check="<url>" have their expression checked by the server as they
//   are typed, the answer shown in the element their aria-describedby names.
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
    var trailing = [];
    // The dashboard's stream sends unnamed events, so onmessage sees every one.
    var source = new EventSource("/events");
    function schedule() {
      if (!pending) {
        pending = setTimeout(function () { pending = null; refreshLive(); }, 300);
      }
      // An event can reach the page before the read models that render it have applied
      // it: look again a little after the last event, so the page never stays stale.
      trailing.forEach(clearTimeout);
      trailing = [1500, 4000].map(function (ms) { return setTimeout(refreshLive, ms); });
    }
    source.onmessage = schedule;
    // A live region that shows something still in progress (a running sync run) is looked
    // at again every few seconds until it ends: events alone can leave it stale when the
    // read model is slower than the stream, or when the stream was refused or dropped.
    setInterval(function () {
      if (document.querySelector("[data-live] [data-active]")) { refreshLive(); }
    }, 3000);
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

  function expressionChecks() {
    document.querySelectorAll("input[data-check]").forEach(function (input) {
      var out = document.getElementById(input.getAttribute("aria-describedby"));
      var token = input.form && input.form.elements.namedItem("_csrf");
      if (!out || !token) { return; }
      var timer = null;
      var asked = 0;
      function show(answer) {
        var bad = answer && !answer.ok;
        out.textContent = bad ? answer.error : "";
        out.className = bad ? "check field-error" : "check";
        if (bad) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
      }
      input.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(function () {
          var mine = ++asked;
          var body = new URLSearchParams();
          body.set("_csrf", token.value);
          body.set("expression", input.value);
          fetch(input.getAttribute("data-check"), { method: "POST", credentials: "same-origin", body: body })
            .then(function (r) { return r.ok ? r.json() : null; })
            .then(function (answer) { if (answer && mine === asked) { show(answer); } })
            .catch(function () {});
        }, 250);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    followEvents();
    filters();
    expressionChecks();
  });
})();
