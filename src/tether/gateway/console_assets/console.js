// The tether web console. Served by the gateway with a strict Content-Security-Policy:
// these modules are the only script, and they write text, never HTML, except Markdown
// the gateway has already sanitized (markdown.js).

import { Link, why } from "./link.js";
import { Markdown } from "./markdown.js";
import { Timeline } from "./timeline.js";
import { commands, currentLang, loadGatewayWords, switchLang, t, when } from "./words.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["sessions", "chat", "runners", "routines"];
const POLL_MS = 3000;
const HISTORY_RUNS = 20; // a session opens with its latest runs

const state = {
  session: null, // who is logged in: {principal, name, role, csrf}
  view: null, // the view shown: {name, ...}
  names: {},
  runnerNames: {}, // runner id -> name
  poll: null,
  lists: {},
  linkState: "",
};

// ---- the gateway over HTTP -----------------------------------------------------------

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.session) headers["X-CSRF-Token"] = state.session.csrf;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, data };
}

const markdown = new Markdown(async (texts) => {
  const { status, data } = await api("POST", "/console/markdown", { texts });
  if (status !== 200) throw new Error(data?.error?.message ?? String(status));
  return data.html;
});

const link = new Link({
  role: () => helloRole(), // an owner adds and revokes runners
  onState: (key) => showLink(key),
  onNotify: (method, params) => notified(method, params),
  onOpen: () => opened(),
  checkSession: async () => {
    const { status, data } = await api("GET", "/console/session").catch(() => ({ status: 0 }));
    if (status === 200) {
      state.session = data;
      return true;
    }
    if (status === 401) {
      signedOut();
      return false;
    }
    return true;
  },
});

function eventId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

// ---- words on the page ---------------------------------------------------------------

function paint() {
  document.documentElement.lang = currentLang() === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  for (const node of document.querySelectorAll("[data-t-label]")) {
    node.setAttribute("aria-label", t(node.dataset.tLabel));
  }
  $("lang").textContent = t("lang");
  $("logout").textContent = t("logout");
  $("chat-input").placeholder = t("chat_placeholder");
  if (state.session) {
    const s = state.session;
    $("whoami").textContent = t("signed_in", { name: s.name, role: s.role });
  } else {
    $("whoami").textContent = "";
  }
  showLink(state.linkState);
  $("commands").replaceChildren(...commands().map((name) => {
    const option = document.createElement("option");
    option.value = `/${name}`;
    return option;
  }));
  if (state.lists.sessions) showSessions(state.lists.sessions);
  if (state.lists.runners) showRunners(state.lists.runners);
  if (state.lists.routines) showRoutines(state.lists.routines);
}

function showLink(key) {
  state.linkState = key;
  $("link").textContent = key ? t(key) : "";
}

function cell(row, text, className) {
  const td = document.createElement("td");
  if (text instanceof Node) td.append(text);
  else td.textContent = text === null || text === undefined || text === "" ? "—" : String(text);
  if (className) td.className = className;
  row.append(td);
  return td;
}

