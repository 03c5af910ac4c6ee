// pilothouse dashboard: the few behaviours htmx does not give (charts, confirmations).
(function () {
  "use strict";
  // Forms with data-confirm ask first (the server asks again on a page of its own without JS).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var text = form.getAttribute && form.getAttribute("data-confirm");
    if (text && !window.confirm(text)) { event.preventDefault(); }
  });
  // Charts: an element with data-chart (a JSON URL) becomes a uPlot chart of its columns.
  function draw(el) {
    if (!window.uPlot) { return; }
    fetch(el.getAttribute("data-chart"), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (d) {
        if (!d.t || d.t.length === 0) { return; }
        el.textContent = "";
        var style = getComputedStyle(document.documentElement);
        var fg = style.getPropertyValue("--fg").trim() || "#888";
        new window.uPlot({
          width: Math.max(300, el.clientWidth), height: 200,
          axes: [{ stroke: fg }, { stroke: fg, label: "ms" }],
          series: [
            {},
            { label: "avg ms", stroke: "#0969da" },
            { label: "P50 ms", stroke: "#1a7f37", dash: [6, 3] },
            { label: "P95 ms", stroke: "#bf3989", dash: [2, 2] }
          ]
        }, [d.t, d.avg_ms, d.p50_ms || d.t.map(function () { return null; }), d.p95_ms], el);
      })
      .catch(function () { /* the table beside it keeps the numbers */ });
  }
  // A refused triage (409, 422) comes back as the row with the reason in it: show it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status === 409 || status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-chart]").forEach(draw);
  });
})();
