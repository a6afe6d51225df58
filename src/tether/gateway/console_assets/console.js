// The tether web console. Served by the gateway with a strict Content-Security-Policy:
// this file is the only script, and it writes text, never HTML, except Markdown the
// gateway has already sanitized.

const WORDS = {
  en: {
    login_title: "Log in",
    login_help: "Paste a login token (tether users add NAME prints one), or open the link tether up printed.",
    token_label: "Login token",
    login_button: "Log in",
    logout: "Log out",
    lang: "中文",
    signed_in: "Signed in as {name} ({role})",
    welcome: "Welcome, {name}",
    connecting: "connecting…",
    live: "live",
    offline: "offline — reconnecting…",
    bad_token: "That token was refused: it is wrong or revoked.",
    failed: "The gateway did not answer: {why}",
    sessions_title: "Sessions",
    sessions_empty: "No sessions yet: start one from a chat, tether chat or tether runs start.",
    col_session: "Session",
    col_agent: "Agent",
    col_runner: "Runner",
    col_workspace: "Workspace",
    col_mode: "Mode",
    col_state: "State",
    col_updated: "Updated",
  },
  zh: {
    login_title: "登录",
    login_help: "粘贴登录令牌（tether users add NAME 会打印一个），或打开 tether up 打印的链接。",
    token_label: "登录令牌",
    login_button: "登录",
    logout: "退出登录",
    lang: "English",
    signed_in: "已登录：{name}（{role}）",
    welcome: "欢迎，{name}",
    connecting: "连接中…",
    live: "已连接",
    offline: "已断开 — 正在重连…",
    bad_token: "令牌被拒绝：错误或已吊销。",
    failed: "网关没有应答：{why}",
    sessions_title: "会话",
    sessions_empty: "还没有会话：可从聊天、tether chat 或 tether runs start 开始。",
    col_session: "会话",
    col_agent: "智能体",
    col_runner: "运行器",
    col_workspace: "工作区",
    col_mode: "模式",
    col_state: "状态",
    col_updated: "更新于",
  },
};

const state = {
  lang: pickLang(), session: null, ws: null, retry: 0, nextId: 1,
  calls: new Map(), sessions: null,
};
const $ = (id) => document.getElementById(id);

function pickLang() {
  const saved = localStorage.getItem("tether.lang");
  if (saved && saved in WORDS) return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

function t(key, vars = {}) {
  const text = WORDS[state.lang][key] ?? WORDS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

function paint() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  $("lang").textContent = t("lang");
  $("logout").textContent = t("logout");
  if (state.session) {
    const s = state.session;
    $("home-title").textContent = t("welcome", { name: s.name });
    $("whoami").textContent = t("signed_in", { name: s.name, role: s.role });
  }
  showLink(state.linkState || "");
  if (state.sessions) showSessions(state.sessions);
}

function showLink(key) {
  state.linkState = key;
  $("link").textContent = key ? t(key) : "";
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.session) headers["X-CSRF-Token"] = state.session.csrf;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, data };
}

function signedIn(session) {
  state.session = session;
  $("login").hidden = true;
  $("home").hidden = false;
  $("logout").hidden = false;
  paint();
  connect();
}

function signedOut() {
  state.session = null;
  state.sessions = null;
  $("sessions").hidden = true;
  if (state.ws) state.ws.close();
  state.ws = null;
  $("home").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  showLink("");
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

function connect() {
  if (!state.session || state.ws) return;
  showLink("connecting");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  state.ws = ws;
  ws.addEventListener("open", async () => {
    try {
      await call(ws, "hello", { protocol: [1], role: "client" });
      state.retry = 0;
      showLink("live");
      showSessions((await call(ws, "session.list", { limit: 50 })).sessions);
    } catch (err) {
      console.warn("the gateway refused", err);
      ws.close();
    }
  });
  ws.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    const waiting = frame.id !== undefined ? state.calls.get(frame.id) : undefined;
    if (waiting) {
      state.calls.delete(frame.id);
      if (frame.error) waiting.reject(frame.error);
      else waiting.resolve(frame.result);
    }
  });
  ws.addEventListener("close", () => {
    for (const [id, waiting] of state.calls) {
      if (waiting.ws === ws) {
        state.calls.delete(id);
        waiting.reject(new Error("the connection closed"));
      }
    }
    if (state.ws !== ws) return;
    state.ws = null;
    if (!state.session) return;
    showLink("offline");
    const delay = Math.min(10000, 500 * 2 ** state.retry++);
    setTimeout(async () => {
      const { status, data } = await api("GET", "/console/session").catch(() => ({ status: 0 }));
      if (status === 200) {
        state.session = data;
        connect();
      } else if (status === 401) {
        signedOut();
      } else {
        connect();
      }
    }, delay);
  });
}

function call(ws, method, params) {
  const id = state.nextId++;
  return new Promise((resolve, reject) => {
    state.calls.set(id, { ws, resolve, reject });
    ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
  });
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "—";
  if (className) td.className = className;
  row.append(td);
}

function when(seconds) {
  const locale = state.lang === "zh" ? "zh-CN" : "en";
  return new Date(seconds * 1000).toLocaleString(locale, {
    dateStyle: "short", timeStyle: "short",
  });
}

function showSessions(sessions) {
  state.sessions = sessions;
  $("sessions").hidden = false;
  $("sessions-empty").hidden = sessions.length > 0;
  $("sessions-table").hidden = sessions.length === 0;
  const rows = sessions.map((s) => {
    const row = document.createElement("tr");
    row.dataset.session = s.id;
    cell(row, s.id, "id");
    cell(row, s.agent);
    cell(row, s.runner_id);
    cell(row, s.workspace);
    cell(row, s.mode);
    cell(row, s.status);
    cell(row, when(s.updated_at));
    return row;
  });
  $("sessions-rows").replaceChildren(...rows);
}

async function start() {
  paint();
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("tether.lang", state.lang);
    paint();
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
  // a one-time link carries the token in the fragment, which never reaches a server or a
  // log; it is taken out of the address bar (and the history) before anything else
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token) {
    history.replaceState(null, "", location.pathname + location.search);
    return login(token);
  }
  const { status, data } = await api("GET", "/console/session").catch(() => ({ status: 0 }));
  if (status === 200) signedIn(data);
  else signedOut();
}

start();
