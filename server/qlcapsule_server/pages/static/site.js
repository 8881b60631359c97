// qlcapsule catalog pages: progressive enhancement only (every page works without this file).
// Text from the server is set with textContent, never innerHTML: event fields come from publishers.
"use strict";

function addCopyButtons() {
  for (const pre of document.querySelectorAll("pre.cmd")) {
    if (!navigator.clipboard) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy the command");
    button.addEventListener("click", () => {
      navigator.clipboard.writeText(pre.textContent).then(() => { button.textContent = "Copied"; });
    });
    pre.after(button);
  }
}

const ICONS = { delivered: "✓", failed: "✗", planned: "○", uploading: "↑", verifying: "…" };

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function eventRow(e) {
  const row = document.createElement("tr");
  row.dataset.id = String(e.id);
  row.className = "fresh";
  cell(row, String(e.id));
  cell(row, e.at);
  const where = cell(row, "");
  const link = document.createElement("a");
  link.href = "/capsules/" + encodeURIComponent(e.capsule) + "/versions/" + encodeURIComponent(e.version);
  link.textContent = e.capsule + "@" + e.version;
  where.appendChild(link);
  cell(row, e.target + " (" + e.provider + ")");
  const step = cell(row, "");
  const status = document.createElement("span");
  status.className = "status status-" + String(e.status).replace(/[^a-z]/g, "");
  const icon = document.createElement("span");
  icon.setAttribute("aria-hidden", "true");
  icon.textContent = ICONS[e.status] || "•";
  status.append(icon, " " + e.status);
  step.appendChild(status);
  cell(row, e.bytes === null || e.bytes === undefined ? "" : String(e.bytes), "num");
  cell(row, e.detail || "");
  return row;
}

function live() {
  const table = document.getElementById("events");
  if (!table || !window.EventSource) return;
  const state = document.getElementById("live-state");
  const body = table.tBodies[0];
  const source = new EventSource(table.dataset.stream);
  source.addEventListener("open", () => {
    state.textContent = "Live: new delivery events appear at the top.";
    state.dataset.state = "live";
  });
  source.addEventListener("error", () => {
    state.textContent = "Reconnecting to the event stream…";
    state.dataset.state = "reconnecting";
  });
  source.addEventListener("delivery", (message) => {
    const e = JSON.parse(message.data);
    if (body.querySelector('tr[data-id="' + Number(e.id) + '"]')) return;
    body.insertBefore(eventRow(e), body.firstChild);
    while (body.rows.length > 200) body.deleteRow(-1);
    const none = document.getElementById("no-events");
    if (none) none.remove();
    state.textContent = "Live: " + e.capsule + "@" + e.version + " to " + e.target + ": " + e.status;
  });
}

document.addEventListener("DOMContentLoaded", () => { addCopyButtons(); live(); });
