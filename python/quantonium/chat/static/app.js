// The chat page of `quantonium serve`: streams replies from /v1/chat/completions (server-sent
// events), lists the models from /v1/models and shows the figures of /status every 2 seconds.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;
let models = [];

function fmtBytes(n) {
  if (n == null) return "n/a";
  const units = [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]];
  for (const [u, s] of units) if (n >= s) return (n / s).toFixed(1) + " " + u;
  return n + " B";
}
const num = (v, d, unit) => (v == null ? "n/a" : v.toFixed(d) + (unit || ""));
const secs = (v) => (v == null ? "n/a" : v < 1 ? (v * 1000).toFixed(0) + " ms" : v.toFixed(2) + " s");

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(who, body);
  $("messages").append(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

function setMeta(div, text) {
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = text;
  div.append(meta);
}

async function loadModels() {
  const r = await fetch("/v1/models");
  models = (await r.json()).data;
  const sel = $("model");
  sel.textContent = "";
  const auto = models.find((m) => m.auto);
  const opt = new Option("auto" + (auto ? " → " + auto.id : ""), "auto");
  sel.append(opt);
  for (const m of models) {
    const o = new Option(`${m.id} (${fmtBytes(m.file_bytes)}, ${m.fidelity})`, m.id);
    if (!m.chat) { o.disabled = true; o.textContent += " - cannot chat"; }
    sel.append(o);
  }
}

function selectedName() {
  const v = $("model").value;
  if (v !== "auto") return v;
  const auto = models.find((m) => m.auto);
  return auto ? auto.id : null;
}

async function refreshStatus() {
  try {
    const s = await (await fetch("/status")).json();
    const name = selectedName();
    const m = s.models.find((x) => x.name === name) || s.models[0];
    const rows = [
      ["model", m.name + (m.name === s.server.auto ? " (auto)" : "")],
      ["kind", m.kind + ", " + m.architecture],
      ["file", `${fmtBytes(m.file_bytes)}, ${num(m.bpw, 3)} bpw`],
      ["ratio", m.ratio_vs_source == null ? "n/a" : m.ratio_vs_source.toFixed(2) + "x vs source"],
      ["fidelity", m.fidelity],
      ["loaded", m.loaded ? `yes, in ${num(m.load_seconds, 1, " s")} (${m.dtype})` : "not yet"],
      ["weights", m.loaded ? fmtBytes(m.weights_bytes) : "needs " + fmtBytes(m.memory_need_bytes)],
      ["requests", m.loaded ? `${m.requests} (${m.cancelled} stopped, ${m.queued} queued, ${m.active} running)` : "0"],
      ["tokens", m.loaded ? `${m.prompt_tokens} in, ${m.completion_tokens} out` : "0"],
      ["tokens/s", m.loaded ? `${num(m.tokens_per_s_last, 1)} last, ${num(m.tokens_per_s_median, 1)} median` : "n/a"],
      ["first token", m.loaded ? `${secs(m.ttft_s_last)} last, ${secs(m.ttft_s_median)} median` : "n/a"],
    ];
    fill("status-model", rows);
    fill("status-server", [
      ["memory", `RSS ${fmtBytes(s.server.rss_bytes)}, peak ${fmtBytes(s.server.peak_rss_bytes)}`],
      ["models", `${s.models.length} (${s.models.filter((x) => x.loaded).length} loaded)`],
      ["uptime", num(s.server.uptime_s, 0, " s")],
    ]);
    $("status-time").textContent = new Date().toLocaleTimeString();
  } catch (e) {
    $("status-time").textContent = "status unavailable";
  }
}

function fill(id, rows) {
  const el = $(id);
  el.textContent = "";
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    el.append(dt, dd);
  }
}

async function send(text) {
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const div = addMessage("assistant", "");
  div.classList.add("streaming");
  div.dataset.chunks = "0";
  div.dataset.done = "false";
  const out = div.querySelector(".text");
  controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  let reply = "";
  let finish = null;
  let extra = null;
  try {
    const body = {
      model: $("model").value, messages: history, stream: true, stream_options: { include_usage: true },
      max_tokens: parseInt($("max-tokens").value, 10) || 256, temperature: parseFloat($("temperature").value) || 0,
    };
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: controller.signal,
    });
    if (!r.ok) {
      const err = await r.json().catch(() => ({ error: { message: r.statusText } }));
      throw new Error(err.error.message);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    let usage = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const obj = JSON.parse(data);
        if (obj.error) throw new Error(obj.error.message);
        if (obj.usage) usage = obj.usage;
        if (obj.quantonium) extra = obj.quantonium;
        for (const c of obj.choices || []) {
          if (c.delta && c.delta.content) {
            reply += c.delta.content;
            out.textContent = reply;
            div.dataset.chunks = String(parseInt(div.dataset.chunks, 10) + 1);
            $("messages").scrollTop = $("messages").scrollHeight;
          }
          if (c.finish_reason) finish = c.finish_reason;
        }
      }
    }
    const parts = [selectedName(), usage ? usage.completion_tokens + " tokens" : null,
      extra && extra.tokens_per_s != null ? extra.tokens_per_s.toFixed(1) + " tok/s" : null,
      extra && extra.ttft_s != null ? "first token " + secs(extra.ttft_s) : null,
      finish ? "finish: " + finish : null];
    setMeta(div, parts.filter(Boolean).join(" · "));
  } catch (e) {
    if (e.name === "AbortError") {
      setMeta(div, "stopped");
    } else {
      div.classList.add("error");
      setMeta(div, "error: " + e.message);
    }
  } finally {
    history.push({ role: "assistant", content: reply });
    div.classList.remove("streaming");
    div.dataset.done = "true";
    $("send").disabled = false;
    $("stop").disabled = true;
    controller = null;
    refreshStatus();
    setTimeout(refreshStatus, 500); // a stopped generation ends on the server a moment later
  }
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || controller) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("composer").requestSubmit(); }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("new-chat").addEventListener("click", () => { history.length = 0; $("messages").textContent = ""; });
$("model").addEventListener("change", refreshStatus);

loadModels().then(refreshStatus);
setInterval(refreshStatus, 2000);
