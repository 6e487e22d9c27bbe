// The demo page: the bundled G2P model on the words in the box, phonemes, timing and the first
// word's attention heatmap. window.heedfulDemo.done resolves with the results (web/test.mjs reads
// them).
import { createEngine, loadG2p } from "./heedful.js";

const $ = (id) => document.getElementById(id);
const status = (text, error = false) => {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
};

/** Draws attention[row][col] as a grey-to-blue grid with the output symbols down the left and the
 *  input symbols along the bottom, like the CLI's PNG. */
function drawHeatmap(canvas, r) {
  const ctx = canvas.getContext("2d");
  const rows = r.attention.length;
  const cols = r.inputs.length;
  const cell = Math.max(14, Math.min(36, Math.floor(520 / Math.max(cols, rows, 1))));
  const left = 60, top = 10, bottom = 40;
  canvas.width = left + cols * cell + 10;
  canvas.height = top + rows * cell + bottom;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < rows; i++) {
    const row = r.attention[i];
    for (let j = 0; j < cols; j++) {
      const w = Math.min(1, Math.max(0, row[j] ?? 0));
      const shade = Math.round(255 * (1 - w));
      ctx.fillStyle = `rgb(${shade}, ${shade}, 255)`;
      ctx.fillRect(left + j * cell, top + i * cell, cell - 1, cell - 1);
    }
  }
  ctx.fillStyle = "#222";
  ctx.font = `${Math.min(14, cell - 2)}px monospace`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  r.outputs.forEach((s, i) => ctx.fillText(s, left - 6, top + i * cell + cell / 2));
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  r.inputs.forEach((s, j) => ctx.fillText(s, left + j * cell + cell / 2, top + rows * cell + 6));
  $("heatmap-title").textContent = `${r.word} -> ${r.phonemes} (rows: phonemes, columns: letters)`;
}

async function main() {
  const t0 = performance.now();
  const engine = await createEngine();
  const info = engine.info();
  const g2p = await loadG2p(engine, "models/g2p_rnn_dot.safetensors");
  const loadMs = performance.now() - t0;
  const adapter = `${info.adapter || "WebGPU adapter"} (${info.backend}, f16 ${info.f16})`;
  let runs = 0;
  const convert = async () => {
    const words = $("words").value.split(/\s+/).filter((w) => w);
    if (words.length === 0) return [];
    const t = performance.now();
    const results = await g2p.run(words);
    const ms = performance.now() - t;
    runs++;
    const body = $("results").querySelector("tbody");
    body.replaceChildren(
      ...results.map((r) => {
        const tr = document.createElement("tr");
        for (const v of [r.word, r.phonemes]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.append(td);
        }
        return tr;
      }),
    );
    drawHeatmap($("heatmap"), results[0]);
    status(
      `${adapter}: model loaded in ${loadMs.toFixed(0)} ms; ${words.length} words in ` +
        `${ms.toFixed(1)} ms` +
        (runs === 1 ? " (the first run compiles the kernels; press Convert to time a warm run)" : ""),
    );
    return results.map((r) => ({ word: r.word, phonemes: r.phonemes, ended: r.ended, ms }));
  };
  $("run").onclick = () => convert().catch((e) => status(String(e), true));
  return { info, results: await convert() };
}

window.heedfulDemo = {
  done: main().catch((e) => {
    status(`error: ${e?.message ?? e}`, true);
    throw e;
  }),
};
