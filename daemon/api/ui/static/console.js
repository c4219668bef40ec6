// The console's code: sign in with an admin key (sessionStorage, sent as X-API-Key), then
// poll GET /v1/console and the dead letters every 1.5 s and draw what they say. Every
// value is put in with textContent: nothing from the server is read as HTML.
"use strict";
(function () {
  var STORAGE = "textractd.adminKey";
  var EVERY_MS = 1500;
  var $ = function (id) { return document.getElementById(id); };
  var timer = null;
  var tick = 0;
  var hasQuarantine = null;  // known from /openapi.json once signed in

  // --- talking to the api -------------------------------------------------------------
  function key() { return sessionStorage.getItem(STORAGE); }

  async function api(method, path, options) {
    options = options || {};
    var headers = Object.assign({ "X-API-Key": key() || "" }, options.headers || {});
    var response = await fetch(path, { method: method, headers: headers, body: options.body,
                                       credentials: "omit", cache: "no-store" });
    var type = response.headers.get("Content-Type") || "";
    var body = type.indexOf("json") >= 0 ? await response.json() : await response.text();
    if (response.status === 401 || response.status === 403) {
      signOut((body && body.error && body.error.message) || "the key was refused");
      throw new Error("signed out");
    }
    return { status: response.status, body: body,
             retryAfter: Number(response.headers.get("Retry-After")) || 0 };
  }

  // --- small helpers ------------------------------------------------------------------
  function text(id, value) { $(id).textContent = value === null || value === undefined ? "—" : value; }
  function ms(value) { return value === null || value === undefined ? "—" : value < 1000 ?
    Math.round(value) + " ms" : (value / 1000).toFixed(1) + " s"; }
  function age(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
    return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
  }
  function clock(epoch) { return epoch ? new Date(epoch * 1000).toLocaleTimeString() : "—"; }
  function badge(word, tone) {
    var span = document.createElement("span");
    span.className = "badge state-" + tone;
    span.textContent = word;
    return span;
  }
  function row(tbody, cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (c) {
      var td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c);
      else if (c && typeof c === "object") { td.textContent = c.text; td.className = c.cls || ""; }
      else td.textContent = c === null || c === undefined ? "—" : c;
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
    return tr;
  }
  function fill(tableId, items, toCells, empty) {
    var tbody = $(tableId).querySelector("tbody");
    tbody.replaceChildren();
    if (!items || !items.length) {
      var tr = row(tbody, [empty]);
      tr.firstChild.colSpan = $(tableId).querySelectorAll("th").length;
      tr.firstChild.className = "muted";
      return;
    }
    items.forEach(function (item) { row(tbody, toCells(item)); });
  }
  function short(id) { return id ? { text: String(id).slice(0, 12), cls: "id" } : "—"; }
  function setLink(word, tone) {
    var el = $("link-state");
    el.className = "badge state-" + tone;
    el.textContent = word;
  }

  // --- what the board shows -----------------------------------------------------------
  var BREAKER = { closed: ["Closed", "ok"], open: ["Open", "bad"],
                  half_open: ["Half open (trying)", "warn"] };

  function showOverview(o) {
    setLink(o.redis && o.redis.connected ? "Live" : "Redis unreachable",
            o.redis && o.redis.connected ? "ok" : "bad");
    text("updated", "updated " + new Date().toLocaleTimeString());
    var q = o.queue || {}, jobs = o.jobs || {}, lat = o.latency || {};
    text("t-depth", q.depth); text("t-in-flight", q.in_flight); text("t-waiting", q.waiting);
    text("t-deferred", q.deferred); text("t-dead", q.dead_letters);
    text("t-done", jobs.done); text("t-failed", jobs.failed);
    var ex = lat.extraction || {}, rq = lat.request || {};
    text("t-latency", ms(ex.p50_ms) + " / " + ms(ex.p95_ms));
    text("t-request", ms(rq.p50_ms) + " / " + ms(rq.p95_ms));

    var series = o.series || [];
    var last = series.length ? series[series.length - 1] : null;
    text("rate-done", last ? last[1].toFixed(2) : null);
    text("rate-failed", last ? last[2].toFixed(2) : null);
    window.RateChart.draw($("chart"), series, o.series_window_s || 900, o.at || Date.now() / 1000);

    var workers = o.workers || [];
    text("workers-count", workers.length + " live");
    fill("workers", workers, function (w) {
      return [w.consumer, w.host, w.pid, w.busy ? badge("Busy", "info") : badge("Idle", "ok"),
              short(w.job_id), w.busy ? age(w.job_age_s) : "—",
              w.rss_mb !== null && w.rss_mb !== undefined ? w.rss_mb + " MB" : "—", w.jobs];
    }, o.workers ? "no live worker" : "not known (Redis unreachable)");

    fill("breakers", o.breakers, function (b) {
      var shown = BREAKER[b.state] || [b.state, "unknown"];
      var retry = b.retry_at ? clock(b.retry_at) + " (in " +
        age(Math.max(0, b.retry_at - (o.at || Date.now() / 1000))) + ")" : "—";
      var tr = [b.family, badge(shown[0], shown[1]), retry, b.consecutive_failures,
                b.times_opened];
      return tr;
    }, "not known");
    document.querySelectorAll("#breakers tbody tr").forEach(function (tr, i) {
      if (o.breakers && o.breakers[i]) tr.dataset.family = o.breakers[i].family;
    });

    fill("failures", o.failures, function (f) {
      return [clock(f.finished_at), short(f.job_id), badge(f.code || "failed", "bad"),
              { text: f.request_id || "—", cls: "id" }];
    }, "no failure since this api started");
  }

  function showDeadLetters(page) {
    var letters = page.dead_letters || [];
    text("dead-count", (page.total || 0) + " in all");
    fill("dead", letters, function (d) {
      var actions = document.createElement("span");
      actions.className = "actions";
      [["Replay", replay, ""], ["Purge", purge, "danger"]].forEach(function (a) {
        var b = document.createElement("button");
        b.type = "button"; b.textContent = a[0]; b.className = a[2];
        b.dataset.id = d.id; b.dataset.action = a[0].toLowerCase();
        b.addEventListener("click", function () { a[1](d).catch(function () {}); });
        actions.appendChild(b);
      });
      var code = (d.error && d.error.code) || "unknown";
      return [clock(d.dead_at), short(d.job_id), d.filename, badge(code, "bad"), d.attempts,
              { text: d.request_id || "—", cls: "id" }, actions];
    }, "no dead letter");
    var select = $("bulk-code"), chosen = select.value;
    var codes = {};
    letters.forEach(function (d) { if (d.error && d.error.code) codes[d.error.code] = true; });
    var wanted = ["*"].concat(Object.keys(codes).sort());
    var have = Array.from(select.options, function (o) { return o.value; });
    if (wanted.join() !== have.join()) {  // rebuilt only on a change: an open list stays open
      select.replaceChildren(new Option("every code", "*"));
      wanted.slice(1).forEach(function (c) { select.appendChild(new Option(c, c)); });
      select.value = codes[chosen] ? chosen : "*";
    }
  }

  function showQuarantine(result) {
    var box = $("quarantine");
    box.replaceChildren();
    var p = document.createElement("p");
    if (result === null) {
      p.className = "muted";
      p.textContent = "Not available on this server (it has no quarantine routes).";
      box.appendChild(p);
      return;
    }
    var items = Array.isArray(result) ? result :
      Object.values(result || {}).find(Array.isArray) || [];
    p.textContent = items.length + " quarantined document" + (items.length === 1 ? "" : "s");
    box.appendChild(p);
    if (!items.length) return;
    var columns = Object.keys(items[0]).filter(function (k) {
      return typeof items[0][k] !== "object"; }).slice(0, 5);
    var table = document.createElement("table");
    var head = table.createTHead().insertRow();
    columns.forEach(function (c) { var th = document.createElement("th"); th.textContent = c;
                                   head.appendChild(th); });
    var tbody = table.createTBody();
    items.slice(0, 20).forEach(function (item) {
      row(tbody, columns.map(function (c) { return item[c]; }));
    });
    var scroll = document.createElement("div");
    scroll.className = "scroll";
    scroll.appendChild(table);
    box.appendChild(scroll);
  }

  // --- the poll -----------------------------------------------------------------------
  async function refresh() {
    var delay = EVERY_MS;
    try {
      var calls = [api("GET", "/v1/console"), api("GET", "/v1/dead-letters?limit=20")];
      if (hasQuarantine && tick % 4 === 0) calls.push(api("GET", "/v1/quarantine"));
      var answers = await Promise.all(calls);
      if (answers[0].status === 200) showOverview(answers[0].body);
      else if (answers[0].status === 429) {  // RATE_LIMIT_PER_MINUTE: poll less often
        setLink("Rate limited", "warn");
        delay = Math.max(EVERY_MS, answers[0].retryAfter * 1000);
      } else setLink("Error " + answers[0].status, "bad");
      if (answers[1].status === 200) showDeadLetters(answers[1].body);
      if (answers[2]) showQuarantine(answers[2].status === 200 ? answers[2].body : null);
      else if (hasQuarantine === false && tick === 0) showQuarantine(null);
    } catch (err) {
      if (!key()) return;
      setLink("Disconnected", "bad");
    }
    tick += 1;
    if (key()) timer = setTimeout(refresh, delay);
  }

  async function discover() {
    // Which optional routes this server has (other releases add some): from the contract.
    try {
      var doc = await (await fetch("/openapi.json", { cache: "no-store" })).json();
      hasQuarantine = Boolean(doc.paths && doc.paths["/v1/quarantine"] &&
                              doc.paths["/v1/quarantine"].get);
    } catch (err) {
      hasQuarantine = false;
    }
  }

  // --- dead-letter actions ------------------------------------------------------------
  function confirmDialog(message) {
    return new Promise(function (resolve) {
      var dialog = $("confirm");
      $("confirm-text").textContent = message;
      function done(answer) {
        $("confirm-ok").removeEventListener("click", ok);
        $("confirm-cancel").removeEventListener("click", cancel);
        dialog.close();
        resolve(answer);
      }
      function ok() { done(true); }
      function cancel() { done(false); }
      $("confirm-ok").addEventListener("click", ok);
      $("confirm-cancel").addEventListener("click", cancel);
      dialog.showModal();
    });
  }

  function say(message) { $("dead-message").textContent = message; }

  async function follow(jobId) {
    // Watch a replayed job to its end, so the operator sees whether the replay worked.
    for (var i = 0; i < 60; i++) {
      var answer = await api("GET", "/v1/jobs/" + jobId + "?wait=5");
      if (answer.status === 404) {  // another tenant's job: only its own keys can read it
        say("Job " + jobId + ": queued again (another tenant's job: not followed here)");
        return;
      }
      if (answer.status !== 200) { say("Job " + jobId + ": " + answer.status); return; }
      var job = answer.body;
      if (job.state === "done" || job.state === "failed") {
        say("Job " + jobId + ": " + job.state +
            (job.error && job.error.code ? " (" + job.error.code + ")" : ""));
        return;
      }
      say("Job " + jobId + ": " + job.state);
    }
  }

  async function replay(letter) {
    if (!await confirmDialog("Replay job " + letter.job_id + "? It goes back on the queue " +
                             "with a fresh attempt count.")) return;
    var answer = await api("POST", "/v1/dead-letters/" + letter.id + "/replay");
    if (answer.status !== 202) { say("Not replayed: " + answer.body.error.message); return; }
    say("Job " + answer.body.job_id + ": queued");
    refresh.now();
    await follow(answer.body.job_id);
  }

  async function purge(letter) {
    if (!await confirmDialog("Purge the dead letter of job " + letter.job_id + "? Its " +
                             "document is deleted; it cannot be replayed after.")) return;
    var answer = await api("DELETE", "/v1/dead-letters/" + letter.id);
    say(answer.status === 204 ? "Purged job " + letter.job_id :
        "Not purged: " + answer.body.error.message);
    refresh.now();
  }

  async function bulk(action) {
    var code = $("bulk-code").value;
    var what = code === "*" ? "every dead letter" : "every dead letter of " + code;
    if (!await confirmDialog((action === "replay" ? "Replay " : "Purge ") + what + "?")) return;
    var answer = await api("POST", "/v1/dead-letters/" + action + "?code=" +
                           encodeURIComponent(code));
    if (answer.status !== 200) { say("Refused: " + answer.body.error.message); return; }
    var count = (answer.body.replayed || answer.body.purged || []).length;
    say((action === "replay" ? "Replayed " : "Purged ") + count + " dead letter" +
        (count === 1 ? "" : "s"));
    refresh.now();
  }

  refresh.now = function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 0);
  };

  // --- the upload box -----------------------------------------------------------------
  async function upload(file) {
    if (!file) return;
    $("upload-state").textContent = "Uploading " + file.name + "…";
    $("upload-text").textContent = ""; $("upload-job").textContent = "";
    var answer = await api("POST", "/v1/extract?wait=30&filename=" + encodeURIComponent(file.name),
                           { body: file, headers: { "Accept": "application/json",
                                                    "Content-Type": "application/octet-stream" } });
    while (answer.status === 202) {
      $("upload-state").textContent = "Job " + answer.body.id + ": " + answer.body.state;
      answer = await api("GET", "/v1/jobs/" + answer.body.id + "?wait=10");
      if (answer.status === 200 && answer.body.state !== "done" &&
          answer.body.state !== "failed") answer.status = 202;
    }
    var job = answer.body || {};
    var shown = Object.assign({}, job);
    delete shown.text;
    $("upload-job").textContent = JSON.stringify(shown, null, 2);
    $("upload-text").textContent = job.text || "";
    $("upload-state").textContent = answer.status === 200 ? file.name + ": " + (job.state || "done")
      : file.name + ": " + ((job.error && job.error.code) || answer.status);
    refresh.now();
  }

  function wireUpload() {
    var drop = $("drop");
    ["dragenter", "dragover"].forEach(function (name) {
      drop.addEventListener(name, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      drop.addEventListener(name, function (e) { e.preventDefault(); drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      upload(e.dataTransfer.files[0]).catch(function () {});
    });
    $("file").addEventListener("change", function (e) {
      upload(e.target.files[0]).catch(function () {});
      e.target.value = "";
    });
  }

  // --- signing in and out -------------------------------------------------------------
  function showBoard(signedIn) {
    $("sign-in").hidden = signedIn;
    $("board").hidden = !signedIn;
    $("sign-out").hidden = !signedIn;
  }

  function signOut(reason) {
    sessionStorage.removeItem(STORAGE);
    clearTimeout(timer);
    showBoard(false);
    setLink("Not signed in", "unknown");
    $("sign-in-error").textContent = reason || "";
  }

  async function start() {
    showBoard(true);
    setLink("Connecting", "unknown");
    await discover();
    tick = 0;
    refresh();
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("sign-in-form").addEventListener("submit", function (e) {
      e.preventDefault();
      sessionStorage.setItem(STORAGE, $("key").value.trim());
      $("key").value = "";
      $("sign-in-error").textContent = "";
      start();
    });
    $("sign-out").addEventListener("click", function () { signOut(""); });
    $("bulk-replay").addEventListener("click", function () { bulk("replay").catch(function () {}); });
    $("bulk-purge").addEventListener("click", function () { bulk("purge").catch(function () {}); });
    wireUpload();
    if (key()) start(); else showBoard(false);
  });
})();
