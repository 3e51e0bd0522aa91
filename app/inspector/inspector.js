// The inspector: the journal live, newest first, filtered, and one entry's detail.
//
// It reads the admin routes of this server (GET /_understudy/requests, polled), with the credentials the
// browser asked for once (HTTP Basic: the admin key as the password) and resends for the tab's life.
// Every value from the journal goes into the page as text (textContent), never as HTML.
"use strict";

(() => {
  const API = "requests";
  const POLL_MS = 1000;
  const KEPT = 1000; // the newest entries the page holds, filtered in place
  const UNFINISHED_MS = 60000; // an entry not completed for this long is not waited for any more

  const state = {
    entries: new Map(), // id -> entry
    lastId: 0,
    selected: null,
    shown: null,
    paused: false,
    scope: "",
    timer: null,
  };

  const $ = (id) => document.getElementById(id);
  const filters = ["path", "status", "rule", "model", "scope", "text"].map((name) => [name, $(`filter-${name}`)]);

  function headers() {
    return state.scope ? { "x-understudy-scope": state.scope } : {};
  }

  async function call(path, options = {}) {
    const response = await fetch(path, { credentials: "same-origin", ...options, headers: headers() });
    if (!response.ok && response.status !== 204) {
      let message = `${response.status}`;
      try {
        message = (await response.json()).error.message;
      } catch (_) {
        // not the API's error shape: the status says enough
      }
      throw new Error(message);
    }
    return response;
  }

  // ------------------------------------------------------------------------------------- reading
  async function firstPage() {
    const page = await (await call(`${API}?newest=true&limit=${KEPT}`)).json();
    state.entries.clear();
    for (const entry of page.data) state.entries.set(entry.id, entry);
    state.lastId = page.data.length ? page.data[0].id : 0;
  }

  // Reads on from the oldest entry still being answered (to see it completed), or from the newest seen.
  async function nextPages() {
    let after = state.lastId;
    const now = Date.now() / 1000;
    for (const entry of state.entries.values()) {
      if (!entry.completed && now - entry.at < UNFINISHED_MS / 1000) after = Math.min(after, entry.id - 1);
    }
    for (;;) {
      const page = await (await call(`${API}?after=${after}&limit=${KEPT}`)).json();
      for (const entry of page.data) {
        state.entries.set(entry.id, entry);
        state.lastId = Math.max(state.lastId, entry.id);
      }
      if (!page.has_more) break;
      after = page.last_id;
    }
    const ids = [...state.entries.keys()].sort((a, b) => b - a);
    for (const id of ids.slice(KEPT)) state.entries.delete(id);
  }

  async function refresh(first = false) {
    clearTimeout(state.timer);
    try {
      if (first) await firstPage();
      else await nextPages();
      say(`${state.entries.size} requests${state.scope ? ` in scope ${state.scope}` : ""}${state.paused ? " (paused)" : ", live"}`);
      render();
    } catch (error) {
      say(`cannot read the journal: ${error.message}`);
    }
    if (!state.paused) state.timer = setTimeout(() => refresh(), POLL_MS);
  }

  function say(text) {
    $("state").textContent = text;
  }

  // ------------------------------------------------------------------------------------- the list
  function matches(entry, wanted) {
    const has = (value, part) => String(value ?? "").toLowerCase().includes(part);
    if (wanted.path && !has(entry.path, wanted.path)) return false;
    if (wanted.rule && !has(entry.rule, wanted.rule)) return false;
    if (wanted.model && !has(entry.model, wanted.model)) return false;
    if (wanted.status) {
      const status = String(entry.status);
      const pattern = wanted.status.replace(/x/g, "\\d");
      if (!new RegExp(`^(${pattern.split(/\s*,\s*/).join("|")})$`).test(status)) return false;
    }
    if (wanted.text && !JSON.stringify(entry).toLowerCase().includes(wanted.text)) return false;
    return true;
  }

  function wantedNow() {
    const wanted = {};
    for (const [name, input] of filters) wanted[name] = input.value.trim().toLowerCase();
    wanted.status = wanted.status.replace(/[^0-9x, ]/g, "");
    return wanted;
  }

  function render() {
    const wanted = wantedNow();
    const rows = [...state.entries.values()].sort((a, b) => b.id - a.id).filter((entry) => matches(entry, wanted));
    const body = document.querySelector("#entries tbody");
    body.replaceChildren(...rows.map(row));
    $("empty").hidden = rows.length > 0;
    const selected = state.entries.get(state.selected);
    if (selected && selected !== state.shown) showDetail(selected); // read again: it changed (it completed, say)
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text ?? "";
    if (className) td.className = className;
    return td;
  }

  function statusClass(status) {
    if (status >= 500) return "status-server";
    if (status >= 400) return "status-client";
    return "status-ok";
  }

  function duration(entry) {
    if (entry.duration_ms == null) return entry.completed ? "" : "…";
    return entry.duration_ms < 1000 ? `${entry.duration_ms.toFixed(1)} ms` : `${(entry.duration_ms / 1000).toFixed(2)} s`;
  }

  function tokens(entry) {
    if (entry.input_tokens == null && entry.output_tokens == null) return "";
    return `${entry.input_tokens ?? "–"} → ${entry.output_tokens ?? "–"}`;
  }

  function row(entry) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.id = String(entry.id);
    if (entry.id === state.selected) tr.classList.add("selected");
    tr.append(
      cell(new Date(entry.at * 1000).toLocaleTimeString()),
      cell(entry.door, "wide"),
      cell(entry.method),
      cell(entry.path, "path"),
      cell(entry.model),
      cell(entry.scope, "wide"),
      cell(entry.rule, "wide"),
      cell(String(entry.status), statusClass(entry.status)),
      cell(duration(entry)),
      cell(tokens(entry), "wide"),
    );
    return tr;
  }

  // ------------------------------------------------------------------------------------- the detail
  function pretty(value) {
    if (value === null || value === undefined) return "(none)";
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }

  function showDetail(entry) {
    state.shown = entry;
    $("detail").hidden = false;
    document.querySelector("main").classList.add("with-detail");
    $("detail-title").textContent = `#${entry.id} ${entry.method} ${entry.path}`;
    const facts = [
      ["Time", new Date(entry.at * 1000).toISOString()],
      ["Request id", entry.request_id],
      ["Door", entry.door],
      ["Route", entry.route],
      ["Model", entry.model],
      ["Scope", entry.scope],
      ["Rule", entry.rule],
      ["Status", entry.status],
      ["Refused by", entry.refused_by],
      ["Duration", duration(entry)],
      ["First event", entry.first_event_ms == null ? null : `${entry.first_event_ms} ms`],
      ["Tokens in → out", tokens(entry)],
      ["Query", entry.query],
    ];
    const list = $("detail-facts");
    list.replaceChildren();
    for (const [name, value] of facts) {
      if (value === null || value === undefined || value === "") continue;
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      list.append(dt, dd);
    }
    const failure = failureOf(entry);
    $("detail-error").hidden = !failure;
    $("detail-error").textContent = failure || "";
    $("detail-headers").textContent = pretty(entry.headers);
    $("detail-body").textContent = pretty(entry.body);
    showResponse(entry);
  }

  function failureOf(entry) {
    const error = entry.response && typeof entry.response === "object" ? entry.response.error || entry.response : null;
    const events = (entry.events || []).filter((item) => item.event.type === "error");
    if (events.length) return `error event: ${pretty(events[0].event.error?.message ?? events[0].event)}`;
    if (entry.status >= 400) return `${entry.status}: ${error?.message ?? pretty(entry.response)}`;
    return "";
  }

  function showResponse(entry) {
    const timeline = $("timeline");
    const events = entry.events || [];
    timeline.hidden = !events.length;
    if (!events.length) {
      $("response-title").textContent = entry.completed ? "Response" : "Response (still being answered)";
      $("detail-response").textContent = pretty(entry.response);
      return;
    }
    const left = entry.events_left_out ? `, ${entry.events_left_out} more not kept` : "";
    $("response-title").textContent = `Stream: ${events.length} events${left}`;
    const last = Math.max(...events.map((item) => item.at_ms), 1);
    timeline.replaceChildren(
      ...events.map((item) => {
        const li = document.createElement("li");
        li.className = "event";
        if (item.event.type === "error") li.classList.add("error-event");
        const at = document.createElement("span");
        at.className = "at";
        at.textContent = `${item.at_ms.toFixed(1)} ms`;
        const kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = item.event.delta?.type ? `${item.event.type} · ${item.event.delta.type}` : item.event.type;
        const track = document.createElement("span");
        track.className = "track";
        const bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = `${(100 * item.at_ms) / last}%`; // CSSOM, which the policy allows (no style attribute)
        track.append(bar);
        li.append(at, kind, track);
        li.title = JSON.stringify(item.event);
        return li;
      }),
    );
    $("detail-response").textContent = pretty(events.map((item) => item.event));
  }

  function select(id) {
    state.selected = id;
    $("rule").hidden = true;
    for (const tr of document.querySelectorAll("#entries tbody tr")) {
      tr.classList.toggle("selected", Number(tr.dataset.id) === id);
    }
    showDetail(state.entries.get(id));
  }

  function closeDetail() {
    state.selected = null;
    $("detail").hidden = true;
    document.querySelector("main").classList.remove("with-detail");
    render();
  }

  async function copyRule() {
    const shown = $("rule");
    try {
      const text = await (await call(`${API}/${state.selected}/rule`)).text();
      shown.textContent = text;
      shown.hidden = false;
      await navigator.clipboard.writeText(text);
      say("copied the rule: paste it into a script's rules");
    } catch (error) {
      shown.hidden = false;
      if (!shown.textContent) shown.textContent = `cannot make a rule: ${error.message}`;
      say(error.message.startsWith("Journal entry") ? error.message : "the rule is below: copy it from there");
    }
  }

  // ------------------------------------------------------------------------------------- actions
  async function clearJournal() {
    if (!confirm("Empty the journal of this scope?")) return;
    await call(API, { method: "DELETE" });
    state.selected = null;
    closeDetail();
    refresh(true);
  }

  async function resetAll() {
    if (!confirm("Start every scripted sequence again, and empty the journal of this scope?")) return;
    await call("reset", { method: "POST" });
    closeDetail();
    refresh(true);
  }

  function togglePause() {
    state.paused = !state.paused;
    $("pause").setAttribute("aria-pressed", String(state.paused));
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    refresh();
  }

  function start() {
    for (const [name, input] of filters) {
      input.addEventListener("input", () => {
        if (name !== "scope") return render();
        clearTimeout(input.pending);
        input.pending = setTimeout(() => {
          state.scope = input.value.trim();
          closeDetail();
          refresh(true);
        }, 400);
      });
    }
    document.querySelector("#entries tbody").addEventListener("click", (event) => {
      const tr = event.target.closest("tr");
      if (tr) select(Number(tr.dataset.id));
    });
    document.querySelector("#entries tbody").addEventListener("keydown", (event) => {
      const tr = event.target.closest("tr");
      if (tr && (event.key === "Enter" || event.key === " ")) select(Number(tr.dataset.id));
    });
    $("copy-rule").addEventListener("click", copyRule);
    $("close-detail").addEventListener("click", closeDetail);
    $("clear").addEventListener("click", clearJournal);
    $("reset").addEventListener("click", resetAll);
    $("pause").addEventListener("click", togglePause);
    refresh(true);
  }

  start();
})();