function button(text, onClick, className = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (className) b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

function helloRole() {
  const role = state.session?.role ?? localStorage.getItem("tether.signedIn");
  return role === "owner" ? "admin" : "client";
}

function isOwner() {
  return state.session?.role === "owner";
}

// ---- logging in and out ---------------------------------------------------------------

function signedIn(session) {
  state.session = session;
  localStorage.setItem("tether.signedIn", session.role);
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  for (const node of document.querySelectorAll(".owner-only")) node.hidden = !isOwner();
  paint();
  if (link.ws && link.helloRole !== helloRole()) link.stop(); // opened early, as another role
  link.start();
  route();
}

function signedOut() {
  state.session = null;
  localStorage.removeItem("tether.signedIn");
  state.lists = {};
  link.stop();
  leaveView();
  for (const name of VIEWS) $(name).hidden = true;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  showLink("");
  paint();
  $("token").focus();
}

async function login(token) {
  $("login-error").textContent = "";
  try {
    const { status, data } = await api("POST", "/console/login", { token });
    if (status === 200) return signedIn(data);
    signedOut();
    $("login-error").textContent =
      status === 401 ? t("bad_token") : t("failed", { why: data?.error?.message ?? status });
  } catch (err) {
    signedOut();
    $("login-error").textContent = t("failed", { why: String(err) });
  }
}

// ---- views ----------------------------------------------------------------------------

function route() {
  if (!state.session) return;
  const hash = location.hash || "#/sessions";
  const match = hash.match(/^#\/s\/([\w-]+)$/);
  if (match) return show("chat", { sessionId: match[1] });
  const name = hash.slice(2);
  show(VIEWS.includes(name) && name !== "chat" ? name : "sessions");
}

function leaveView() {
  clearInterval(state.poll);
  state.poll = null;
  const view = state.view;
  state.view = null;
  if (view?.subscription) link.call("run.unsubscribe", { subscription: view.subscription }).catch(() => null);
}

function show(name, params = {}) {
  leaveView();
  for (const other of VIEWS) $(other).hidden = other !== name;
  for (const a of $("nav").querySelectorAll("a")) {
    const current = a.id === `nav-${name === "chat" ? "sessions" : name}`;
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  state.view = { name, ...params };
  if (name === "chat") openChat(state.view);
  if (link.ready) refresh();
  if (name !== "chat") state.poll = setInterval(refresh, POLL_MS);
}

function opened() {
  // (re)connected: the shown view catches up, a session from where it was shown
  if (state.view?.name === "chat") state.view.subscription = null;
  refresh();
}

function refresh() {
  const view = state.view;
  if (!view || !link.ready) return;
  if (view.name === "sessions") loadSessions();
  if (view.name === "runners") loadRunners();
  if (view.name === "routines") loadRoutines();
  if (view.name === "chat" && !view.subscription && !view.subscribing) subscribe(view);
}

// ---- sessions -------------------------------------------------------------------------

async function loadSessions() {
  try {
    const { sessions } = await link.call("session.list", { limit: 50 });
    if (sessions.some((s) => s.runner_id && !(s.runner_id in state.runnerNames))) {
      await knowRunners();
    }
    showSessions(sessions);
    $("sessions-error").textContent = "";
  } catch (err) {
    $("sessions-error").textContent = t("error", { why: why(err) });
  }
}

function showSessions(sessions) {
  state.lists.sessions = sessions;
  $("sessions-empty").hidden = sessions.length > 0;
  $("sessions-table").hidden = sessions.length === 0;
  $("new-session").hidden = state.session?.role === "viewer";
  $("sessions-rows").replaceChildren(...sessions.map((s) => {
    const row = document.createElement("tr");
    row.dataset.session = s.id;
    const a = document.createElement("a");
    a.href = `#/s/${s.id}`;
    a.textContent = s.id;
    a.setAttribute("aria-label", t("open_session", { id: s.id }));
    cell(row, a, "id");
    cell(row, s.conversation_id);
    cell(row, s.agent);
    cell(row, s.runner_id ? runnerName(s.runner_id) : null);
    cell(row, s.workspace);
    cell(row, s.mode);
    cell(row, s.status);
    cell(row, when(s.updated_at));
    return row;
  }));
}

async function newSession() {
  try {
    const sent = await link.call("chat.send", {
      text: "/new", event_id: eventId(), channel: "web", lang: currentLang(),
    });
    if (sent.session_id) location.hash = `#/s/${sent.session_id}`;
  } catch (err) {
    $("sessions-error").textContent = t("error", { why: why(err) });
  }
}

// ---- a session: chat and timeline ----------------------------------------------------

function openChat(view) {
  $("chat-title").textContent = view.sessionId;
  $("chat-meta").textContent = "";
  $("chat-missing").hidden = true;
  $("chat-notes").replaceChildren();
  $("timeline").replaceChildren();
  $("timeline-empty").hidden = true;
  $("chat-form").hidden = state.session.role === "viewer";
  view.timeline = new Timeline($("timeline"), {
    me: { principal: state.session.principal, role: state.session.role },
    names: state.names,
    markdown,
    resolve: (request, params) => link.call("request.resolve", { request, ...params }),
  });
}

async function subscribe(view) {
  view.subscribing = true;
  try {
    // one round trip for the session, its latest runs with their events, and the names
    // its timeline shows; the subscription then starts where these end
    const needNames = isOwner() && Object.keys(state.names).length === 0;
    const [got, , listed] = await Promise.all([
      view.loaded
        ? link.call("session.get", { session_id: view.sessionId })
        : link.call("session.history", { session_id: view.sessionId, runs: HISTORY_RUNS }),
      knowRunners(),
      needNames ? link.call("user.list", {}).catch(() => ({ users: [] })) : { users: [] },
    ]);
    for (const u of listed.users) state.names[u.id] = u.name;
    if (state.view !== view) return;
    const session = view.loaded ? got : got.session;
    view.timeline.agent = session.agent;
    $("chat-meta").textContent = t("session_meta", {
      agent: session.agent, runner: runnerName(session.runner_id),
      workspace: session.workspace ?? "—", mode: session.mode ?? "ask",
    });
    if (!view.loaded) {
      // the replies' Markdown is asked for now, while the timeline is being built
      markdown.warm(got.runs.flatMap((r) => r.events)
        .filter((e) => e.kind === "agent.message" && typeof e.payload?.text === "string")
        .map((e) => e.payload.text));
      await readRest(got.runs);
      if (state.view !== view) return;
      showHistory(view, got);
    }
    const sub = await link.call("run.subscribe", {
      session_id: view.sessionId, after: view.timeline.cursor(),
      since_run: view.timeline.firstRun(),
    });
    if (state.view !== view) {
      link.call("run.unsubscribe", { subscription: sub.subscription }).catch(() => null);
      return;
    }
    view.subscription = sub.subscription;
  } catch (err) {
    if (err?.data?.code === "not_found") $("chat-missing").hidden = false;
    else if (err?.data?.code !== "connection_closed") note(t("error", { why: why(err) }), "error");
  } finally {
    view.subscribing = false;
  }
}

/** The events the history's size budget left out, read in pages. */
async function readRest(runs) {
  await Promise.all(runs.filter((r) => !r.complete).map(async (r) => {
    const last = r.events.length ? r.events[r.events.length - 1].seq : 0;
    r.events.push(...(await eventsOf(r.run.id, last)));
  }));
}

function showHistory(view, { runs, earlier }) {
  if (earlier) note(t("earlier_runs", { count: runs.length }));
  for (const r of runs) for (const event of r.events) view.timeline.add(event);
  view.loaded = true;
  $("timeline-empty").hidden = view.timeline.order.length > 0;
  window.scrollTo({ top: document.body.scrollHeight });
}

async function eventsOf(runId, after = 0) {
  const events = [];
  for (;;) {
    const page = await link.call("run.events", { run_id: runId, after_seq: after, limit: 500 });
    events.push(...page.events);
    if (!page.more || !page.events.length) return events;
    after = page.last_seq;
  }
}

function notified(method, params) {
  const view = state.view;
  // (the reply to run.subscribe comes before its backlog, so its id is known by then)
  if (view?.name !== "chat" || !view.subscription || params?.subscription !== view.subscription) {
    return;
  }
  if (method === "run.event") {
    // events are shown in batches, one layout per frame however fast they come
    if (!view.pending) {
      view.pending = [];
      view.stick = nearBottom();
      requestAnimationFrame(() => showPending(view));
    }
    view.pending.push(params.event);
  } else if (method === "run.resync" && params.subscription === view.subscription) {
    view.subscription = null;
    refresh();
  }
}

function showPending(view) {
  const events = view.pending;
  view.pending = null;
  if (state.view !== view) return;
  let added = false;
  for (const event of events) added = view.timeline.add(event) || added;
  if (added) $("timeline-empty").hidden = true;
  if (view.stick) window.scrollTo({ top: document.body.scrollHeight });
}

function nearBottom() {
  return window.innerHeight + window.scrollY >= document.body.scrollHeight - 120;
}

function note(text, className = "") {
  const li = document.createElement("li");
  li.textContent = text;
  if (className) li.className = className;
  $("chat-notes").append(li);
  while ($("chat-notes").children.length > 5) $("chat-notes").firstChild.remove();
}

async function send(text) {
  const view = state.view;
  const input = $("chat-input");
  $("chat-send").disabled = true;
  try {
    const sent = await link.call("chat.send", {
      text, event_id: eventId(), session_id: view.sessionId, channel: "web", lang: currentLang(),
    });
    input.value = "";
    for (const reply of sent.replies ?? []) note(reply);
    if (sent.session_id && sent.session_id !== view.sessionId) {
      location.hash = `#/s/${sent.session_id}`; // /new: the conversation moved on
    }
  } catch (err) {
    note(t("error", { why: why(err) }), "error"); // what was typed stays in the box
  } finally {
    $("chat-send").disabled = false;
    input.focus();
  }
}

async function knowRunners() {
  for (const r of (await link.call("runner.list", {})).runners) state.runnerNames[r.id] = r.name;
}

function runnerName(id) {
  return id ? state.runnerNames[id] ?? id : "—";
}

// ---- runners --------------------------------------------------------------------------

async function loadRunners() {
  try {
    showRunners((await link.call("runner.list", {})).runners);
    $("runners-error").textContent = "";
  } catch (err) {
    $("runners-error").textContent = t("error", { why: why(err) });
  }
}

function runnerStatus(r) {
  if (r.status === "revoked") return t("revoked");
  if (r.status === "pending") return t("pending");
  return r.online ? t("online") : t("offline_runner");
}

function showRunners(runners) {
  state.lists.runners = runners;
  for (const r of runners) state.runnerNames[r.id] = r.name;
  $("runners-empty").hidden = runners.length > 0;
  $("runners-table").hidden = runners.length === 0;
  $("runners-rows").replaceChildren(...runners.map((r) => {
    const row = document.createElement("tr");
    row.dataset.runner = r.name;
    row.dataset.online = r.online ? "1" : "0";
    cell(row, r.name, "id");
    const status = cell(row, runnerStatus(r), `status ${r.online ? "ok" : "off"}`);
    status.dataset.status = r.status;
    cell(row, r.version);
    cell(row, r.sandbox);
    cell(row, r.workspaces.join(", "));
    cell(row, r.tools.length ? `${r.tools.length}` : "—").title = r.tools.join(", ");
    cell(row, r.agents.join(", "));
    cell(row, `${r.inflight}/${r.max_concurrency}`);
    cell(row, r.last_seen_at ? when(r.last_seen_at) : null);
    if (isOwner()) {
      const td = cell(row, "");
      td.textContent = "";
      if (r.status !== "revoked") td.append(revokeButton(r.name, td));
    }
    return row;
  }));
}

function revokeButton(name, td) {
  return button(t("revoke"), () => {
    clearInterval(state.poll); // the question stays while it is asked
    const ask = document.createElement("span");
    ask.className = "confirm";
    ask.append(
      document.createTextNode(`${t("confirm_revoke", { name })} `),
      button(t("confirm"), async () => {
        try {
          await link.call("runner.revoke", { name });
        } catch (err) {
          $("runners-error").textContent = t("error", { why: why(err) });
        }
        show("runners");
      }, "danger"),
      button(t("cancel"), () => show("runners"), "quiet"),
    );
    td.replaceChildren(ask);
    ask.querySelector("button").focus();
  }, "danger");
}

async function addRunner(name) {
  try {
    const added = await link.call("runner.add", { name });
    $("enrol").hidden = false;
    $("enrol-help").textContent = t("enrol_help", {
      minutes: Math.max(1, Math.round((added.expires_at - Date.now() / 1000) / 60)),
    });
    $("enrol-command").textContent = added.command;
    $("enrol-copied").textContent = "";
    $("runner-name").value = "";
    loadRunners();
  } catch (err) {
    $("runners-error").textContent = t("error", { why: why(err) });
  }
}

async function copyCommand() {
  const text = $("enrol-command").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("enrol-copied").textContent = t("copied");
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("enrol-command"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    $("enrol-copied").textContent = t("copy_failed");
  }
}

// ---- routines -------------------------------------------------------------------------

async function loadRoutines() {
  try {
    showRoutines((await link.call("routine.list", {})).routines);
    $("routines-error").textContent = "";
  } catch (err) {
    $("routines-error").textContent = t("error", { why: why(err) });
  }
}

function showRoutines(routines) {
  state.lists.routines = routines;
  $("routines-empty").hidden = routines.length > 0;
  $("routines-table").hidden = routines.length === 0;
  $("routines-rows").replaceChildren(...routines.map((r) => {
    const row = document.createElement("tr");
    row.dataset.routine = r.name;
    cell(row, r.name, "id");
    cell(row, `${r.cron} (${r.tz})`);
    const a = document.createElement("a");
    a.href = `#/s/${r.session_id}`;
    a.textContent = r.session_id;
    cell(row, a, "id");
    cell(row, r.input, "wrap");
    cell(row, t(r.state === "paused" ? "paused" : "active"));
    cell(row, r.state === "paused" || !r.next_fire_at ? null : when(r.next_fire_at));
    const td = cell(row, "");
    td.textContent = "";
    if (state.session.role !== "viewer") {
      const pausing = r.state !== "paused";
      td.append(button(t(pausing ? "pause" : "resume"), async () => {
        try {
          await link.call(pausing ? "routine.pause" : "routine.resume", { routine: r.name });
        } catch (err) {
          $("routines-error").textContent = t("error", { why: why(err) });
        }
        loadRoutines();
      }, "quiet"));
    }
    return row;
  }));
}

// ---- start ----------------------------------------------------------------------------

async function start() {
  // a one-time link carries the token in the fragment, which never reaches a server or a
  // log; it is taken out of the address bar (and the history) before anything else
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (token) history.replaceState(null, "", location.pathname + location.search);
  // the words and who is logged in, at once (a one-time link logs in instead)
  const words = loadGatewayWords().catch(() => null);
  const asked = token ? null : api("GET", "/console/session").catch(() => ({ status: 0 }));
  // a browser that was logged in here last time opens the WebSocket at once, beside the
  // session check (it goes if the check says no); else only once logged in
  if (!token && localStorage.getItem("tether.signedIn")) link.start();
  await words;
  paint();
  $("lang").addEventListener("click", () => {
    switchLang();
    paint();
    if (state.view?.name === "chat") {
      // a timeline is words too: build it again in the other language
      show("chat", { sessionId: state.view.sessionId });
    }
  });
  $("logout").addEventListener("click", async () => {
    await api("POST", "/console/logout", {}).catch(() => null);
    signedOut();
  });
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token) login(token);
  });
  $("new-session").addEventListener("click", newSession);
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("chat-input").value.trim();
    if (text) send(text);
  });
  $("runner-add").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("runner-name").value.trim();
    if (name) addRunner(name);
  });
  $("enrol-copy").addEventListener("click", copyCommand);
  window.addEventListener("hashchange", route);
  if (token) return login(token);
  const { status, data } = await asked;
  if (status === 200) signedIn(data);
  else signedOut();
}

start();
