// What the console says, in English and Chinese. What codes, run reasons and decisions
// mean comes from the gateway (GET /console/words), so the page says what the chats say.

export const WORDS = {
  en: {
    login_title: "Log in",
    login_help: "Paste a login token (tether users add NAME prints one), or open the link tether up printed.",
    token_label: "Login token",
    login_button: "Log in",
    logout: "Log out",
    lang: "中文",
    nav_label: "Views",
    nav_sessions: "Sessions",
    nav_runners: "Runners",
    nav_routines: "Routines",
    signed_in: "Signed in as {name} ({role})",
    connecting: "connecting…",
    live: "live",
    offline: "offline — reconnecting…",
    bad_token: "That token was refused: it is wrong or revoked.",
    failed: "The gateway did not answer: {why}",
    sessions_title: "Sessions",
    sessions_empty: "No sessions yet: start one here, from a chat, tether chat or tether runs start.",
    new_session: "New session",
    open_session: "Open session {id}",
    col_session: "Session",
    col_conversation: "Conversation",
    col_agent: "Agent",
    col_runner: "Runner",
    col_workspace: "Workspace",
    col_mode: "Mode",
    col_state: "State",
    col_updated: "Updated",
    back: "← Sessions",
    chat_label: "Message",
    chat_placeholder: "Say something, or / for commands",
    send: "Send",
    session_meta: "{agent} on {runner}/{workspace} · mode {mode}",
    timeline_empty: "Nothing here yet: what you send starts a run.",
    earlier_runs: "The latest {count} runs are shown; tether runs list --session shows the earlier ones.",
    you: "you",
    tether: "tether",
    run_queued: "queued",
    run_running: "running",
    run_waiting: "waiting",
    run_succeeded: "done",
    run_failed: "failed",
    run_cancelled: "stopped",
    run_expired: "expired",
    took: "{seconds} s",
    waiting_for: "waiting: {why}",
    stop_asked: "{who} asked to stop it",
    stop_hard: "it did not stop within {seconds} s and was stopped hard",
    steering: "{who} (while it ran)",
    steering_dropped: "not taken: {text} ({reason})",
    steering_requeued: "not read in time: it starts the next run",
    recovered: "picked up again (attempt {attempt})",
    call_on: "on {where}",
    output_lines: "output ({lines} lines)",
    result: "result",
    allowed_by: "allowed by {who}",
    denied_by: "denied by {who}",
    by_rule: "rule {rule}",
    by_mode: "mode",
    approval_title: "Approval needed",
    question_title: "Question",
    expires: "expires {at}",
    allow_once: "Allow once",
    allow_session: "Allow for session",
    deny: "Deny",
    answer: "Answer",
    answer_label: "Your answer",
    not_yours: "Only {who} (or an owner) may decide this.",
    decided: "{what} by {who} at {at}",
    not_decided: "Not decided: {why}",
    unseen: "nobody who may decide it is connected; it expires unless one comes",
    stopped_run: "Stop the run",
    runners_title: "Runners",
    runners_empty: "No runners yet.",
    col_name: "Name",
    col_status: "Status",
    col_version: "Version",
    col_sandbox: "Sandbox",
    col_workspaces: "Workspaces",
    col_tools: "Tools",
    col_agents: "Hosted agents",
    col_load: "Load",
    col_seen: "Last seen",
    online: "online",
    offline_runner: "offline",
    revoked: "revoked",
    pending: "not enrolled yet",
    add_runner: "Add a runner",
    runner_name: "Name",
    add: "Add",
    enrol_help: "Run this on the runner's machine within {minutes} minutes (it works once):",
    copy: "Copy",
    copied: "Copied",
    copy_failed: "Select the command and copy it",
    revoke: "Revoke",
    confirm_revoke: "Revoke {name}?",
    confirm: "Yes, revoke",
    cancel: "Cancel",
    routines_title: "Routines",
    routines_empty: "No routines yet: tether routines add NAME --cron … adds one.",
    col_schedule: "Schedule",
    col_next: "Next",
    col_input: "Input",
    pause: "Pause",
    resume: "Resume",
    paused: "paused",
    active: "active",
    not_found: "There is no such session here, or it is not yours.",
    error: "It did not work: {why}",
  },
  zh: {
    login_title: "登录",
    login_help: "粘贴登录令牌（tether users add NAME 会打印一个），或打开 tether up 打印的链接。",
    token_label: "登录令牌",
    login_button: "登录",
    logout: "退出登录",
    lang: "English",
    nav_label: "视图",
    nav_sessions: "会话",
    nav_runners: "运行器",
    nav_routines: "例行任务",
    signed_in: "已登录：{name}（{role}）",
    connecting: "连接中…",
    live: "已连接",
    offline: "已断开 — 正在重连…",
    bad_token: "令牌被拒绝：错误或已吊销。",
    failed: "网关没有应答：{why}",
    sessions_title: "会话",
    sessions_empty: "还没有会话：可在这里、聊天、tether chat 或 tether runs start 开始。",
    new_session: "新会话",
    open_session: "打开会话 {id}",
    col_session: "会话",
    col_conversation: "对话",
    col_agent: "智能体",
    col_runner: "运行器",
    col_workspace: "工作区",
    col_mode: "模式",
    col_state: "状态",
    col_updated: "更新于",
    back: "← 会话",
    chat_label: "消息",
    chat_placeholder: "说点什么，或输入 / 使用命令",
    send: "发送",
    session_meta: "{agent}，在 {runner}/{workspace} · 模式 {mode}",
    timeline_empty: "这里还没有内容：你发送的消息会开始一次运行。",
    earlier_runs: "只显示最近 {count} 次运行；更早的可用 tether runs list --session 查看。",
    you: "你",
    tether: "tether",
    run_queued: "排队中",
    run_running: "运行中",
    run_waiting: "等待中",
    run_succeeded: "完成",
    run_failed: "失败",
    run_cancelled: "已停止",
    run_expired: "已过期",
    took: "{seconds} 秒",
    waiting_for: "等待：{why}",
    stop_asked: "{who} 要求停止",
    stop_hard: "{seconds} 秒内没有停止，已强制停止",
    steering: "{who}（运行中）",
    steering_dropped: "未被接收：{text}（{reason}）",
    steering_requeued: "未及时读取：它将开始下一次运行",
    recovered: "已重新接手（第 {attempt} 次）",
    call_on: "在 {where}",
    output_lines: "输出（{lines} 行）",
    result: "结果",
    allowed_by: "{who} 已批准",
    denied_by: "{who} 已拒绝",
    by_rule: "规则 {rule}",
    by_mode: "模式",
    approval_title: "需要批准",
    question_title: "问题",
    expires: "{at} 过期",
    allow_once: "批准一次",
    allow_session: "本会话内批准",
    deny: "拒绝",
    answer: "回答",
    answer_label: "你的回答",
    not_yours: "只有 {who}（或所有者）可以处理。",
    decided: "{who} 于 {at} {what}",
    not_decided: "未处理：{why}",
    unseen: "没有可处理它的人在线；无人处理将会过期",
    stopped_run: "停止运行",
    runners_title: "运行器",
    runners_empty: "还没有运行器。",
    col_name: "名称",
    col_status: "状态",
    col_version: "版本",
    col_sandbox: "沙箱",
    col_workspaces: "工作区",
    col_tools: "工具",
    col_agents: "托管的智能体",
    col_load: "负载",
    col_seen: "最后在线",
    online: "在线",
    offline_runner: "离线",
    revoked: "已吊销",
    pending: "尚未注册",
    add_runner: "添加运行器",
    runner_name: "名称",
    add: "添加",
    enrol_help: "请在 {minutes} 分钟内于运行器所在机器上运行（仅可使用一次）：",
    copy: "复制",
    copied: "已复制",
    copy_failed: "请选中命令后复制",
    revoke: "吊销",
    confirm_revoke: "吊销 {name}？",
    confirm: "确认吊销",
    cancel: "取消",
    routines_title: "例行任务",
    routines_empty: "还没有例行任务：tether routines add 名称 --cron … 可添加。",
    col_schedule: "计划",
    col_next: "下次",
    col_input: "输入",
    pause: "暂停",
    resume: "恢复",
    paused: "已暂停",
    active: "启用",
    not_found: "这里没有这个会话，或它不属于你。",
    error: "没有成功：{why}",
  },
};

