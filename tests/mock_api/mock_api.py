#!/usr/bin/env python3
"""A scripted mock model API on 127.0.0.1 for driving the real agent CLIs
(tests/integration/real_cli.rs, scripts/record-cli-output).

One server speaks the four wire protocols the CLIs use, told apart by the request path:

  * Anthropic Messages (Claude Code, ANTHROPIC_BASE_URL):   POST /v1/messages[?beta=true]
  * OpenAI Responses (Codex, a custom model provider):        POST /v1/responses
  * Gemini (Gemini CLI, GOOGLE_GEMINI_BASE_URL):              POST /v1beta/models/M:ACTION
  * OpenAI Chat Completions (aider, OPENAI_API_BASE):         POST /v1/chat/completions
    (no tools: every answer is the edit in aider's `whole` format; the failures as below)

It keeps no conversation state: what it answers follows from the request itself. A request that
already carries a tool result gets the final message; one that does not gets the scenario's tool
call (the edit, or the Bash command for `denied`). Requests without tools (title generation,
quota probes, Gemini's routing/next-speaker checks) get a short text answer.

Scenarios (--scenario):
  ok        tool call that writes --edit-path with --edit-content (Claude: Write, or Edit of
            --edit-old), then a final message
  denied    tool call to the shell (`--deny-command`), then a final message
  429       HTTP 429 for the first --fail-count model requests, or for --fail-seconds after the
            first one, then behaves as `ok`; --retry-after N adds a retry-after header
  529       Anthropic overloaded (529; 503 UNAVAILABLE for Gemini, 529 for OpenAI), same timing
  500       HTTP 500, same timing
  401       HTTP 401 invalid key, always
  badkey    Gemini: HTTP 400 INVALID_ARGUMENT with reason API_KEY_INVALID (what Google answers
            a wrong key with); Anthropic and OpenAI: as 401
  400       HTTP 400 invalid request, always
  loop      the same shell tool call (--loop-command) answered to every request, tool result or
            not: an agent stuck repeating itself; after --loop-times calls (0: never) the final
            message
  stall     the first model request as `ok` (the edit), then every later one starts its stream
            (the response headers and the first event) and stops answering for --stall-seconds:
            a connection that died mid-stream without closing

Real model (--real-model FILE.gguf): instead of the scenarios, a small local model answers the
Anthropic and OpenAI Responses requests, through a tool-call translation that constrains each
reply to one of the request's tools or a final answer (tests/mock_api/real_model.py says how and
why). It needs the xllamacpp package: scripts/real-model-install installs it and the pinned
weights, and prints the python to start this file with. Gemini requests get a 400 then.

Every request is appended to --log (JSON lines: time, method, path, headers, body) so a test or
a person can see what the CLI asked. The chosen port is written to --port-file (and printed on
stdout) once the socket listens; --port 0 picks a free one.
"""

import argparse
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import real_model

ARGS = None
BACKEND = None  # the local model, with --real-model
LOCK = threading.Lock()
STATE = {"model_requests": 0, "first_model_request": None, "failed": 0}

# Per-provider usage figures. Fixed so that tests can compute the expected cost exactly.
USAGE = {"input": 1200, "output": 80}


