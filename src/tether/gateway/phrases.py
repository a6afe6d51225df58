"""What tether says in chats, in English and Chinese: one table, looked up by key.

:func:`say` fills a phrase in the person's language; :func:`guess_language` tells
Chinese from the text itself when the platform does not say.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tether.protocol.events import ApprovalRequested

__all__ = [
    "DECISIONS",
    "EXPLAINED",
    "PHRASES",
    "Lang",
    "decision_words",
    "describe_plan",
    "explain",
    "guess_language",
    "lang_of",
    "say",
]

Lang = Literal["en", "zh"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def lang_of(value: str | None, default: Lang) -> Lang:
    """A stored language as a :data:`Lang` (``default`` for anything else)."""
    if value == "zh":
        return "zh"
    if value == "en":
        return "en"
    return default


def guess_language(text: str) -> Lang | None:
    """``zh`` when the text has Chinese characters, else None (unknown)."""
    return "zh" if _CJK.search(text) else None


PHRASES: dict[str, dict[Lang, str]] = {
    "help": {
        "en": (
            "Send a message to start a run in this conversation's session. Commands:\n"
            "  /new                     start a fresh session\n"
            "  /stop                    stop the running task (and what waits behind it)\n"
            "  /status                  the session, its agent, runner, workspace and runs\n"
            "  /runs                    the latest runs\n"
            "  /routines                this session's routines (scheduled runs)\n"
            "  /send PATH               send a file from the workspace to this chat\n"
            "  /runner [NAME]           show or set the runner\n"
            "  /agent [NAME]            show or set the agent\n"
            "  /workspace [NAME]        show or set the workspace\n"
            "  /mode auto-read|ask|auto how tool calls are decided\n"
            "  /approve HANDLE [session] allow a request once (or for this session)\n"
            "  /deny HANDLE             deny a request\n"
            "  /answer HANDLE TEXT      answer a question\n"
            "  /help                    this list\n"
            "Start a message with // to send a leading / to the agent."
        ),
        "zh": (
            "发送消息即在本会话中开始一次运行。命令：\n"
            "  /new                     开始新的会话\n"
            "  /stop                    停止正在运行的任务（以及排队的消息）\n"
            "  /status                  会话、智能体、运行器、工作区和运行状态\n"
            "  /runs                    最近的运行\n"
            "  /routines                本会话的定时任务\n"
            "  /send 路径               把工作区中的文件发到本聊天\n"
            "  /runner [名称]           查看或设置运行器\n"
            "  /agent [名称]            查看或设置智能体\n"
            "  /workspace [名称]        查看或设置工作区\n"
            "  /mode auto-read|ask|auto 工具调用的决定方式\n"
            "  /approve 编号 [session]  批准一次请求（或在本会话内一直批准）\n"
            "  /deny 编号               拒绝请求\n"
            "  /answer 编号 文本        回答问题\n"
            "  /help                    显示本列表\n"
            "以 // 开头可把以 / 开头的文字原样发给智能体。"
        ),
    },
    "unknown_command": {
        "en": "Unknown command /{name}.",
        "zh": "未知命令 /{name}。",
    },
    "stranger": {
        "en": (
            "Sorry, I only answer people I know. Ask the owner of this tether to link you "
            "(tether users link NAME --channel {channel} --id {id}), or send /pair CODE "
            "with a pairing code they give you."
        ),
        "zh": (
            "抱歉，我只回复已登记的用户。请联系本 tether 的管理员为你关联账号"
            "（tether users link 名称 --channel {channel} --id {id}），"
            "或发送管理员给你的配对码：/pair 配对码。"
        ),
    },
    "paired": {
        "en": "Paired: you are {name} here now. Send a message to start.",
        "zh": "配对成功：你现在是 {name}。发送消息即可开始。",
    },
    "pair_failed": {
        "en": "That pairing code is unknown, used or expired. Ask for a new one.",
        "zh": "配对码无效、已使用或已过期，请重新获取。",
    },
    "already_linked": {
        "en": "You are already linked as {name}.",
        "zh": "你已关联为 {name}。",
    },
    "viewer": {
        "en": "You may read here, but not start runs or decide requests (your role is viewer).",
        "zh": "你只有查看权限（viewer），不能开始运行或处理请求。",
    },
    "queued": {
        "en": "Queued: it starts when the current run ends ({position} waiting).",
        "zh": "已排队：当前运行结束后开始（排队中 {position} 条）。",
    },
    "steered": {
        "en": "Added to the running task: the agent reads it now.",
        "zh": "已加入正在运行的任务，智能体会立即读取。",
    },
    "dropped": {
        "en": "Not taken: the running task has too much unread input. Try again shortly.",
        "zh": "未接收：正在运行的任务还有太多未读输入，请稍后再试。",
    },
    "queue_full": {
        "en": "The queue is full ({limit} messages wait already). Wait for them, or /stop.",
        "zh": "队列已满（已有 {limit} 条在等待）。请等待，或发送 /stop。",
    },
    "stopped": {
        "en": "Stopped {count} run(s).",
        "zh": "已停止 {count} 个运行。",
    },
    "nothing_running": {
        "en": "Nothing is running.",
        "zh": "当前没有正在运行的任务。",
    },
    "new_session": {
        "en": "New session {session}: agent {agent}, runner {runner}, workspace {workspace}, mode {mode}.",
        "zh": "新会话 {session}：智能体 {agent}，运行器 {runner}，工作区 {workspace}，模式 {mode}。",
    },
    "status": {
        "en": (
            "Session {session}\n  agent {agent} · runner {runner} ({online}) · workspace "
            "{workspace} · mode {mode}\n  run: {run}\n  waiting for you: {requests}"
        ),
        "zh": (
            "会话 {session}\n  智能体 {agent} · 运行器 {runner}（{online}）· 工作区 "
            "{workspace} · 模式 {mode}\n  运行：{run}\n  待你处理：{requests}"
        ),
    },
    "online": {"en": "online", "zh": "在线"},
    "offline": {"en": "offline", "zh": "离线"},
    "none": {"en": "none", "zh": "无"},
    "runs": {"en": "Latest runs:\n{lines}", "zh": "最近的运行：\n{lines}"},
    "no_runs": {"en": "No runs yet.", "zh": "还没有运行。"},
    "routines": {
        "en": "Routines of this session:\n{lines}",
        "zh": "本会话的定时任务：\n{lines}",
    },
    "no_routines": {
        "en": "This session has no routines (add one with `tether routines add`).",
        "zh": "本会话没有定时任务（用 `tether routines add` 添加）。",
    },
    "routine_next": {"en": "next {when}", "zh": "下次 {when}"},
    "routine_paused": {"en": "paused", "zh": "已暂停"},
    "setting": {"en": "{name}: {value}{more}", "zh": "{name}：{value}{more}"},
    "set": {"en": "{name} set to {value}.", "zh": "{name} 已设为 {value}。"},
    "choices": {"en": "\n  available: {values}", "zh": "\n  可选：{values}"},
    "usage": {"en": "Usage: {usage}", "zh": "用法：{usage}"},
    "decided": {"en": "{handle}: {decision}.", "zh": "{handle}：{decision}。"},
    "failed_command": {"en": "Could not do that: {reason}", "zh": "无法执行：{reason}"},
    "internal": {
        "en": "Something went wrong handling your message; it was logged.",
        "zh": "处理你的消息时出错，已记录。",
    },
    # ---- what a run says --------------------------------------------------------------
    "approval": {
        "en": (
            "Approval needed [{handle}]: {what}\n"
            "  /approve {handle} — allow once · /approve {handle} session — allow for this "
            "session · /deny {handle}"
        ),
        "zh": (
            "需要批准 [{handle}]：{what}\n"
            "  /approve {handle} 批准一次 · /approve {handle} session 本会话内批准 · "
            "/deny {handle} 拒绝"
        ),
    },
    "question": {
        "en": "Question [{handle}]: {question}{choices}\n  /answer {handle} YOUR ANSWER",
        "zh": "问题 [{handle}]：{question}{choices}\n  /answer {handle} 你的回答",
    },
    "resolved": {
        "en": "[{handle}] {decision}{by}.",
        "zh": "[{handle}] {decision}{by}。",
    },
    "run_done_empty": {"en": "Done.", "zh": "完成。"},
    "delivery_failed": {
        "en": "A message for this chat could not be delivered and was given up ({why}). "
        "The owner can see it with: tether deliveries list --state dead",
        "zh": "有一条发往本会话的消息无法送达，已放弃（{why}）。"
        "管理员可用 tether deliveries list --state dead 查看。",
    },
    "run_failed": {"en": "The run failed: {why}.", "zh": "运行失败：{why}。"},
    "call_failed": {
        "en": "A tool call did not run: {why}.",
        "zh": "有一个工具调用未执行：{why}。",
    },
    "run_cancelled": {"en": "The run was stopped.{message}", "zh": "运行已停止。{message}"},
    "run_expired": {
        "en": "The run waited too long in the queue and was dropped.",
        "zh": "运行排队时间过长，已取消。",
    },
    "send_usage": {
        "en": "Say which file: /send PATH (a path in the session's workspace).",
        "zh": "请指明文件：/send 路径（会话工作区中的路径）。",
    },
    "send_unsupported": {
        "en": "This chat cannot carry files.",
        "zh": "此聊天无法收发文件。",
    },
    "send_failed": {
        "en": "Could not send {path}: {reason}",
        "zh": "无法发送 {path}：{reason}",
    },
    "sent": {
        "en": "Sending {name} ({size} bytes).",
        "zh": "正在发送 {name}（{size} 字节）。",
    },
}

DECISIONS: dict[str, dict[Lang, str]] = {
    "allow_once": {"en": "allowed once", "zh": "已批准一次"},
    "allow_session": {"en": "allowed for this session", "zh": "已在本会话内批准"},
    "deny": {"en": "denied", "zh": "已拒绝"},
    "expired": {"en": "expired", "zh": "已过期"},
    "cancelled": {"en": "cancelled", "zh": "已取消"},
    "answer": {"en": "answered", "zh": "已回答"},
}


def decision_words(decision: str, lang: Lang) -> str:
    return DECISIONS.get(decision, {}).get(lang, decision)


def say(lang: Lang, key: str, **values: Any) -> str:
    """The phrase ``key`` in ``lang``, filled with ``values``."""
    return PHRASES[key][lang].format(**values)


EXPLAINED: dict[str, dict[Lang, str]] = {
    # error codes
    "runner_offline": {
        "en": "the runner is offline; start it on its machine with `tether runner`",
        "zh": "运行器离线；请在其所在机器上运行 `tether runner` 启动它",
    },
    "capability_denied": {
        "en": "the runner refused the call's token, so nothing ran ({message})",
        "zh": "运行器拒绝了本次调用的令牌，未执行任何操作（{message}）",
    },
    "policy_denied": {
        "en": "policy refused it ({message}); see why with `tether policy explain`",
        "zh": "策略拒绝了该操作（{message}）；可用 `tether policy explain` 查看原因",
    },
    "approval_denied": {
        "en": "it was denied, so nothing ran",
        "zh": "已被拒绝，未执行任何操作",
    },
    "approval_expired": {
        "en": "nobody approved it in time, so nothing ran",
        "zh": "无人及时批准，未执行任何操作",
    },
    "question_expired": {
        "en": "nobody answered the question in time",
        "zh": "无人及时回答问题",
    },
    "tool_failed": {"en": "the tool failed: {message}", "zh": "工具执行失败：{message}"},
    "tool_timeout": {
        "en": "it ran too long and was stopped",
        "zh": "运行时间过长，已被停止",
    },
    "timeout": {
        "en": "the runner did not answer in time",
        "zh": "运行器未能及时响应",
    },
    "agent_not_installed": {
        "en": "the agent is not installed on the runner ({message}); "
        "`tether agents list --here` on that machine shows what it has",
        "zh": "运行器上没有安装该智能体（{message}）；在那台机器上运行 "
        "`tether agents list --here` 可查看已安装的智能体",
    },
    "agent_crashed": {
        "en": "the agent crashed; your next message starts it again and resumes its work",
        "zh": "智能体崩溃了；你的下一条消息会重新启动它并继续之前的工作",
    },
    "delivery_failed": {
        "en": "a message could not be delivered and was given up",
        "zh": "有消息无法送达，已放弃",
    },
    # run reasons
    "interrupted": {
        "en": "the gateway restarted while it ran; send it again to retry",
        "zh": "运行期间网关重启了；请重新发送以重试",
    },
    "runner_restarted": {
        "en": "the runner restarted; the work is kept, and your next message resumes it",
        "zh": "运行器重启了；工作已保留，你的下一条消息会继续它",
    },
    "dead_letter": {
        "en": "it was retried too many times and given up",
        "zh": "重试次数过多，已放弃",
    },
    "stalled": {
        "en": "it made no progress for too long and was stopped",
        "zh": "长时间没有进展，已被停止",
    },
    "unknown_agent": {
        "en": "the session's agent is not available on this gateway; pick one with /agent",
        "zh": "本网关没有该会话的智能体；请用 /agent 选择",
    },
    "no_runner": {
        "en": "the session has no runner; set one with /runner NAME",
        "zh": "会话没有运行器；请用 /runner 名称 设置",
    },
    "buffer_full": {
        "en": "the agent wrote more than the runner could hold while the gateway was away",
        "zh": "网关断开期间，智能体的输出超出了运行器可保存的上限",
    },
}
"""Error codes and run reasons, as people should read them (``{message}``: the detail)."""


def explain(code: str, lang: Lang, message: str = "") -> str:
    """The code or reason in words; the detail when there are no words for it."""
    phrase = EXPLAINED.get(code)
    if phrase is None:
        return f"{code}: {message}" if message else code
    return phrase[lang].format(message=message.strip() or code)


def describe_plan(event: ApprovalRequested) -> str:
    """One line: what the call would do, and where."""
    if event.commands:
        what = "; ".join(event.commands)
    elif "path" in event.args:
        what = str(event.args["path"])
    else:
        what = ", ".join(f"{k}={v!r}" for k, v in sorted(event.args.items()))[:300]
    where = f"{event.runner}/{event.workspace}" if event.workspace else event.runner
    return f"{event.tool} `{what}` on {where}"