const gateway = { explained: {}, decisions: {}, commands: [] };
let lang = pickLang();

function pickLang() {
  const saved = localStorage.getItem("tether.lang");
  if (saved && saved in WORDS) return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function currentLang() {
  return lang;
}

export function switchLang() {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("tether.lang", lang);
}

export function t(key, vars = {}) {
  const text = WORDS[lang][key] ?? WORDS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** What the gateway says a code or reason means, filled with its detail. */
export function explain(code, message = "") {
  const phrase = gateway.explained[code];
  if (!phrase) return message ? `${code}: ${message}` : code;
  return phrase[lang].replace("{message}", (message || "").trim() || code);
}

export function decisionWords(decision) {
  return gateway.decisions[decision]?.[lang] ?? decision;
}

export function commands() {
  return gateway.commands;
}

export async function loadGatewayWords() {
  const response = await fetch("/console/words", { credentials: "same-origin" });
  if (response.ok) Object.assign(gateway, await response.json());
}

export function when(seconds, style = "short") {
  const locale = lang === "zh" ? "zh-CN" : "en";
  const date = new Date(seconds * 1000);
  if (style === "time") return date.toLocaleTimeString(locale, { timeStyle: "medium" });
  return date.toLocaleString(locale, { dateStyle: "short", timeStyle: "short" });
}
