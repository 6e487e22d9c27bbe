// The demo page: the bundled G2P model on the words in the box, phonemes, timing and the first
// word's attention heatmap; then the bundled Marian model translating the sentence box, with its
// cross-attention heatmap. window.heedfulDemo.done resolves with the results (web/test.mjs reads
// them), and window.heedfulDemo.marian is the loaded translator.
import { createEngine, loadG2p, loadMarian } from "./heedful.js";

const $ = (id) => document.getElementById(id);
const status = (text, error = false) => {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
};

/** Draws rows[i][j] (the weight output symbol i put on input symbol j) as a grey-to-blue grid with
 *  the output symbols down the left and the input symbols along the bottom, like the CLI's PNG.
 *  Input labels wider than a cell are drawn slanted. */
function drawHeatmap(canvas, { rows, inputs, outputs }) {
  const ctx = canvas.getContext("2d");
  const nr = rows.length;
  const nc = inputs.length;
  const cell = Math.max(14, Math.min(36, Math.floor(520 / Math.max(nc, nr, 1))));
  const font = `${Math.min(14, cell - 2)}px ui-monospace, monospace`;
  ctx.font = font;
  const width = (labels) => Math.max(0, ...labels.map((s) => ctx.measureText(s).width));
  const left = Math.max(60, Math.ceil(width(outputs)) + 12);
  const slant = width(inputs) > cell - 4;
  const top = 10;
  const bottom = slant ? Math.ceil(width(inputs) * 0.87) + 16 : 40;
  canvas.width = left + nc * cell + 10;
  canvas.height = top + nr * cell + bottom;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < nr; i++) {
    for (let j = 0; j < nc; j++) {
      const w = Math.min(1, Math.max(0, rows[i][j] ?? 0));
      const shade = Math.round(255 * (1 - w));
      ctx.fillStyle = `rgb(${shade}, ${shade}, 255)`;
      ctx.fillRect(left + j * cell, top + i * cell, cell - 1, cell - 1);
    }
  }
  ctx.fillStyle = "#222";
  ctx.font = font;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  outputs.forEach((s, i) => ctx.fillText(s, left - 6, top + i * cell + cell / 2));
  const y = top + nr * cell + 6;
  inputs.forEach((s, j) => {
    const x = left + j * cell + cell / 2;
    if (slant) {
      // Hanging down-left from the column at 60 degrees.
      ctx.save();
      ctx.translate(x, y);
      ctx.rotate(-Math.PI / 3);
      ctx.textAlign = "right";
      ctx.fillText(s, 0, 0);
      ctx.restore();
    } else {
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      ctx.fillText(s, x, y);
    }
  });
}

/** SentencePiece's word-start mark shown as `_`, as the CLI's heatmap labels do. */
const piece = (p) => p.replaceAll("\u2581", "_");

/** The bundled Marian model: translates the sentence box (the generation config's beam search)
 *  and draws the first sentence's cross-attention. */
async function translation(engine, adapter) {
  const t0 = performance.now();
  const mt = await loadMarian(engine, "models/marian/");
  const loadMs = performance.now() - t0;
  window.heedfulDemo.marian = mt;
  const info = mt.info();
  let runs = 0;
  const st = (text, error = false) => {
    $("mt-status").textContent = text;
    $("mt-status").className = error ? "error" : "";
  };
  const run = async () => {
    const sentence = $("sentence").value.trim();
    if (!sentence) return null;
    const t = performance.now();
    const [r] = await mt.translate([sentence], { attention: true });
    const ms = performance.now() - t;
    runs++;
    $("translation").textContent = `${sentence} → ${r.text}`;
    const a = r.attention;
    drawHeatmap($("mt-heatmap"), {
      rows: a.rows,
      inputs: a.sourcePieces.map(piece),
      outputs: a.targetPieces.map(piece),
    });
    $("mt-heatmap-title").textContent =
      `cross-attention of decoder layer ${a.layer}, mean of ${info.heads} heads ` +
      `(rows: generated pieces, columns: source pieces)`;
    st(
      `${adapter}: model loaded in ${loadMs.toFixed(0)} ms; translated in ${ms.toFixed(1)} ms ` +
        `(beam ${info.numBeams}, ${r.ids.length - 1} tokens)` +
        (runs === 1 ? " (the first run compiles the kernels)" : ""),
    );
    return { sentence, text: r.text, ids: r.ids, sourcePieces: a.sourcePieces, targetPieces: a.targetPieces, ms };
  };
  $("translate").onclick = () => run().catch((e) => st(String(e), true));
  return { info, ...((await run()) ?? {}) };
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
    const first = results[0];
    drawHeatmap($("heatmap"), { rows: first.attention, inputs: first.inputs, outputs: first.outputs });
    $("heatmap-title").textContent =
      `${first.word} -> ${first.phonemes} (rows: phonemes, columns: letters)`;
    status(
      `${adapter}: model loaded in ${loadMs.toFixed(0)} ms; ${words.length} words in ` +
        `${ms.toFixed(1)} ms` +
        (runs === 1 ? " (the first run compiles the kernels; press Convert to time a warm run)" : ""),
    );
    return results.map((r) => ({ word: r.word, phonemes: r.phonemes, ended: r.ended, ms }));
  };
  $("run").onclick = () => convert().catch((e) => status(String(e), true));
  const results = await convert();
  // The translation section fails on its own: the G2P results stand.
  const mt = await translation(engine, adapter).catch((e) => {
    $("mt-status").textContent = `error: ${e?.message ?? e}`;
    $("mt-status").className = "error";
    return { error: String(e?.message ?? e) };
  });
  return { info, results, translation: mt };
}

window.heedfulDemo = {};
window.heedfulDemo.done = main().catch((e) => {
  status(`error: ${e?.message ?? e}`, true);
  throw e;
});
