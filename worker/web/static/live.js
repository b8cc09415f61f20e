// Live updates without reloading: polls this page's own JSON (data-poll, under /api/) every 2 s while a job
// on the page is unfinished (and, on the first page of the jobs list, to notice new jobs), then updates each
// job's status, bar, progress, tries, duration, rate and error in place. The strings come from the server.
(function () {
  "use strict";
  var root = document.querySelector("[data-poll]");
  if (!root) return;
  var url = root.getAttribute("data-poll");
  var firstListPage = root.id === "jobs" && !/[?&]before=/.test(url);
  var seen = {};
  document.querySelectorAll("[data-job]").forEach(function (el) { seen[el.getAttribute("data-job")] = true; });

  function field(el, name) { return el.querySelectorAll('[data-f="' + name + '"]'); }

  function updateJob(job) {
    document.querySelectorAll('[data-job="' + job.id + '"]').forEach(function (el) {
      field(el, "status").forEach(function (f) { f.textContent = job.status; f.className = "status s-" + job.status; });
      field(el, "bar").forEach(function (f) {
        f.className = "bar" + (["failed", "dead", "cancelled"].indexOf(job.status) >= 0 ? " bad" :
                               job.status === "succeeded" ? " done" : "");
        f.firstElementChild.style.width = (job.shown.percent || 0).toFixed(1) + "%";
      });
      ["progress", "detail", "duration", "rate", "attempts"].forEach(function (name) {
        field(el, name).forEach(function (f) { f.textContent = job.shown[name] || ""; });
      });
      field(el, "error_line").forEach(function (f) { f.textContent = job.error_line || ""; f.title = job.error || ""; });
      if (job.finished) el.removeAttribute("data-live");
    });
  }

  function valueAt(data, path) {
    return path.split(".").reduce(function (v, key) { return v == null ? v : v[key]; }, data);
  }

  function updatePaths(data) {
    document.querySelectorAll("[data-path]").forEach(function (el) {
      var v = valueAt(data, el.getAttribute("data-path"));
      el.textContent = v == null ? "-" : (typeof v === "number" ? v.toLocaleString("en") : String(v));
    });
  }

  function fixed(v) { return v == null ? "-" : Number(v).toFixed(4); }

  function updateEpochs(epochs) {
    var body = document.querySelector("tbody[data-epochs]");
    if (!body || !epochs || body.rows.length === epochs.length) return;
    body.textContent = "";
    epochs.forEach(function (e) {
      var row = body.insertRow();
      [e.epoch, fixed(e.train_loss), fixed(e.val_loss), fixed(e.accuracy), fixed(e.macro_f1)].forEach(function (v) {
        row.insertCell().textContent = v;
      });
    });
    var table = body.closest("[hidden]");
    if (table) table.hidden = false;
  }

  function live() { return document.querySelector("[data-live]") !== null; }

  function tick() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        var jobs = data.jobs || [data.job].concat(data.shards || []);
        var wasLive = root.getAttribute("data-job-live") === "1";
        jobs.forEach(function (job) {
          updateJob(job);
          if (data.jobs && !seen[job.id]) document.getElementById("new-jobs").hidden = false;
        });
        updatePaths(data);
        updateEpochs(data.epochs);
        if (data.job && wasLive && data.job.finished) { window.location.reload(); return; }
        document.body.classList.remove("offline");
        schedule(2000);
      })
      .catch(function () { document.body.classList.add("offline"); schedule(5000); });
  }

  function schedule(ms) { if (live() || firstListPage) window.setTimeout(tick, ms); }
  schedule(2000);
})();
