// The dashboard's behaviour: auto-refresh that keeps scroll and selection, confirmed
// actions sent with the session's CSRF token, and live polling of a running instance.
// User data is only ever inserted as text (textContent), never as HTML.
(function () {
  "use strict";

  const DETAIL_POLL_MS = 1000;

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function actionUrl(name) {
    return document.body.dataset.actions.replace("__ACTION__", encodeURIComponent(name));
  }

  async function post(action, body) {
    const response = await fetch(actionUrl(action), {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
      body: JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (ignored) { data = null; }
    return {ok: response.ok, status: response.status, data: data};
  }

  async function fragment(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}});
    if (response.status === 401 || response.status === 404) {
      window.location.reload();  // signed out, or purged: the full page says so
      throw new Error("HTTP " + response.status);
    }
    if (!response.ok) { throw new Error("HTTP " + response.status); }
    const holder = document.createElement("template");
    holder.innerHTML = await response.text();  // our own server-escaped HTML
    return holder.content;
  }

  // A confirmation dialog; resolves to the reason typed (or "") or null when cancelled.
  function ask(text, withReason) {
    const dialog = document.getElementById("confirm");
    const reason = document.getElementById("confirm-reason");
    const reasonLabel = document.getElementById("confirm-reason-label");
    document.getElementById("confirm-text").textContent = text;
    if (reasonLabel) { reasonLabel.hidden = !withReason; reason.value = ""; }
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function () {
        resolve(dialog.returnValue === "ok" ? (reason ? reason.value : "") : null);
      }, {once: true});
      dialog.showModal();
    });
  }

  function describe(result) {
    if (!result.data || typeof result.data.succeeded !== "number") {
      const message = result.data && result.data.Message ? result.data.Message : "the server refused it";
      return "Refused (" + result.status + "): " + message;
    }
    const d = result.data;
    const verbs = {terminate: "Terminated", purge: "Purged", suspend: "Suspended", resume: "Resumed",
                   "raise-event": "Event raised on", restart: "Restarted"};
    let text = (verbs[d.action] || d.action) + " " + d.succeeded + ".";
    if (d.failed.length) {
      const reasons = Object.entries(d.failedByReason).map(function (e) { return e[0] + " ×" + e[1]; });
      text += " " + d.failed.length + " failed (" + reasons.join(", ") + "): " +
        d.failed.slice(0, 5).map(function (f) { return f.message; }).join(" ");
    }
    if (d.moreRemain) { text += " More instances match: run it again for the rest."; }
    return text;
  }

  // -- the list page ---------------------------------------------------------------
  function listPage(live) {
    const selected = new Set();
    const count = document.getElementById("selected-count");
    const form = document.getElementById("filters");

    function syncSelection() {
      live.querySelectorAll(".row-select").forEach(function (box) { box.checked = selected.has(box.value); });
      const all = document.getElementById("select-all");
      const boxes = live.querySelectorAll(".row-select");
      if (all) { all.checked = boxes.length > 0 && Array.from(boxes).every(function (b) { return b.checked; }); }
      if (count) { count.textContent = selected.size + " selected"; }
      document.querySelectorAll('[data-scope="selected"]').forEach(function (b) { b.disabled = selected.size === 0; });
    }

    live.addEventListener("change", function (event) {
      const box = event.target;
      if (box.id === "select-all") {
        live.querySelectorAll(".row-select").forEach(function (b) {
          if (box.checked) { selected.add(b.value); } else { selected.delete(b.value); }
        });
      } else if (box.classList.contains("row-select")) {
        if (box.checked) { selected.add(box.value); } else { selected.delete(box.value); }
      }
      syncSelection();
    });

    async function refresh() {
      try {
        const content = await fragment(live.dataset.partial);
        live.replaceChildren(content);
        syncSelection();
      } catch (ignored) { /* the next tick tries again */ }
    }

    const seconds = parseInt(live.dataset.refresh || "0", 10);
    if (seconds > 0) { window.setInterval(refresh, seconds * 1000); }

    const range = document.getElementById("range");
    function showCustom() {
      document.querySelectorAll(".custom-range").forEach(function (el) { el.hidden = range.value !== "custom"; });
    }
    range.addEventListener("change", showCustom);
    showCustom();
    document.getElementById("refresh").addEventListener("change", function () { form.requestSubmit(); });

    document.querySelectorAll("[data-batch]").forEach(function (button) {
      button.addEventListener("click", async function () {
        const action = button.dataset.batch;
        const batch = document.getElementById("batch");
        const onSelection = button.dataset.scope === "selected";
        const what = onSelection ? selected.size + " selected instance(s)"
          : "every " + (action === "purge" ? "finished" : "live") + " instance matching the filters";
        const verb = action === "purge" ? "Purge (delete the records of) " : "Terminate ";
        const reason = await ask(verb + what + "?", action === "terminate");
        if (reason === null) { return; }
        const body = onSelection ? {ids: Array.from(selected)}
                                 : {filter: new URL(batch.dataset.query, window.location.href).search};
        if (reason) { body.reason = reason; }
        const result = await post(action, body);
        document.getElementById("batch-result").textContent = describe(result);
        selected.clear();
        await refresh();
      });
    });
    syncSelection();
  }

  // -- the detail page -------------------------------------------------------------
  function detailPage(live) {
    const opened = function () {
      const state = {};
      live.querySelectorAll("details[id]").forEach(function (d) { state[d.id] = d.open; });
      return state;
    };
    async function poll() {
      try {
        const state = opened();
        const content = await fragment(live.dataset.partial);
        const badge = content.querySelector("#runtime-status");
        if (badge && badge.textContent !== live.dataset.status) {
          window.location.reload();  // the status changed: so do the actions it allows
          return;
        }
        live.replaceChildren(content);
        Object.entries(state).forEach(function (e) {
          const d = document.getElementById(e[0]);
          if (d) { d.open = e[1]; }
        });
      } catch (ignored) { /* try again on the next tick */ }
      window.setTimeout(poll, DETAIL_POLL_MS);
    }
    if (live.dataset.terminal === "false") { window.setTimeout(poll, DETAIL_POLL_MS); }

    const panel = document.getElementById("actions");
    if (!panel) { return; }
    const id = panel.dataset.id;
    const output = document.getElementById("action-result");
    const confirmations = {
      terminate: "Terminate this instance?", purge: "Purge (delete) this instance's record?",
      restart: "Start the orchestrator again, with the same input, under a new ID?",
      "restart-same": "Start the orchestrator again, with the same input, under this ID?",
    };

    async function run(action, extra) {
      if (confirmations[action] && await ask(confirmations[action], false) === null) { return; }
      const name = action === "restart-same" ? "restart" : action;
      const body = Object.assign({ids: [id], reason: document.getElementById("reason").value}, extra || {});
      if (action === "restart-same") { body.sameId = true; }
      const result = await post(name, body);
      output.textContent = describe(result);
      if (!result.ok || result.data.failed.length) { return; }
      if (name === "restart" && result.data.started.length) {
        window.location.assign(panel.dataset.detailBase.replace("__ID__", encodeURIComponent(result.data.started[0])));
      } else if (name === "purge") {
        window.location.assign(panel.dataset.list);
      } else if (name !== "raise-event") {
        window.location.reload();
      }
    }

    panel.querySelectorAll("button[data-action]").forEach(function (button) {
      if (button.dataset.action === "raise-event") { return; }
      button.addEventListener("click", function () { run(button.dataset.action); });
    });
    document.getElementById("event-form").addEventListener("submit", function (event) {
      event.preventDefault();
      const name = document.getElementById("event-name").value;
      const data = document.getElementById("event-data").value.trim() || "null";
      try { JSON.parse(data); } catch (error) {
        output.textContent = "The event data is not JSON: " + error.message;
        return;
      }
      run("raise-event", {eventName: name, data: data});
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const live = document.getElementById("live");
    if (!live) { return; }
    if (document.getElementById("filters")) { listPage(live); } else { detailPage(live); }
  });
}());
