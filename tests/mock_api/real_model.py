"""The "real model" mode of tests/mock_api/mock_api.py: answers come from a small local model
(a GGUF file run in-process by llama.cpp's server, through the `xllamacpp` package) instead of
the scripted scenarios.

Why a translation layer: through llama.cpp's own tool-call path, small models such as
Qwen2.5-Coder-1.5B write their tool calls as fenced JSON text, so no tool ever runs, and
`tool_choice` is not enforced. Here every model reply is constrained by a JSON schema
(`response_format`) to exactly one of

    {"tool": "<one of the request's tools>", "input": <that tool's input schema>}
    {"final": "<text>"}

(the schema goes to llama.cpp as an llguidance grammar, so that the JSON is also compact) and
the layer turns that into the wire protocol's own tool call (Anthropic `tool_use`, OpenAI
Responses `function_call`) or final message. The conversation going the other way (earlier
tool calls and their results) is written back as that same JSON and as plain text, so the model
sees one consistent format.

Bounds, so that a night on a slow machine ends: a fixed seed and temperature, at most
`max_tokens` per reply, at most `max_turns` tool calls per conversation (after that only a final
reply is allowed), and `timeout_s` per reply (generation is cut there; a cut reply is returned
as a final text message, as a truncated answer would be).

Each model call is appended to `log` (JSON lines) with its tokens and seconds, which
scripts/real-night adds up.
"""

import json
import threading
import time
import uuid

# Tools a coding agent does not need here, left out of the prompt and the schema to keep both
# short (Codex sends a dozen; Claude Code's are chosen with --tools).
DEFAULT_DROP = {"request_user_input", "view_image", "get_goal", "create_goal", "update_goal",
                "write_stdin", "update_plan", "web_search", "WebFetch", "WebSearch", "TodoWrite",
                "Task", "Agent", "NotebookEdit", "ExitPlanMode", "Skill"}

# Schema keywords kept when a tool's input schema is turned into the reply schema: enough to
# constrain the shape; descriptions and formats only lengthen the grammar.
KEEP_KEYS = {"type", "properties", "required", "items", "enum", "const", "anyOf", "oneOf",
             "minimum", "maximum", "minItems", "maxItems"}

# llguidance's JSON options: no whitespace between tokens.
COMPACT = {"x-guidance": {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}}

MAX_RESULT_CHARS = 6000
MAX_DESCRIPTION_CHARS = 500


