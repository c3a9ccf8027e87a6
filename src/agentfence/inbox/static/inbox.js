// agentfence inbox: refresh the pending list and count down expiry times. Plain JS, no build.
"use strict";
(function () {
  function fmt(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }
  function tick() {
    document.querySelectorAll("[data-left]").forEach(function (el) {
      if (!el.dataset.deadline) el.dataset.deadline = Date.now() + Number(el.dataset.left) * 1000;
      var left = (Number(el.dataset.deadline) - Date.now()) / 1000;
      el.textContent = left > 0 ? fmt(left) : "expired";
      el.classList.toggle("urgent", left < 300);
    });
  }
  var list = document.getElementById("pending");
  function refresh() {
    fetch(list.dataset.src, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.status === 401) { location.reload(); return null; }
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html === null) return;
      // Keep the approver's selection across the refresh (ids of requests still listed).
      var picked = {};
      list.querySelectorAll("input[name=request]:checked").forEach(function (box) { picked[box.value] = true; });
      list.innerHTML = html;  // rendered and escaped by the server
      list.querySelectorAll("input[name=request]").forEach(function (box) { box.checked = !!picked[box.value]; });
      var count = list.firstElementChild ? list.firstElementChild.dataset.count : "0";
      document.title = (count !== "0" ? "(" + count + ") " : "") + "Pending · agentfence inbox";
      tick();
    }).catch(function () {});
  }
  if (list) setInterval(refresh, Number(list.dataset.poll || 2) * 1000);
  setInterval(tick, 1000);
  tick();
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    });
  });
})();
