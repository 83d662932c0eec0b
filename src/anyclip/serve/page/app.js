// anyclip serve's page: text and image search, zero-shot classify. No external scripts.
"use strict";
const $ = (id) => document.getElementById(id);

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function api(path, body) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
  return data;
}

function readAsDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function thumbnail(img, url) {
  const response = await fetch(url, { headers: headers() });
  if (response.ok) img.src = URL.createObjectURL(await response.blob());
}

function showResults(results) {
  const list = $("results");
  list.replaceChildren();
  for (const hit of results) {
    const item = document.createElement("li");
    item.dataset.id = hit.id || "";
    const img = document.createElement("img");
    img.alt = hit.caption || hit.name || ("result " + hit.rank);
    if (hit.thumbnail_url) thumbnail(img, hit.thumbnail_url);
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = "#" + hit.rank + "  " + hit.score.toFixed(3);
    const caption = document.createElement("div");
    caption.className = "caption";
    caption.textContent = hit.caption || hit.name || hit.id;
    item.append(img, score, caption);
    list.append(item);
  }
}

async function search(body, what) {
  $("search-status").textContent = "searching " + what + "…";
  try {
    const data = await api("/v1/search", { ...body, top_k: 12 });
    showResults(data.results);
    $("search-status").textContent = data.results.length + " results for " + what;
  } catch (error) {
    $("search-status").textContent = "error: " + error.message;
  }
}

function dropZone(zone, input, onFile) {
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) onFile(e.dataTransfer.files[0]);
  });
  input.addEventListener("change", () => { if (input.files.length) onFile(input.files[0]); });
}

$("text-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("query").value.trim();
  if (text) search({ text }, "“" + text + "”");
});

dropZone($("search-drop"), $("search-file"), async (file) => {
  search({ image: await readAsDataURL(file) }, file.name);
});

let classifyImage = null;
dropZone($("classify-drop"), $("classify-file"), async (file) => {
  classifyImage = await readAsDataURL(file);
  $("classify-preview").src = classifyImage;
  $("classify-preview").alt = "image to classify: " + file.name;
  $("classify-preview").hidden = false;
  $("classify-status").textContent = file.name + " ready; press Classify";
});

$("classify-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const labels = $("labels").value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
  if (!classifyImage) { $("classify-status").textContent = "choose an image first"; return; }
  $("classify-status").textContent = "classifying…";
  try {
    const data = await api("/v1/classify", { images: [classifyImage], labels });
    const list = $("predictions");
    list.replaceChildren();
    for (const p of data.results[0].predictions) {
      const item = document.createElement("li");
      item.dataset.label = p.label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.round(p.prob * 200) + "px";
      bar.setAttribute("aria-hidden", "true");
      item.append(p.label + ": " + (100 * p.prob).toFixed(1) + "%", bar);
      list.append(item);
    }
    $("classify-status").textContent = "top label: " + data.results[0].predictions[0].label;
  } catch (error) {
    $("classify-status").textContent = "error: " + error.message;
  }
});

// Tabs: arrow keys move between them (WAI-ARIA tabs pattern).
const tabs = [$("tab-search"), $("tab-classify")];
function select(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  tab.focus();
}
tabs.forEach((tab, i) => {
  tab.addEventListener("click", () => select(tab));
  tab.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      select(tabs[(i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length]);
    }
  });
});

fetch("/health").then((r) => r.json()).then((h) => {
  $("model-line").textContent = "model " + h.model + (h.index_size != null ? " · " + h.index_size + " images indexed" : "");
}).catch(() => { $("model-line").textContent = "server unreachable"; });
