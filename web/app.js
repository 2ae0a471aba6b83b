// The demo's logic: sends the conversation to this gateway's /v1/chat/completions with
// "stream": true, reads the server-sent events with fetch()'s streaming reader, and draws each
// chunk by its "microlm" object (local vs cloud words, hedge, pivot, retract, error, timings).
// No framework and no build step; nothing here knows a token or key unless the user types one.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  history: [],   // [{role, content}] of finished turns, as shown
  busy: false,
};

// ---- Server-sent events ----------------------------------------------------------------

// Splits a byte stream into SSE events and yields each event's data (multi-line data joined
// by "\n"); tolerant of \r\n and of events split anywhere across reads.
async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) yield data;
    }
  }
}

// ---- Drawing one reply -----------------------------------------------------------------

class Reply {
  constructor(userText) {
    const turn = document.createElement("div");
    turn.className = "turn";
    const user = document.createElement("div");
    user.className = "user";
    user.textContent = userText;
    this.el = document.createElement("div");
    this.el.className = "reply";
    turn.append(user, this.el);
    $("transcript").append(turn);
    turn.scrollIntoView({ block: "end" });
    this.shown = "";  // the reply as it now reads (a retract replaces it)
  }

  span(text, source, event, extraClass) {
    const s = document.createElement("span");
    s.className = [source, extraClass].filter(Boolean).join(" ");
    s.dataset.source = source;
    s.dataset.event = event;
    s.textContent = text;
    this.el.append(s);
    return s;
  }

  marker(kind, label, title) {
    const m = document.createElement("span");
    m.className = `marker ${kind}`;
    m.dataset.event = kind;
    m.textContent = label;
    if (title) m.title = title;
    this.el.append(m);
    return m;
  }

  // One chunk: its delta text and its microlm object.
  apply(text, m) {
    switch (m.event) {
      case "opener":
        this.span(text, "local", "opener", "opener");
        this.shown += text;
        break;
      case "hedge":
        // The words already shown are the hedge phrase: the μLM was unsure of its own opener.
        for (const s of this.el.querySelectorAll("span.local.opener")) s.classList.add("hedged");
        this.marker("hedge", "hedge", "The local model was unsure, so it said a neutral phrase instead");
        break;
      case "pivot":
        this.marker("pivot", "pivot", "The cloud judged the opener off; it bridges to the right answer");
        this.span(text, m.source, "pivot", "pivot");
        this.shown += text;
        break;
      case "retract":
        // Everything shown so far is struck through and the cloud's replacement follows.
        for (const s of this.el.querySelectorAll("span.local, span.cloud")) s.classList.add("retracted");
        this.marker("retract", "retract", "The cloud replaced the opener");
        this.span(" " + (m.text ?? text.trimStart()), m.source, "retract", "replacement");
        this.shown = m.text ?? text.trimStart();
        break;
      case "continuation":
        // Cloud text, or the local model closing the sentence after a cloud failure.
        this.span(text, m.source, "continuation", m.source === "local" ? "close" : "");
        this.shown += text;
        break;
      case "error": {
        const e = m.error || {};
        this.marker("error", `cloud error: ${e.kind || "unknown"}`, e.message || "");
        break;
      }
      default:
        if (text) {
          this.span(text, m.source || "cloud", m.event || "continuation");
          this.shown += text;
        }
    }
  }

  fail(message) {
    const e = document.createElement("span");
    e.className = "error-text";
    e.textContent = message;
    this.el.append(e);
  }
}

// ---- Timings ---------------------------------------------------------------------------

function ms(v) {
  return v === null || v === undefined ? "–" : `${Math.round(v)} ms`;
}

function showTimings(t, clientFirstWord, verdict, hedged) {
  $("t-client-first").textContent = ms(clientFirstWord);
  $("t-first-word").textContent = ms(t.first_word_ms);
  $("t-opener").textContent = ms(t.opener_ms);
  $("t-cloud-first").textContent = ms(t.cloud_first_token_ms);
  $("t-stall").textContent = ms(t.stall_ms);
  $("t-total").textContent = ms(t.total_ms);
  $("t-verdict").textContent = (verdict || "none") + (hedged ? " (opener hedged)" : "");
}

// ---- One turn --------------------------------------------------------------------------

function headers() {
  const h = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

async function ask(text) {
  state.busy = true;
  $("send").disabled = true;
  const reply = new Reply(text);
  const messages = [...state.history, { role: "user", content: text }];
  const modality = document.querySelector("input[name=modality]:checked").value;
  const body = {
    messages,
    stream: true,
    max_tokens: 160,
    microlm: { modality, cloud_delay_ms: Number($("delay").value) },
  };
  const t0 = performance.now();
  let clientFirstWord = null;
  let finished = false;
  try {
    const res = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!res.ok) {
      let msg = `HTTP ${res.status}`;
      try {
        const j = await res.json();
        if (j.error && j.error.message) msg += `: ${j.error.message}`;
      } catch (_) { /* not JSON */ }
      if (res.status === 401) $("token").closest("details").open = true;
      reply.fail(msg);
      return;
    }
    for await (const data of sseEvents(res.body)) {
      if (data === "[DONE]") {
        finished = true;
        break;
      }
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch (_) {
        reply.fail("the gateway sent an event that is not JSON");
        continue;
      }
      if (chunk.error) {
        reply.fail(chunk.error.message || "error");
        continue;
      }
      const choice = (chunk.choices || [])[0] || {};
      const delta = choice.delta || {};
      const m = chunk.microlm || { source: "cloud", event: "continuation" };
      const content = delta.content || "";
      if (m.event === "opener" && clientFirstWord === null) clientFirstWord = performance.now() - t0;
      if (m.event === "done") {
        showTimings(m.timings || {}, clientFirstWord, m.verdict, m.hedged);
        continue;
      }
      reply.apply(content, m);
    }
    if (!finished) reply.fail("the stream ended without [DONE]");
  } catch (err) {
    reply.fail(`request failed: ${err.message}`);
  } finally {
    state.history.push({ role: "user", content: text });
    if (reply.shown) state.history.push({ role: "assistant", content: reply.shown });
    else state.history.pop();
    state.busy = false;
    $("send").disabled = false;
    reply.el.dataset.done = finished ? "true" : "false";
    $("transcript").dataset.turns = String($("transcript").children.length);
  }
}

// ---- Wiring ----------------------------------------------------------------------------

async function checkHealth() {
  const el = $("health");
  try {
    const res = await fetch("/health", { cache: "no-store" });
    const h = await res.json();
    el.textContent = `local ${h.local_model} · cloud ${h.cloud_model || "(server default)"} · ${h.mode} mode` +
      (h.auth ? " · token required" : "");
    el.classList.remove("bad");
  } catch (_) {
    el.textContent = "the gateway does not answer";
    el.classList.add("bad");
  }
}

function init() {
  $("ask").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || state.busy) return;
    $("prompt").value = "";
    ask(text);
  });
  $("examples").addEventListener("change", () => {
    const v = $("examples").value;
    if (!v) return;
    $("prompt").value = v;
    $("examples").value = "";
    $("prompt").focus();
  });
  const delay = $("delay");
  const showDelay = () => { $("delay-value").textContent = `${delay.value} ms`; };
  delay.addEventListener("input", showDelay);
  showDelay();
  $("clear").addEventListener("click", () => {
    if (state.busy) return;
    state.history = [];
    $("transcript").replaceChildren();
  });
  checkHealth();
}

document.addEventListener("DOMContentLoaded", init);
