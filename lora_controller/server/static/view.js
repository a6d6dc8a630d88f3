// The placement view: reads the fleet API every two seconds and draws it. No library, no build.
// Every piece of data goes into the page as text (textContent, title, dataset), never as markup.
"use strict";
(() => {
  const POLL_MS = 2000;
  const PAGE = { rows: 50, pods: 40, cards: 60, resources: 100 };
  const state = {
    fleet: null, fleetTag: null, rows: null, rowsTag: null, rowsQuery: null,
    ns: "", model: "", resource: "", search: "",
    offset: { rows: 0, pods: 0, cards: 0, resources: 0 },
  };
  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function row(cells) {
    const tr = el("tr");
    for (const c of cells) {
      const td = el("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    }
    return tr;
  }
  function list(items) {
    const ul = el("ul", "plain");
    for (const [cls, text] of items) ul.appendChild(el("li", cls, text));
    return ul;
  }
  function bytes(n) {
    if (n === null || n === undefined) return "?";
    const units = [["Gi", 2 ** 30], ["Mi", 2 ** 20], ["Ki", 2 ** 10]];
    for (const [u, s] of units) if (n >= s) return (n / s).toFixed(n % s ? 1 : 0) + u;
    return String(n);
  }
  function time(at) { return at ? at.slice(11, 19) : ""; }

  async function fetchJSON(path, params, lastTag) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) query.set(k, String(v));
    const url = path + (query.toString() ? "?" + query.toString() : "");
    const resp = await fetch(url, { credentials: "same-origin", cache: "no-cache", headers: { Accept: "application/json" } });
    if (resp.status === 401) { window.location.reload(); throw new Error("logged out"); }
    if (!resp.ok) {
      let why = resp.status + " " + resp.statusText;
      try { why = (await resp.json()).error.message; } catch (e) { /* not JSON */ }
      throw new Error(why);
    }
    const tag = resp.headers.get("ETag");
    if (tag && tag === lastTag) return { tag, body: null, url };
    return { tag, body: await resp.json(), url };
  }

  // -- filters ---------------------------------------------------------------------------------
  function options(select, values, current) {
    const keep = values.includes(current) ? current : "";
    while (select.options.length > 1) select.remove(1);
    for (const v of values) { const o = el("option", null, v); o.value = v; select.appendChild(o); }
    select.value = keep;
    return keep;
  }
  function renderFilters() {
    const f = state.fleet;
    state.ns = options($("f-namespace"), f.namespaces, state.ns);
    state.model = options($("f-model"), f.baseModels, state.model);
    const crs = f.loraAdapters.filter((c) => (!state.ns || c.namespace === state.ns) && (!state.model || c.baseModel === state.model));
    state.resource = options($("f-resource"), [...new Set(crs.map((c) => c.name))].sort(), state.resource);
  }
  function inScope(obj, modelKey) {
    if (state.ns && obj.namespace !== state.ns) return false;
    if (!state.model) return true;
    const m = obj[modelKey];
    return Array.isArray(m) ? m.includes(state.model) : m === state.model;
  }
  function pager(id, key, total, size, onChange) {
    const box = $(id);
    box.replaceChildren();
    if (total <= size) { state.offset[key] = 0; return; }
    if (state.offset[key] >= total) state.offset[key] = Math.floor((total - 1) / size) * size;
    const at = state.offset[key];
    const prev = el("button", null, "‹ prev"); prev.disabled = at === 0; prev.type = "button";
    const next = el("button", null, "next ›"); next.disabled = at + size >= total; next.type = "button";
    prev.addEventListener("click", () => { state.offset[key] = Math.max(0, at - size); onChange(); });
    next.addEventListener("click", () => { state.offset[key] = at + size; onChange(); });
    box.append(prev, el("span", "muted", `${at + 1}–${Math.min(at + size, total)} of ${total}`), next);
  }

  // -- sections --------------------------------------------------------------------------------
  function renderResources() {
    const crs = state.fleet.loraAdapters.filter((c) => inScope(c, "baseModel") && (!state.resource || c.name === state.resource));
    $("resources-count").textContent = `(${crs.length})`;
    pager("resources-pager", "resources", crs.length, PAGE.resources, renderResources);
    const body = $("resources-table").tBodies[0];
    body.replaceChildren();
    for (const c of crs.slice(state.offset.resources, state.offset.resources + PAGE.resources)) {
      const phase = el("span", "phase-" + (c.phase || "none"), c.phase || "—");
      const failed = list(c.failedAdapters.map((f) => ["reason", `${f.name}: ${f.reason}`]));
      if (c.failedCount > c.failedAdapters.length) failed.appendChild(el("li", "muted", `… ${c.failedCount} in all`));
      const conds = list(c.conditions.map((k) => {
        const bad = k.type === "Ready" || k.type === "Discovered" ? k.status !== "True" : k.type !== "Progressing" && k.status === "True";
        return [bad ? "reason" : "muted", `${k.type}=${k.status}` + (bad ? ` ${k.reason}: ${k.message}` : "")];
      }));
      const tr = row([c.namespace, c.name, c.baseModel, phase, `${c.loadedCount} / ${c.desiredCount}`, failed, conds]);
      tr.dataset.resource = c.namespace + "/" + c.name;
      body.appendChild(tr);
    }
  }

  function matrixPods() {
    const crNs = state.resource ? new Set(state.fleet.loraAdapters.filter((c) => c.name === state.resource).map((c) => c.namespace)) : null;
    return state.fleet.pods.filter((p) => inScope(p, "baseModels") && (!crNs || crNs.has(p.namespace)));
  }
  function cellState(r, pod) {
    if (r.namespace !== pod.namespace) return null;
    const placed = r.placed.includes(pod.name);
    if (r.confirmed.includes(pod.name)) return placed ? ["confirmed", "●", "confirmed"] : ["leaving", "◌", "listed, no longer placed: being unloaded"];
    const failed = r.failedPods.find((f) => f.pod === pod.name);
    if (failed) return ["failed", "✕", "failed: " + failed.reason];
    if (placed) return r.lazy ? ["lazy", "○", "placed lazily: loaded on the first request"] : ["loading", "◐", "placed, loading"];
    return null;
  }
  function renderMatrix() {
    const rows = state.rows;
    if (!rows || !state.fleet) return;
    const pods = matrixPods();
    $("matrix-count").textContent = `(${rows.total} adapters × ${pods.length} pods)`;
    pager("matrix-pager", "rows", rows.total, PAGE.rows, () => { state.rowsTag = null; refreshRows(); });
    const pagerBox = $("matrix-pager");
    if (pods.length > PAGE.pods) {
      const at = Math.min(state.offset.pods, Math.floor((pods.length - 1) / PAGE.pods) * PAGE.pods);
      state.offset.pods = at;
      const prev = el("button", null, "‹ pods"); prev.type = "button"; prev.disabled = at === 0;
      const next = el("button", null, "pods ›"); next.type = "button"; next.disabled = at + PAGE.pods >= pods.length;
      prev.addEventListener("click", () => { state.offset.pods = Math.max(0, at - PAGE.pods); renderMatrix(); });
      next.addEventListener("click", () => { state.offset.pods = at + PAGE.pods; renderMatrix(); });
      pagerBox.append(prev, el("span", "muted", `pods ${at + 1}–${Math.min(at + PAGE.pods, pods.length)} of ${pods.length}`), next);
    } else state.offset.pods = 0;
    const cols = pods.slice(state.offset.pods, state.offset.pods + PAGE.pods);
    const table = $("matrix-table");
    const head = el("tr");
    head.appendChild(el("th", "row", "adapter (resource, version)"));
    for (const p of cols) { const th = el("th", "pod", p.name); th.title = `${p.namespace}/${p.name}`; th.dataset.pod = p.name; head.appendChild(th); }
    table.tHead.replaceChildren(head);
    const body = el("tbody");
    for (const r of rows.adapters) {
      const tr = el("tr");
      tr.dataset.adapter = r.namespace + "/" + r.name;
      const th = el("th", "row");
      th.append(el("span", null, r.name), el("span", "muted", ` ${r.namespace}/${r.loraAdapter} `), el("span", "version", r.version.slice(0, 12)));
      th.title = `${r.namespace}/${r.loraAdapter}/${r.name} version ${r.version}`;
      if (r.failures.length) th.appendChild(el("div", "reason", r.failures.join("; ")));
      tr.appendChild(th);
      for (const p of cols) {
        const td = el("td");
        const s = cellState(r, p);
        if (s === null) { if (r.namespace !== p.namespace) td.className = "other"; }
        else {
          const mark = el("span", "cell " + s[0], s[1]);
          td.dataset.state = s[0];
          td.title = `${r.name} on ${p.name}: ${s[2]} (version ${r.version})`;
          td.appendChild(mark);
        }
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
    // When the page first showed everything, in ms since navigation started (bench/view.py).
    if (!document.body.dataset.firstDrawnMs && rows.adapters.length) document.body.dataset.firstDrawnMs = performance.now().toFixed(0);
  }

  function bar(used, total, text) {
    const box = el("div", "bar");
    const fill = el("div", "fill");
    const share = total ? Math.min(used / total, 1) : 0;
    fill.style.width = (share * 100).toFixed(1) + "%";
    if (share >= 1) fill.classList.add("full"); else if (share >= 0.8) fill.classList.add("high");
    box.append(fill, el("span", "label", text));
    return box;
  }
  function renderPods() {
    const pods = state.fleet.pods.filter((p) => inScope(p, "baseModels"));
    $("pods-count").textContent = `(${pods.length})`;
    pager("pods-pager", "cards", pods.length, PAGE.cards, renderPods);
    const box = $("pods-list");
    box.replaceChildren();
    for (const p of pods.slice(state.offset.cards, state.offset.cards + PAGE.cards)) {
      const card = el("div", "pod" + (p.ready && !p.unusable ? "" : " down"));
      card.dataset.pod = p.namespace + "/" + p.name;
      const title = el("div", "title");
      title.append(el("span", null, p.name), el("span", p.ready ? "ok" : "bad", p.ready ? "Ready" : "not Ready"));
      card.append(title, el("div", "muted", `${p.namespace} · ${p.baseModels.join(", ")} · max rank ${p.maxLoraRank} · ${p.activeSlots} active`));
      card.appendChild(bar(p.slotsUsed, p.slots, `slots ${p.slotsUsed} / ${p.slots}`));
      card.appendChild(p.memoryCapacity === null
        ? el("div", "muted", `memory ${bytes(p.memoryUsed)} placed, capacity unknown`)
        : bar(p.memoryUsed, p.memoryCapacity, `memory ${bytes(p.memoryUsed)} / ${bytes(p.memoryCapacity)}`));
      if (p.unusable) card.appendChild(el("div", "reason", "takes no adapter: " + p.unusable));
      else if (!p.observed && p.error) card.appendChild(el("div", "reason", p.error));
      box.appendChild(card);
    }
  }

  function renderActivity() {
    const events = state.fleet.events.filter((e) => !state.ns || e.namespace === state.ns);
    const eb = $("events-table").tBodies[0];
    eb.replaceChildren(...events.map((e) => row([time(e.at), el("span", e.type === "Warning" ? "bad" : "", e.type), e.reason, `${e.namespace}/${e.resource}`, e.note])));
    const actions = state.fleet.actions.filter((a) => !state.ns || a.namespace === state.ns);
    const ab = $("actions-table").tBodies[0];
    ab.replaceChildren(...actions.map((a) => row([time(a.at), a.pod, a.verb, a.adapter, el("span", a.ok ? "ok" : "bad", a.ok ? a.reason : `${a.reason}: ${a.message}`)])));
  }

  function renderAll() {
    const started = performance.now();
    renderFilters();
    renderResources();
    renderPods();
    renderActivity();
    renderMatrix();
    document.body.dataset.renderMs = (performance.now() - started).toFixed(1);
  }

  // -- polling ---------------------------------------------------------------------------------
  function rowsParams() {
    return { namespace: state.ns, baseModel: state.model, loraAdapter: state.resource, search: state.search, offset: state.offset.rows, limit: PAGE.rows };
  }
  async function refreshRows() {
    const got = await fetchJSON("v1/fleet/adapters", rowsParams(), state.rowsQuery === JSON.stringify(rowsParams()) ? state.rowsTag : null);
    state.rowsQuery = JSON.stringify(rowsParams());
    state.rowsTag = got.tag;
    if (got.body) { state.rows = got.body; renderMatrix(); }
  }
  async function refreshFleet() {
    const got = await fetchJSON("v1/fleet", {}, state.fleetTag);
    state.fleetTag = got.tag;
    if (got.body) { state.fleet = got.body; renderAll(); }
  }
  async function tick() {
    const status = $("state");
    try {
      await refreshFleet();
      await refreshRows();
      const f = state.fleet;
      status.textContent = `${f.synced ? "synced" : "syncing"} · ${f.leader ? "leader" : "standby"} · updated ${new Date().toLocaleTimeString()}`;
      status.className = "state";
      document.body.dataset.updated = String(Date.now());
    } catch (err) {
      status.textContent = "cannot read the controller: " + err.message;
      status.className = "state bad";
    } finally {
      window.setTimeout(tick, POLL_MS);
    }
  }
  function onFilter(key, input, event) {
    input.addEventListener(event, () => {
      state[key] = input.value;
      state.offset.rows = 0; state.offset.pods = 0; state.offset.cards = 0; state.offset.resources = 0;
      if (state.fleet) renderAll();
      refreshRows().catch(() => {});
    });
  }
  onFilter("ns", $("f-namespace"), "change");
  onFilter("model", $("f-model"), "change");
  onFilter("resource", $("f-resource"), "change");
  onFilter("search", $("f-search"), "input");
  tick();
})();