class Backend:
    def __init__(self, args):
        try:
            import xllamacpp
        except ImportError as e:
            raise SystemExit("mock_api: --real-model needs the xllamacpp package (%s); "
                             "run scripts/real-model-install and start this file with the "
                             "python it prints" % e)
        self.args = args
        p = xllamacpp.CommonParams()
        p.model.path = args.real_model
        p.n_ctx = args.ctx
        p.n_parallel = 1
        p.n_predict = args.max_tokens
        p.cpuparams.n_threads = args.threads
        p.cpuparams_batch.n_threads = args.threads
        p.sampling.seed = args.seed
        p.sampling.temp = args.temperature
        self.server = xllamacpp.Server(p)
        self.lock = threading.Lock()
        self.drop = set(DEFAULT_DROP)
        if args.keep_tools:
            self.drop -= set(args.keep_tools.split(","))

    # ------------------------------------------------------------------ the model call

    def complete(self, protocol, system, messages, tools, turns):
        """One constrained model reply: ("tool", name, input) or ("final", text, None), and
        the usage figures."""
        offered = [t for t in tools if t["name"] not in self.drop]
        final_only = not offered or turns >= self.args.max_turns
        schema = reply_schema([] if final_only else offered, self.args.optional_params)
        prompt = system_prompt(system, [] if final_only else offered, final_only and bool(offered),
                               self.args.optional_params)
        chat = [{"role": "system", "content": prompt}] + messages
        req = {"messages": chat, "max_tokens": self.args.max_tokens, "stream": True,
               "temperature": self.args.temperature, "seed": self.args.seed,
               "stream_options": {"include_usage": True},
               # The schema as an llguidance grammar rather than `response_format`: the same
               # constraint, but it can also forbid the whitespace that pretty-printed JSON
               # spends tokens on (about half of a short call's tokens).
               "grammar": "%llguidance {}\nstart: %json " + json.dumps(dict(schema, **COMPACT))}
        parts, last = [], {}
        t0 = time.time()
        deadline = t0 + self.args.timeout_s

        def on_chunk(chunk):
            if isinstance(chunk, str):
                try:
                    chunk = json.loads(chunk)
                except ValueError:
                    return False
            if not isinstance(chunk, dict):
                return False
            for c in chunk.get("choices") or []:
                d = (c.get("delta") or {}).get("content")
                if d:
                    parts.append(d)
                if c.get("finish_reason"):
                    last["finish"] = c["finish_reason"]
            if chunk.get("usage"):
                last["usage"] = chunk["usage"]
            if chunk.get("timings"):
                last["timings"] = chunk["timings"]
            return time.time() > deadline

        with self.lock:
            self.server.handle_chat_completions(req, on_chunk)
        secs = time.time() - t0
        text = "".join(parts)
        timed_out = "finish" not in last and time.time() > deadline
        usage = last.get("usage") or {}
        timings = last.get("timings") or {}
        figures = {
            "input": int(usage.get("prompt_tokens") or timings.get("prompt_n", 0)
                         + timings.get("cache_n", 0)),
            "cached": int((usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                          or timings.get("cache_n", 0)),
            "output": int(usage.get("completion_tokens") or timings.get("predicted_n", 0)
                          or len(parts)),
        }
        reply = parse_reply(text, offered)
        if timed_out:
            reply = ("final", "(the local model was cut off after %ds) %s"
                     % (self.args.timeout_s, text[:2000]), None)
        self.log({"protocol": protocol, "secs": round(secs, 2), "turns": turns,
                  "finish": "timeout" if timed_out else last.get("finish"),
                  "reply": reply[0], "tool": reply[1] if reply[0] == "tool" else None,
                  "text": text[:4000], **figures})
        return reply, figures

    def plain(self, protocol, system, messages, max_tokens):
        """A reply without tools (titles, probes): short, unconstrained."""
        chat = ([{"role": "system", "content": system}] if system else []) + messages
        if not chat:
            chat = [{"role": "user", "content": "Say OK."}]
        req = {"messages": chat, "max_tokens": max(1, min(max_tokens or 32, 32)),
               "temperature": self.args.temperature, "seed": self.args.seed}
        t0 = time.time()
        with self.lock:
            r = self.server.handle_chat_completions(req)
        if isinstance(r, str):
            r = json.loads(r)
        text = ((r.get("choices") or [{}])[0].get("message") or {}).get("content") or "OK"
        u = r.get("usage") or {}
        figures = {"input": int(u.get("prompt_tokens", 0)), "output": int(u.get("completion_tokens", 0)),
                   "cached": int((u.get("prompt_tokens_details") or {}).get("cached_tokens", 0))}
        self.log({"protocol": protocol, "secs": round(time.time() - t0, 2), "turns": 0,
                  "finish": "plain", "reply": "plain", "tool": None, "text": text[:400], **figures})
        return text, figures

    def log(self, entry):
        entry = dict(entry, t=round(time.time(), 3))
        if self.args.real_log:
            with open(self.args.real_log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")


# ---------------------------------------------------------------------- schema and prompt


def clean_schema(s, optional=True):
    """A tool's input schema, reduced to what constrains its shape; without `optional`, the
    top-level properties that are not required are left out (a small model fills every one it
    is offered, a description or a timeout, at a few tokens a second)."""
    if isinstance(s, list):
        return [clean_schema(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {}
    required = set(s.get("required") or [])
    for k, v in s.items():
        if k == "properties" and isinstance(v, dict):
            out[k] = {name: clean_schema(sub) for name, sub in v.items()
                      if optional or name in required}
        elif k in KEEP_KEYS:
            out[k] = clean_schema(v)
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
    if not out:
        out = {"type": "string"}
    return out


def reply_schema(tools, optional=False):
    final = {"type": "object", "properties": {"final": {"type": "string"}},
             "required": ["final"], "additionalProperties": False}
    choices = []
    for t in tools:
        choices.append({"type": "object",
                        "properties": {"tool": {"const": t["name"]},
                                       "input": clean_schema(t["schema"], optional)},
                        "required": ["tool", "input"], "additionalProperties": False})
    return {"anyOf": choices + [final]} if choices else final


def brief_schema(s, optional):
    """The input schema as `name: type` pairs for the prompt, optional ones marked `?`."""
    props = (s or {}).get("properties") or {}
    req = set((s or {}).get("required") or [])
    props = {k: v for k, v in props.items() if optional or k in req}
    return ", ".join("%s%s: %s" % (k, "" if k in req else "?",
                                   (v or {}).get("type", "any") if isinstance(v, dict) else "any")
                     for k, v in props.items())


def system_prompt(system, tools, turns_used_up, optional):
    lines = [system.strip()] if system and system.strip() else []
    lines.append("")
    if tools:
        lines.append("Answer with exactly one JSON object: {\"tool\": NAME, \"input\": {...}} "
                     "to use one of the tools below (you will get its result), or "
                     "{\"final\": TEXT} when the task is done.")
        lines.append("Tools:")
        for t in tools:
            desc = " ".join((t.get("description") or "").split())[:MAX_DESCRIPTION_CHARS]
            lines.append("- %s(%s): %s" % (t["name"], brief_schema(t["schema"], optional), desc))
    else:
        if turns_used_up:
            lines.append("You have used all your tool calls.")
        lines.append("Answer with one JSON object: {\"final\": TEXT}.")
    return "\n".join(lines).strip()


def parse_reply(text, tools):
    try:
        obj = json.loads(text)
    except ValueError:
        return ("final", text or "(no answer)", None)
    if isinstance(obj, dict) and "tool" in obj and any(t["name"] == obj["tool"] for t in tools):
        return ("tool", obj["tool"], obj.get("input") or {})
    if isinstance(obj, dict) and "final" in obj:
        return ("final", str(obj["final"]) or "Done.", None)
    return ("final", text, None)


def as_call(name, inp):
    return json.dumps({"tool": name, "input": inp}, separators=(",", ":"))


def clip(text):
    text = text if isinstance(text, str) else json.dumps(text)
    if len(text) > MAX_RESULT_CHARS:
        half = MAX_RESULT_CHARS // 2
        text = text[:half] + "\n[... %d characters left out ...]\n" % (len(text) - 2 * half) + text[-half:]
    return text


def push(messages, role, text):
    """Appends text, merging with the previous message of the same role."""
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"] += "\n\n" + text
    else:
        messages.append({"role": role, "content": text})


# ---------------------------------------------------------------------- Anthropic Messages


def anthropic_text(content):
    if isinstance(content, str):
        return content
    out = []
    for b in content or []:
        if isinstance(b, dict) and b.get("type") == "text":
            out.append(b.get("text", ""))
        elif isinstance(b, dict) and b.get("type") == "tool_result":
            out.append(anthropic_text(b.get("content")))
    return "\n".join(out)


def anthropic_request(body):
    """(system, chat messages, tools, tool calls so far) of a Messages request."""
    system = body.get("system")
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    tools = [{"name": t.get("name"), "description": t.get("description", ""),
              "schema": t.get("input_schema") or {}}
             for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    names, messages, turns = {}, [], 0
    for m in body.get("messages") or []:
        content = m.get("content")
        if isinstance(content, str):
            push(messages, m.get("role", "user"), content)
            continue
        for b in content or []:
            if not isinstance(b, dict):
                continue
            kind = b.get("type")
            if kind == "text" and b.get("text", "").strip():
                push(messages, m.get("role", "user"), b["text"])
            elif kind == "tool_use":
                turns += 1
                names[b.get("id")] = b.get("name")
                push(messages, "assistant", as_call(b.get("name"), b.get("input")))
            elif kind == "tool_result":
                err = " (error)" if b.get("is_error") else ""
                push(messages, "user", "Result of %s%s:\n%s" % (
                    names.get(b.get("tool_use_id"), "the tool"), err, clip(anthropic_text(b.get("content")))))
    return system or "", messages, tools, turns


def anthropic_blocks(backend, body):
    system, messages, tools, turns = anthropic_request(body)
    if not tools:
        text, figures = backend.plain("anthropic", system, messages, body.get("max_tokens"))
        return [{"type": "text", "text": text}], "end_turn", figures
    reply, figures = backend.complete("anthropic", system, messages, tools, turns)
    if reply[0] == "tool":
        return [{"type": "tool_use", "id": "toolu_local_" + uuid.uuid4().hex[:12],
                 "name": reply[1], "input": reply[2]}], "tool_use", figures
    return [{"type": "text", "text": reply[1]}], "end_turn", figures


# ---------------------------------------------------------------------- OpenAI Responses


def openai_text(content):
    if isinstance(content, str):
        return content
    return "\n".join(c.get("text", "") for c in content or [] if isinstance(c, dict))


def openai_request(body):
    system = [body.get("instructions") or ""]
    tools = []
    for t in body.get("tools") or []:
        if not isinstance(t, dict):
            continue
        if t.get("type") == "function" and t.get("name"):
            tools.append({"name": t["name"], "description": t.get("description", ""),
                          "schema": t.get("parameters") or {}, "custom": False})
        elif t.get("type") == "custom" and t.get("name"):
            tools.append({"name": t["name"], "description": t.get("description", ""),
                          "schema": {"type": "object", "properties": {"input": {"type": "string"}},
                                     "required": ["input"]}, "custom": True})
    names, messages, turns = {}, [], 0
    for item in body.get("input") or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            text = openai_text(item.get("content"))
            if role in ("developer", "system"):
                system.append(text)
            elif text.strip():
                push(messages, "assistant" if role == "assistant" else "user", text)
        elif kind == "function_call":
            turns += 1
            names[item.get("call_id")] = item.get("name")
            try:
                args = json.loads(item.get("arguments") or "{}")
            except ValueError:
                args = item.get("arguments")
            push(messages, "assistant", as_call(item.get("name"), args))
        elif kind == "custom_tool_call":
            turns += 1
            names[item.get("call_id")] = item.get("name")
            push(messages, "assistant", as_call(item.get("name"), {"input": item.get("input")}))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out = item.get("output")
            if isinstance(out, list):
                out = openai_text(out)
            push(messages, "user", "Result of %s:\n%s" % (names.get(item.get("call_id"), "the tool"), clip(out)))
    return "\n\n".join(s for s in system if s.strip()), messages, tools, turns


def openai_items(backend, body):
    system, messages, tools, turns = openai_request(body)
    if not tools:
        text, figures = backend.plain("openai", system, messages, body.get("max_output_tokens"))
        reply = ("final", text, None)
    else:
        reply, figures = backend.complete("openai", system, messages, tools, turns)
    call_id = "call_local_" + uuid.uuid4().hex[:12]
    if reply[0] == "tool":
        tool = next(t for t in tools if t["name"] == reply[1])
        if tool["custom"]:
            return [{"type": "custom_tool_call", "id": "ctc_local_" + uuid.uuid4().hex[:8],
                     "status": "completed", "call_id": call_id, "name": reply[1],
                     "input": (reply[2] or {}).get("input", "")}], figures
        return [{"type": "function_call", "id": "fc_local_" + uuid.uuid4().hex[:8],
                 "status": "completed", "call_id": call_id, "name": reply[1],
                 "arguments": json.dumps(reply[2])}], figures
    return [{"type": "message", "role": "assistant", "id": "msg_local_" + uuid.uuid4().hex[:8],
             "status": "completed",
             "content": [{"type": "output_text", "text": reply[1], "annotations": []}]}], figures
