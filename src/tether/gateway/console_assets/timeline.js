// A session's runs as a timeline, built from its events (run.subscribe) as they come:
// what was said, tool calls with their arguments, decisions, output and duration,
// requests as cards, replies as Markdown the gateway sanitized. Everything else is text.

import { decisionWords, explain, t, when } from "./words.js";

const FOLD_LINES = 20;
const TERMINAL = new Set(["run.succeeded", "run.failed", "run.cancelled", "run.expired"]);
const STATE_OF = {
  "run.queued": "queued", "run.started": "running", "run.recovered": "running",
  "run.running": "running", "run.waiting": "waiting", "run.succeeded": "succeeded",
  "run.failed": "failed", "run.cancelled": "cancelled", "run.expired": "expired",
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

// Characters that reorder or hide text (bidi controls, zero-width marks, C0/C1 controls
// but tab and newline): shown as ⟨U+XXXX⟩ wherever a person reads what would run, so a
// hostile agent cannot make a command look like another. Terminal escapes in output
// are dropped.
const HIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;
const ESCAPES = /\u001b(?:\[[0-?]*[ -/]*[@-~]|\][^\u0007\u001b]*(?:\u0007|\u001b\\)|[@-Z\\-_])/g;

export function visible(text) {
  return String(text).replace(HIDDEN, (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}⟩`);
}

function readable(text) {
  return visible(String(text).replace(ESCAPES, "").replace(/\r\n?/g, "\n"));
}

function seconds(value) {
  return value < 10 ? value.toFixed(1) : Math.round(value).toString();
}

export class Timeline {
  /**
   * root: the element to fill; me: {principal, role}; names: id -> name;
   * resolve(request, params) -> Promise; markdown: a Markdown renderer.
   */
  constructor(root, { me, names, resolve, markdown, agent }) {
    this.root = root;
    this.agent = agent;
    this.me = me;
    this.names = names;
    this.resolve = resolve;
    this.markdown = markdown;
    this.runs = new Map();
    this.seen = new Map(); // run id -> the last seq shown
    this.order = [];
  }

  /** The last seq shown per run: where a resumed subscription starts. */
  cursor() {
    return Object.fromEntries(this.seen);
  }

  firstRun() {
    return this.order[0] ?? null;
  }

  who(id) {
    if (id === null || id === undefined) return t("tether");
    if (id === this.me.principal) return t("you");
    if (id.startsWith("role:")) return id.slice(5);
    return this.names[id] ?? id;
  }

  mayDecide(approvers) {
    if (this.me.role === "owner") return true;
    if (this.me.role === "viewer") return false;
    return approvers.includes(this.me.principal) || approvers.includes(`role:${this.me.role}`);
  }

  /** Show one event; an event already shown (same run, seq not after the last) is skipped. */
  add(event) {
    const last = this.seen.get(event.run_id) ?? 0;
    if (event.seq <= last) return false;
    this.seen.set(event.run_id, event.seq);
    const run = this.run(event.run_id);
    const p = event.payload ?? {};
    const handler = HANDLERS[event.kind];
    if (STATE_OF[event.kind]) this.setState(run, STATE_OF[event.kind], event);
    if (handler) handler.call(this, run, p, event);
    return true;
  }

  run(runId) {
    let run = this.runs.get(runId);
    if (run) return run;
    const article = el("article", "run");
    article.dataset.run = runId;
    const head = el("header", "run-head");
    const id = el("span", "run-id", runId);
    const state = el("span", "run-state");
    const took = el("span", "run-took");
    head.append(id, state, took);
    const items = el("ol", "items");
    article.append(head, items);
    run = { runId, article, state, took, items, calls: new Map(), cards: new Map(),
            streaming: null, startedAt: null };
    this.runs.set(runId, run);
    this.order.push(runId);
    this.root.append(article);
    return run;
  }

  setState(run, state, event) {
    run.state.dataset.state = state;
    run.state.textContent = t(`run_${state}`);
    run.article.dataset.state = state;
    if (event.kind === "run.started" && run.startedAt === null) run.startedAt = event.created_at;
    if (TERMINAL.has(event.kind) && run.startedAt !== null) {
      run.took.textContent = t("took", { seconds: seconds(event.created_at - run.startedAt) });
    }
  }

  item(run, className, text) {
    const li = el("li", className, text);
    run.items.append(li);
    return li;
  }

  note(run, text, className = "note") {
    return this.item(run, className, text);
  }

  said(run, who, text, className) {
    const li = this.item(run, `msg ${className}`);
    if (who) li.append(el("span", "who", who));
    li.append(el("p", "text", text));
    return li;
  }

  reply(run, text, final) {
    let li = run.streaming;
    if (!li) {
      li = this.item(run, "msg agent");
      li.append(el("span", "who", this.agent || "agent"), el("div", "text"));
      run.streaming = li;
    }
    const body = li.lastChild;
    if (final) {
      body.textContent = text;
      li.dataset.final = "1";
      run.streaming = null;
      this.markdown.into(body, text);
    } else {
      body.append(text);
    }
  }

  call(run, p, event) {
    const li = this.item(run, "call");
    li.dataset.call = p.call_id;
    li.dataset.state = "running";
    const head = el("div", "call-head");
    const mark = el("span", "mark", "…");
    mark.setAttribute("aria-hidden", "true");
    head.append(mark, el("code", "tool", p.tool),
      el("span", "where", t("call_on", { where: `${p.runner}/${p.workspace}` })),
      el("span", "took"));
    const args = el("pre", "args", visible(JSON.stringify(p.args ?? {}, null, 2)));
    const decision = el("p", "decision");
    decision.hidden = true;
    const card = el("div", "card-slot");
    const output = el("details", "output");
    output.open = true;
    output.hidden = true;
    const summary = el("summary");
    const pre = el("pre");
    output.append(summary, pre);
    const error = el("p", "error");
    error.hidden = true;
    li.append(head, args, card, decision, output, error);
    const call = { li, mark, took: head.lastChild, decision, card, output, summary, pre,
                   error, lines: 0, folded: false, at: event.created_at, userToggled: false };
    output.addEventListener("toggle", () => {
      if (call.folding) call.folding = false;
      else call.userToggled = true;
    });
    run.calls.set(p.call_id, call);
    return call;
  }

  callOf(run, callId) {
    return run.calls.get(callId) ?? null;
  }

  output(call, text) {
    call.output.hidden = false;
    text = readable(text);
    call.pre.append(text);
    call.lines += (text.match(/\n/g) || []).length;
    call.summary.textContent = t("output_lines", { lines: Math.max(1, call.lines) });
    if (!call.folded && call.lines > FOLD_LINES && !call.userToggled) {
      call.folded = true;
      call.folding = true;
      call.output.open = false;
    }
  }

  card(run, slot, p, kind) {
    const card = el("section", `request ${kind}`);
    card.dataset.request = p.request;
    card.dataset.state = "open";
    card.setAttribute("aria-label", t(kind === "approval" ? "approval_title" : "question_title"));
    card.append(el("h3", null, t(kind === "approval" ? "approval_title" : "question_title")));
    if (kind === "approval") {
      const plan = p.commands?.length ? p.commands.join("; ") : `${p.tool} ${JSON.stringify(p.args)}`;
      const what = el("p", "plan");
      what.append(el("code", null, visible(plan)), ` ${t("call_on", { where: `${p.runner}/${p.workspace}` })}`);
      card.append(what);
      if (p.cwd) card.append(el("p", "meta", `cwd ${visible(p.cwd)}`));
    } else {
      card.append(el("p", "plan", visible(p.question)));
    }
    card.append(el("p", "meta", `${p.handle} · ${t("by_rule", { rule: p.rule ?? "ask" })} · ${t("expires", { at: when(p.expires_at, "time") })}`));
    const may = this.mayDecide(p.approvers ?? []);
    const actions = el("div", "actions");
    const outcome = el("p", "outcome");
    outcome.setAttribute("role", "status");
    const buttons = [];
    const send = async (params) => {
      for (const b of buttons) b.disabled = true;
      outcome.textContent = "";
      try {
        await this.resolve(p.request, params);
      } catch (err) {
        outcome.textContent = t("not_decided", { why: err.message ?? String(err) });
        if (card.dataset.state === "open") for (const b of buttons) b.disabled = !may;
      }
    };
    if (kind === "approval") {
      for (const decision of ["allow_once", "allow_session", "deny"]) {
        const b = el("button", decision === "deny" ? "danger" : "", t(decision));
        b.type = "button";
        b.dataset.decision = decision;
        b.addEventListener("click", () => send({ decision }));
        buttons.push(b);
        actions.append(b);
      }
    } else {
      for (const choice of p.choices ?? []) {
        const b = el("button", "", choice);
        b.type = "button";
        b.dataset.choice = choice;
        b.addEventListener("click", () => send({ answer: choice }));
        buttons.push(b);
        actions.append(b);
      }
      const form = el("form", "answer");
      const id = `answer-${p.request}`;
      const label = el("label", "sr", t("answer_label"));
      label.htmlFor = id;
      const input = el("input");
      input.id = id;
      input.autocomplete = "off";
      const submit = el("button", "", t("answer"));
      submit.type = "submit";
      form.append(label, input, submit);
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        if (input.value.trim()) send({ answer: input.value.trim() });
      });
      buttons.push(input, submit);
      actions.append(form);
    }
    for (const b of buttons) b.disabled = !may;
    card.append(actions);
    if (!may) {
      const whoMay = (p.approvers ?? []).map((a) => this.who(a)).join(", ") || t("tether");
      card.append(el("p", "why", t("not_yours", { who: whoMay })));
    }
    card.append(outcome);
    slot.append(card);
    run.cards.set(p.request, { card, buttons, actions, outcome });
  }

  decided(run, p, what) {
    const found = run.cards.get(p.request);
    if (!found) return;
    found.card.dataset.state = p.decision;
    found.actions.remove();
    found.card.querySelector(".why")?.remove();
    found.outcome.textContent = t("decided", {
      what, who: this.who(p.by), at: when(p.at, "time"),
    });
  }
}

const HANDLERS = {
  "run.queued"(run, p) {
    this.said(run, null, p.input, "user");
  },
  "run.recovered"(run, p) {
    this.note(run, t("recovered", { attempt: p.attempt }));
  },
  "run.waiting"(run, p) {
    // (a request's card says what it waits for; other waits get a line until it goes on)
    if (!p.reason || p.reason === "approval" || p.reason === "question") return;
    run.waiting = this.note(run, t("waiting_for", { why: explain(p.reason) }), "note waiting");
  },
  "run.running"(run) {
    run.waiting?.remove();
    run.waiting = null;
  },
  "run.cancel_requested"(run, p) {
    this.note(run, p.reason ? `${t("stopped_run")}: ${p.reason}` : t("stopped_run"));
  },
  "run.stop_escalated"(run, p) {
    this.note(run, t("stop_hard", { seconds: seconds(p.after_seconds) }));
  },
  "run.succeeded"(run, p) {
    if (p.output && !run.items.querySelector(".msg.agent[data-final]")) this.reply(run, p.output, true);
  },
  "run.failed"(run, p) {
    this.note(run, explain(p.reason ?? "failed", p.message ?? ""), "error");
  },
  "run.cancelled"(run, p) {
    if (p.message) this.note(run, p.message);
  },
  "run.expired"(run, p) {
    this.note(run, explain(p.reason ?? "expired", p.message ?? ""), "error");
  },
  "steering.received"(run, p) {
    this.said(run, t("steering", { who: this.who(p.sender) }), p.text, "user");
  },
  "steering.dropped"(run, p) {
    this.note(run, t("steering_dropped", { text: p.text, reason: p.reason }));
  },
  "steering.requeued"(run) {
    this.note(run, t("steering_requeued"));
  },
  "tool.call.requested"(run, p, event) {
    this.call(run, p, event);
  },
  "tool.call.decided"(run, p) {
    const call = this.callOf(run, p.call_id);
    if (!call) return;
    const by = p.by === "rule" ? t("by_rule", { rule: p.rule }) : p.by === "mode" ? t("by_mode") : this.who(p.by);
    call.decision.hidden = false;
    call.decision.textContent = t(p.decision === "allow" ? "allowed_by" : "denied_by", { who: by });
    call.li.dataset.decision = p.decision;
  },
  "tool.call.output"(run, p) {
    const call = this.callOf(run, p.call_id);
    if (call) this.output(call, p.text);
  },
  "tool.call.succeeded"(run, p) {
    const call = this.callOf(run, p.call_id);
    if (!call) return;
    call.li.dataset.state = "succeeded";
    call.mark.textContent = "✓";
    call.took.textContent = t("took", { seconds: seconds(p.duration) });
    if (call.lines === 0 && call.pre.textContent === "" && p.result !== null && p.result !== undefined) {
      const text = typeof p.result === "string" ? p.result : JSON.stringify(p.result, null, 2);
      this.output(call, text);
      call.summary.textContent = t("result");
    }
  },
  "tool.call.failed"(run, p, event) {
    const call = this.callOf(run, p.call_id);
    if (!call) return;
    call.li.dataset.state = "failed";
    call.mark.textContent = "✗";
    call.took.textContent = t("took", { seconds: seconds(event.created_at - call.at) });
    call.error.hidden = false;
    call.error.textContent = explain(p.code, p.message);
  },
  "approval.requested"(run, p) {
    const call = this.callOf(run, p.call_id);
    const slot = call ? call.card : this.item(run, "request-slot");
    this.card(run, slot, p, "approval");
  },
  "approval.resolved"(run, p) {
    this.decided(run, p, decisionWords(p.decision));
  },
  "question.asked"(run, p) {
    this.card(run, this.item(run, "request-slot"), p, "question");
  },
  "question.answered"(run, p) {
    const what = p.decision === "answer" ? `${decisionWords("answer")}: ${p.answer ?? ""}` : decisionWords(p.decision);
    this.decided(run, p, what);
  },
  "request.unseen"(run) {
    this.note(run, t("unseen"), "note waiting");
  },
  "agent.delta"(run, p) {
    this.reply(run, p.text, false);
  },
  "agent.message"(run, p) {
    this.reply(run, p.text, true);
  },
  "agent.status"(run, p) {
    let li = run.status;
    if (!li || li !== run.items.lastChild) {
      li = this.note(run, "", "note status");
      run.status = li;
    }
    li.textContent = p.text;
  },
};
