// The web demo's page logic (a separate file: the server's Content-Security-Policy allows no inline script).
// A token for POST /prompt comes from the page address: http://host:8080/#token=SECRET (never sent in a URL).
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";

function show(text) { document.getElementById("message").textContent = text; }

document.getElementById("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const prompts = document.getElementById("prompt").value.split(";").map(s => s.trim()).filter(Boolean);
  const headers = {"Content-Type": "application/json"};
  if (token) headers["X-SSP-Token"] = token;
  try {
    const r = await fetch("/prompt", {method: "POST", headers, body: JSON.stringify({prompts})});
    show(r.ok ? "" : (await r.json()).error);
  } catch (err) { show("server not reachable"); }
});

async function poll() {
  try {
    const s = await (await fetch("/status")).json();
    document.getElementById("status").textContent =
      `${s.frames} frames, ${s.fps} FPS\n` + s.results.map(r =>
        `${r.prompt}: ${r.exists ? "found" : "not found"} (score ${r.score}, ${r.area} px)`).join("\n") +
      (s.error ? `\nerror: ${s.error}` : "");
  } catch (err) { document.getElementById("status").textContent = "server not reachable"; }
  setTimeout(poll, 1000);
}
poll();