def log_request(handler, body_text):
    if not ARGS.log:
        return
    entry = {
        "t": round(time.time(), 3),
        "method": handler.command,
        "path": handler.path,
        "headers": {k.lower(): v for k, v in handler.headers.items()
                    if k.lower() not in ("authorization", "x-api-key", "x-goog-api-key")},
        "auth": bool(handler.headers.get("authorization") or handler.headers.get("x-api-key")
                     or handler.headers.get("x-goog-api-key")),
    }
    try:
        entry["body"] = json.loads(body_text) if body_text else None
    except ValueError:
        entry["body"] = body_text[:4000]
    with LOCK:
        with open(ARGS.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def should_fail():
    """Counts one model request and says whether the scenario fails it."""
    with LOCK:
        STATE["model_requests"] += 1
        now = time.time()
        if STATE["first_model_request"] is None:
            STATE["first_model_request"] = now
        sc = ARGS.scenario
        if sc in ("401", "400", "badkey"):
            fail = True
        elif sc in ("429", "529", "500"):
            if ARGS.fail_seconds is not None:
                fail = now - STATE["first_model_request"] < ARGS.fail_seconds
            else:
                fail = STATE["model_requests"] <= ARGS.fail_count
        else:
            fail = False
        if fail:
            STATE["failed"] += 1
        return fail


def failed(h, error_body):
    """Counts one model request; when the scenario fails it, answers with its status and
    `error_body(status)` (a retry-after header on a 429 when --retry-after is given), and says so."""
    if not should_fail():
        return False
    status = http_status()
    headers = {}
    if status == 429 and ARGS.retry_after is not None:
        headers["retry-after"] = str(ARGS.retry_after)
    h.send_json(status, error_body(status), headers)
    return True


def error_status():
    """The scenario's HTTP status; `badkey` is Gemini's 400 API_KEY_INVALID, a 401 elsewhere."""
    return "badkey" if ARGS.scenario == "badkey" else int(ARGS.scenario)


def http_status():
    """error_status() for the providers without a bad-key special case."""
    s = error_status()
    return 401 if s == "badkey" else s


def edit_path(workdir):
    p = ARGS.edit_path
    if p.startswith("/") or not workdir:
        return p
    return workdir.rstrip("/") + "/" + p


# ---------------------------------------------------------------- Anthropic Messages


def anthropic_error(status):
    kind, msg = {
        429: ("rate_limit_error", "This request would exceed your organization's rate limit. (mock)"),
        529: ("overloaded_error", "Overloaded"),
        500: ("api_error", "Internal server error"),
        401: ("authentication_error", "invalid x-api-key"),
        400: ("invalid_request_error", "messages: text content blocks must be non-empty (mock)"),
    }[status]
    return {"type": "error", "error": {"type": kind, "message": msg},
            "request_id": "req_mock_" + uuid.uuid4().hex[:12]}


def anthropic_has_tool_result(body):
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, list):
            for block in c:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    return True
    return False


def anthropic_workdir(body):
    system = body.get("system")
    if isinstance(system, list):
        system = " ".join(b.get("text", "") for b in system if isinstance(b, dict))
    text = (system or "") + json.dumps(body.get("messages", []))
    m = re.search(r"Working directory: ([^\s\\\"]+)", text)
    return m.group(1) if m else None


def anthropic_tool_results(body):
    n = 0
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, list):
            n += sum(1 for b in c if isinstance(b, dict) and b.get("type") == "tool_result")
    return n


def looping(tool_results):
    """`loop`: whether this request gets the same tool call again."""
    return ARGS.scenario == "loop" and (ARGS.loop_times == 0 or tool_results < ARGS.loop_times)


def anthropic_reply(body):
    """The content blocks and stop reason for one Messages request."""
    tools = {t.get("name") for t in body.get("tools", []) if isinstance(t, dict)}
    if tools and looping(anthropic_tool_results(body)):
        return [{"type": "tool_use", "id": "toolu_mock_" + uuid.uuid4().hex[:12], "name": "Bash",
                 "input": {"command": ARGS.loop_command, "description": "Check the tree"}}], "tool_use"
    if not tools or anthropic_has_tool_result(body):
        text = ARGS.final_text if tools else "Mock reply."
        return [{"type": "text", "text": text}], "end_turn"
    if ARGS.scenario == "denied":
        return [{"type": "tool_use", "id": "toolu_mock_" + uuid.uuid4().hex[:12], "name": "Bash",
                 "input": {"command": ARGS.deny_command, "description": "Run the tests"}}], "tool_use"
    if ARGS.edit_old is not None:
        return [{"type": "tool_use", "id": "toolu_mock_" + uuid.uuid4().hex[:12], "name": "Edit",
                 "input": {"file_path": edit_path(anthropic_workdir(body)),
                           "old_string": ARGS.edit_old, "new_string": ARGS.edit_content}}], "tool_use"
    return [{"type": "tool_use", "id": "toolu_mock_" + uuid.uuid4().hex[:12], "name": "Write",
             "input": {"file_path": edit_path(anthropic_workdir(body)),
                       "content": ARGS.edit_content}}], "tool_use"


def anthropic_block_events(i, b):
    """The stream events of content block number i."""
    if b["type"] == "text":
        start = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": b["text"]}
    else:
        start = {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}
    return [("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": i})]


def handle_anthropic(h, body):
    if BACKEND is not None:
        return real_anthropic(h, body)
    if failed(h, anthropic_error):
        return None
    blocks, stop = anthropic_reply(body)
    model = body.get("model", "claude-sonnet-4-5")
    msg_id = "msg_mock_" + uuid.uuid4().hex[:16]
    usage_in = {"input_tokens": USAGE["input"], "output_tokens": 1,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    if body.get("stream") and stalls(anthropic_has_tool_result(body)):
        return stall(h, "message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage_in}})
    if not body.get("stream"):
        return h.send_json(200, {
            "id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": stop, "stop_sequence": None,
            "usage": dict(usage_in, output_tokens=USAGE["output"])})
    events = [("message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage_in}})]
    for i, b in enumerate(blocks):
        events.extend(anthropic_block_events(i, b))
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": USAGE["output"]}}))
    events.append(("message_stop", {"type": "message_stop"}))
    h.send_sse(events)


# ---------------------------------------------------------------- OpenAI Responses


def openai_error(status):
    kind, msg = {
        429: ("rate_limit_exceeded", "Rate limit reached for requests (mock)"),
        529: ("server_error", "The server is overloaded (mock)"),
        500: ("server_error", "The server had an error while processing your request (mock)"),
        401: ("invalid_api_key", "Incorrect API key provided: sk-mock. (mock)"),
        400: ("invalid_request_error", "Invalid request (mock)"),
    }[status]
    return {"error": {"message": msg, "type": kind, "param": None, "code": kind}}


def openai_has_tool_result(body):
    for item in body.get("input", []) or []:
        if isinstance(item, dict) and item.get("type") in (
                "function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            return True
    return False


def openai_tool_results(body):
    return sum(1 for item in body.get("input", []) or [] if isinstance(item, dict) and item.get("type") in (
        "function_call_output", "custom_tool_call_output", "local_shell_call_output"))


def openai_tool_names(body):
    names = set()
    for t in body.get("tools", []) or []:
        if isinstance(t, dict):
            names.add(t.get("name") or t.get("type"))
    return names


def openai_workdir(body):
    text = json.dumps(body.get("input", [])) + json.dumps(body.get("instructions", ""))
    m = re.search(r"<cwd>([^<]+)</cwd>", text)
    return m.group(1) if m else None


def openai_reply(body):
    """Output items for one Responses request."""
    tools = openai_tool_names(body)
    call_id = "call_mock_" + uuid.uuid4().hex[:12]
    loop = bool(tools) and looping(openai_tool_results(body))
    if not loop and (not tools or openai_has_tool_result(body)):
        return [{"type": "message", "role": "assistant", "id": "msg_mock_" + uuid.uuid4().hex[:8],
                 "status": "completed",
                 "content": [{"type": "output_text", "text": ARGS.final_text, "annotations": []}]}]
    path = ARGS.edit_path
    if loop:
        cmd = ARGS.loop_command
    elif ARGS.scenario == "denied":
        cmd = ARGS.deny_command
    elif "apply_patch" in tools:
        patch = "*** Begin Patch\n*** Add File: %s\n%s*** End Patch\n" % (
            path, "".join("+" + line + "\n" for line in ARGS.edit_content.splitlines()))
        tool = next(t for t in body.get("tools", []) if (t.get("name") or t.get("type")) == "apply_patch")
        if tool.get("type") == "custom":
            return [{"type": "custom_tool_call", "id": "ctc_mock_" + uuid.uuid4().hex[:8],
                     "status": "completed", "call_id": call_id, "name": "apply_patch", "input": patch}]
        return [{"type": "function_call", "id": "fc_mock_" + uuid.uuid4().hex[:8], "status": "completed",
                 "call_id": call_id, "name": "apply_patch", "arguments": json.dumps({"input": patch})}]
    else:
        cmd = "printf '%%s\\n' %s > %s" % (shell_quote(ARGS.edit_content), shell_quote(path))
    name = next((n for n in ("shell_command", "exec_command", "shell") if n in tools), "shell")
    if name == "shell":
        args = {"command": ["bash", "-lc", cmd]}
    elif name == "exec_command":
        args = {"cmd": cmd}
    else:
        args = {"command": cmd}
    if ARGS.scenario == "denied" and ARGS.escalate:
        # Ask to run outside the sandbox: `codex exec` (approval "never") has to refuse.
        args["sandbox_permissions"] = "require_escalated"
        args["justification"] = "Run the tests outside the sandbox?"
    wd = openai_workdir(body)
    if wd and name != "exec_command":
        args["workdir"] = wd
    return [{"type": "function_call", "id": "fc_mock_" + uuid.uuid4().hex[:8], "status": "completed",
             "call_id": call_id, "name": name, "arguments": json.dumps(args)}]


def shell_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def openai_item_events(items):
    events = []
    for i, item in enumerate(items):
        events.append(("response.output_item.added", {"type": "response.output_item.added",
                                                      "output_index": i, "item": item}))
        if item["type"] == "message":
            events.append(("response.output_text.delta", {
                "type": "response.output_text.delta", "item_id": item["id"], "output_index": i,
                "content_index": 0, "delta": item["content"][0]["text"]}))
        events.append(("response.output_item.done", {"type": "response.output_item.done",
                                                     "output_index": i, "item": item}))
    return events


def handle_openai(h, body):
    if BACKEND is not None:
        return real_openai(h, body)
    if failed(h, openai_error):
        return None
    items = openai_reply(body)
    resp_id = "resp_mock_" + uuid.uuid4().hex[:16]
    if stalls(openai_has_tool_result(body)):
        return stall(h, "response.created", {"type": "response.created", "response": {
            "id": resp_id, "object": "response", "created_at": int(time.time()),
            "model": body.get("model", "gpt-5"), "status": "in_progress", "output": []}})
    usage = {"input_tokens": USAGE["input"], "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": USAGE["output"], "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": USAGE["input"] + USAGE["output"]}
    base = {"id": resp_id, "object": "response", "created_at": int(time.time()),
            "model": body.get("model", "gpt-5"), "status": "in_progress", "output": []}
    events = [("response.created", {"type": "response.created", "response": base})]
    events.extend(openai_item_events(items))
    done = dict(base, status="completed", output=items, usage=usage)
    events.append(("response.completed", {"type": "response.completed", "response": done}))
    h.send_sse(events)


# ---------------------------------------------------------------- OpenAI Chat Completions


def handle_chat(h, body):
    """OpenAI's Chat Completions, as aider (through litellm) calls it with --no-stream: every
    request is answered with the edit in aider's `whole` format (the file's path, then its new
    text in a fence), which aider applies itself; the scenario's failures as the Responses API's."""
    if failed(h, openai_error):
        return None
    text = "%s\n```\n%s\n```\n" % (ARGS.edit_path, ARGS.edit_content)
    usage = {"prompt_tokens": USAGE["input"], "completion_tokens": USAGE["output"],
             "total_tokens": USAGE["input"] + USAGE["output"]}
    h.send_json(200, {
        "id": "chatcmpl-mock" + uuid.uuid4().hex[:12], "object": "chat.completion",
        "created": int(time.time()), "model": body.get("model", "mock"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": usage})


# ---------------------------------------------------------------- Gemini


def gemini_error(status):
    code, st, msg = {
        429: (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota). (mock)"),
        529: (503, "UNAVAILABLE", "The model is overloaded. Please try again later. (mock)"),
        500: (500, "INTERNAL", "An internal error has occurred. (mock)"),
        401: (401, "UNAUTHENTICATED", "Request had invalid authentication credentials. (mock)"),
        400: (400, "INVALID_ARGUMENT", "Request contains an invalid argument. (mock)"),
        "badkey": (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key. (mock)"),
    }[status]
    err = {"error": {"code": code, "message": msg, "status": st}}
    if status == "badkey":
        err["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                    "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]
    if status == 429 and ARGS.retry_after is not None:
        err["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                    "retryDelay": "%ds" % ARGS.retry_after}]
    return code, err


def gemini_has_tool_result(body):
    for c in body.get("contents", []) or []:
        for p in c.get("parts", []) or []:
            if isinstance(p, dict) and "functionResponse" in p:
                return True
    return False


def gemini_tool_results(body):
    return sum(1 for c in body.get("contents", []) or [] for p in c.get("parts", []) or []
               if isinstance(p, dict) and "functionResponse" in p)


def gemini_tool_names(body):
    names = set()
    for t in body.get("tools", []) or []:
        for f in t.get("functionDeclarations", []) or []:
            names.add(f.get("name"))
    return names


def gemini_workdir(body):
    texts = []
    for c in (body.get("contents") or []) + [body.get("systemInstruction") or {}]:
        for p in (c.get("parts") or []) if isinstance(c, dict) else []:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                texts.append(p["text"])
    m = re.search(r"Workspace Directories:\*\*\n\s*- (/[^\n]+)", "\n".join(texts))
    return m.group(1).strip() if m else None


def gemini_reply(body):
    tools = gemini_tool_names(body)
    gc = body.get("generationConfig") or {}
    if gc.get("responseMimeType") == "application/json" or gc.get("responseJsonSchema") or gc.get("responseSchema"):
        # Internal classifier / next-speaker calls want JSON.
        schema = gc.get("responseJsonSchema") or gc.get("responseSchema") or {}
        return [{"text": json.dumps(gemini_json_for(schema))}]
    if tools and looping(gemini_tool_results(body)):
        return [{"functionCall": {"name": "run_shell_command",
                                  "args": {"command": ARGS.loop_command, "description": "Check the tree"}}}]
    if not tools or gemini_has_tool_result(body):
        return [{"text": ARGS.final_text if tools else "Mock reply."}]
    if ARGS.scenario == "denied":
        return [{"functionCall": {"name": "run_shell_command",
                                  "args": {"command": ARGS.deny_command, "description": "Run the tests"}}}]
    return [{"functionCall": {"name": "write_file",
                              "args": {"file_path": edit_path(gemini_workdir(body)),
                                       "content": ARGS.edit_content}}}]


def gemini_json_for(schema):
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    out = {}
    for k, v in props.items():
        t = v.get("type") if isinstance(v, dict) else None
        t = t.lower() if isinstance(t, str) else t
        if isinstance(v, dict) and v.get("enum"):
            out[k] = "user" if "user" in v["enum"] else v["enum"][0]
        elif t == "string":
            out[k] = "mock"
        elif t in ("number", "integer"):
            out[k] = 0
        elif t == "boolean":
            out[k] = False
        elif t == "array":
            out[k] = []
        else:
            out[k] = {}
    return out


def handle_gemini(h, body, action, model):
    if BACKEND is not None:
        return h.send_json(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                           "message": "mock: --real-model serves Anthropic and OpenAI only"}})
    if action == "countTokens":
        return h.send_json(200, {"totalTokens": USAGE["input"]})
    if action not in ("generateContent", "streamGenerateContent"):
        return h.send_json(404, {"error": {"code": 404, "message": "mock: no " + action, "status": "NOT_FOUND"}})
    if should_fail():
        code, err = gemini_error(error_status())
        return h.send_json(code, err)
    parts = gemini_reply(body)
    if action == "streamGenerateContent" and gemini_tool_names(body) and stalls(gemini_has_tool_result(body)):
        return stall(h, None, {"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"},
                                               "index": 0}], "modelVersion": model})
    chunk = {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP",
                             "index": 0}],
             "usageMetadata": {"promptTokenCount": USAGE["input"], "candidatesTokenCount": USAGE["output"],
                               "totalTokenCount": USAGE["input"] + USAGE["output"]},
             "modelVersion": model, "responseId": "mock" + uuid.uuid4().hex[:12]}
    if action == "generateContent":
        return h.send_json(200, chunk)
    h.send_sse([(None, chunk)])


# ---------------------------------------------------------------- stall


def stalls(has_tool_result):
    """`stall`: whether this streamed model request stops mid-stream (every one after the
    first turn's tool call)."""
    return ARGS.scenario == "stall" and has_tool_result


def stall(h, name, first):
    """Starts the stream with its first event, then says nothing more for --stall-seconds (the
    connection stays open), then closes it."""
    h.begin_sse()
    h.write_event(name, first)
    time.sleep(ARGS.stall_seconds)
    h.close_connection = True


# ---------------------------------------------------------------- real model (--real-model)


def in_background(h, work, first_events, keepalive):
    """Runs work() while the SSE stream stays open: the first events at once, then the
    keepalive event every 10 s so that the CLI's idle timeout does not fire on a slow machine
    (a protocol event, not an SSE comment: Codex's idle timer counts events only, and dropped
    a 5-minute model call with "idle timeout waiting for SSE")."""
    h.begin_sse()
    for name, data in first_events:
        h.write_event(name, data)
    out = {}

    def run():
        try:
            out["value"] = work()
        except Exception as e:  # noqa: BLE001 - reported to the client as a final text
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    while True:
        t.join(10)
        if not t.is_alive():
            break
        h.write_event(*keepalive)
    if "error" in out:
        sys.stderr.write("mock_api: real model error: %r\n" % out["error"])
    return out.get("value")


def real_anthropic(h, body):
    model = body.get("model", "local")
    msg_id = "msg_local_" + uuid.uuid4().hex[:16]
    if not body.get("stream"):
        blocks, stop, fig = real_model.anthropic_blocks(BACKEND, body)
        return h.send_json(200, {
            "id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": fig["input"] - fig["cached"], "output_tokens": fig["output"],
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": fig["cached"]}})
    start = ("message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0}}})
    got = in_background(h, lambda: real_model.anthropic_blocks(BACKEND, body), [start],
                        ("ping", {"type": "ping"}))
    blocks, stop, fig = got or ([{"type": "text", "text": "(the local model failed)"}], "end_turn",
                                {"input": 0, "cached": 0, "output": 0})
    for i, b in enumerate(blocks):
        for name, data in anthropic_block_events(i, b):
            h.write_event(name, data)
    h.write_event("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": stop, "stop_sequence": None},
                                    "usage": {"input_tokens": fig["input"] - fig["cached"],
                                              "cache_read_input_tokens": fig["cached"],
                                              "output_tokens": fig["output"]}})
    h.write_event("message_stop", {"type": "message_stop"})
    h.close_connection = True


def real_openai(h, body):
    resp_id = "resp_local_" + uuid.uuid4().hex[:16]
    base = {"id": resp_id, "object": "response", "created_at": int(time.time()),
            "model": body.get("model", "local"), "status": "in_progress", "output": []}
    got = in_background(h, lambda: real_model.openai_items(BACKEND, body),
                        [("response.created", {"type": "response.created", "response": base})],
                        ("response.in_progress", {"type": "response.in_progress", "response": base}))
    items, fig = got or ([{"type": "message", "role": "assistant", "id": "msg_local_x",
                           "status": "completed", "content": [{"type": "output_text",
                           "text": "(the local model failed)", "annotations": []}]}],
                         {"input": 0, "cached": 0, "output": 0})
    for name, data in openai_item_events(items):
        h.write_event(name, data)
    usage = {"input_tokens": fig["input"], "input_tokens_details": {"cached_tokens": fig["cached"]},
             "output_tokens": fig["output"], "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": fig["input"] + fig["output"]}
    done = dict(base, status="completed", output=items, usage=usage)
    h.write_event("response.completed", {"type": "response.completed", "response": done})
    h.close_connection = True


# ---------------------------------------------------------------- HTTP plumbing


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        if ARGS.verbose:
            sys.stderr.write("mock_api: " + (fmt % a) + "\n")

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_mock_" + uuid.uuid4().hex[:12])
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def begin_sse(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.send_header("request-id", "req_mock_" + uuid.uuid4().hex[:12])
        self.end_headers()

    def write_event(self, name, data):
        chunk = ""
        if name:
            chunk += "event: %s\n" % name
        chunk += "data: %s\n\n" % json.dumps(data)
        self.wfile.write(chunk.encode())
        self.wfile.flush()

    def send_sse(self, events):
        self.begin_sse()
        for name, data in events:
            self.write_event(name, data)
        self.close_connection = True

    def read_body(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.headers.get("content-encoding") == "gzip":
            import gzip
            raw = gzip.decompress(raw)
        elif self.headers.get("content-encoding") == "zstd":
            return "<zstd body>"
        return raw.decode("utf-8", "replace")

    def do_GET(self):
        log_request(self, "")
        path = urlparse(self.path).path
        if path in ("/v1/models", "/models"):
            return self.send_json(200, {"object": "list", "data": [], "models": []})
        self.send_json(404, {"error": {"message": "mock: no GET " + path}})

    def do_HEAD(self):
        log_request(self, "")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        text = self.read_body()
        log_request(self, text)
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = {}
        path = urlparse(self.path).path
        if path.endswith("/v1/messages"):
            return handle_anthropic(self, body)
        if path.endswith("/v1/messages/count_tokens"):
            return self.send_json(200, {"input_tokens": USAGE["input"]})
        if path.endswith("/responses"):
            return handle_openai(self, body)
        if path.endswith("/chat/completions"):
            return handle_chat(self, body)
        m = re.search(r"/models/([^/:]+):(\w+)$", path)
        if m:
            return handle_gemini(self, body, m.group(2), m.group(1))
        self.send_json(404, {"error": {"message": "mock: no POST " + path}})


def main():
    global ARGS, BACKEND
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="ok",
                    choices=["ok", "denied", "429", "529", "500", "401", "400", "badkey", "loop",
                             "stall"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    ap.add_argument("--fail-count", type=int, default=2)
    ap.add_argument("--fail-seconds", type=float)
    ap.add_argument("--retry-after", type=int)
    ap.add_argument("--edit-path", default="hello.txt")
    ap.add_argument("--edit-content", default="hello from the mock model")
    ap.add_argument("--edit-old", help="Anthropic: an Edit of --edit-path replacing this text "
                    "with --edit-content, instead of a Write")
    ap.add_argument("--deny-command", default="cargo test --quiet")
    ap.add_argument("--escalate", action="store_true",
                    help="denied, Codex: the shell call asks for sandbox_permissions=require_escalated")
    ap.add_argument("--loop-command", default="git status --short",
                    help="loop: the shell command called again and again")
    ap.add_argument("--loop-times", type=int, default=0,
                    help="loop: the final message once the request carries this many tool results (0: never)")
    ap.add_argument("--stall-seconds", type=float, default=3600.0,
                    help="stall: how long a stalled stream stays silent before it is closed")
    ap.add_argument("--final-text", default="Done: wrote the file.")
    ap.add_argument("--verbose", action="store_true")
    real = ap.add_argument_group("real model (tests/mock_api/real_model.py)")
    real.add_argument("--real-model", metavar="GGUF",
                      help="answer with this local model instead of --scenario")
    real.add_argument("--real-log", help="append each model call (tokens, seconds, reply) here")
    real.add_argument("--seed", type=int, default=1234)
    real.add_argument("--temperature", type=float, default=0.2)
    real.add_argument("--max-tokens", type=int, default=1536, help="per reply")
    real.add_argument("--max-turns", type=int, default=12,
                      help="tool calls per conversation; then only a final reply is allowed")
    real.add_argument("--timeout-s", type=int, default=300, help="per reply")
    real.add_argument("--ctx", type=int, default=16384, help="context window, tokens")
    real.add_argument("--threads", type=int, default=2)
    real.add_argument("--optional-params", action="store_true",
                      help="offer the tools' optional parameters too (by default only the required ones)")
    real.add_argument("--keep-tools", help="comma list of tools to offer that are left out by default")
    ARGS = ap.parse_args()
    if ARGS.real_model:

        import os
        if not os.path.isfile(ARGS.real_model):
            sys.exit("mock_api: --real-model %s: no such file" % ARGS.real_model)
        BACKEND = real_model.Backend(ARGS)
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if ARGS.port_file:
        tmp = ARGS.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        import os
        os.rename(tmp, ARGS.port_file)
    print(port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
