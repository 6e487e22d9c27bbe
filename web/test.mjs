// Drives the demo page in headless Chromium (web/test.sh starts the server and writes the native
// answers to web/out/). Usage: node test.mjs URL SENTENCE...
import { chromium } from "playwright-core";
import { readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, ...sentences] = process.argv.slice(2);
let passed = 0;
let failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "pass" : "FAIL"}  ${name}${detail ? "  " + detail : ""}`);
};

const native = new Map(
  readFileSync("out/native_g2p.tsv", "utf8")
    .trim()
    .split("\n")
    .map((l) => l.split("\t")),
);
const nativeEmb = JSON.parse(readFileSync("out/native_embed.json", "utf8")).embeddings;
const mtSentences = readFileSync("out/mt_sentences.txt", "utf8").trimEnd().split("\n");
const nativeMt = Object.fromEntries(
  [1, 4].map((b) => [b, JSON.parse(readFileSync(`out/native_mt_beam${b}.json`, "utf8")).translations]),
);
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const userDataDir = mkdtempSync(join(tmpdir(), "heedful-chromium-"));
// WebGPU headless on a machine without a GPU: Chromium's SwiftShader adapter (Dawn blocklists
// lavapipe as a CPU adapter). No network beyond the page's own origin.
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu-sandbox",
    "--enable-unsafe-webgpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = context.pages()[0] ?? (await context.newPage());
page.on("console", (m) => {
  // A 404 is how the loader learns that an optional file (special_tokens_map.json) is absent.
  if (m.type() === "error" && !/status of 404/.test(m.text())) console.log(`page console: ${m.text()}`);
});
page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
try {
  await page.goto(url + "index.html");
  const demo = await page.evaluate(() => window.heedfulDemo.done);
  console.log(`page adapter: ${JSON.stringify(demo.info)}`);
  check("demo page converts every word", demo.results.length === native.size,
    `${demo.results.length} of ${native.size}`);
  for (const r of demo.results) {
    const want = native.get(r.word);
    check(`phonemes of ${r.word}`, r.phonemes === want, `page "${r.phonemes}" native "${want}"`);
  }
  // A second, warm run through the page's button: the same phonemes, and its timing shown.
  await page.click("#run");
  await page.waitForFunction(() => !document.getElementById("status").textContent.includes("first run"));
  const warm = await page.evaluate(() => document.getElementById("status").textContent);
  console.log(`page status after a warm run: ${warm}`);
  check("warm run shows its timing", /\d+ words in [\d.]+ ms/.test(warm), warm);
  const heat = await page.evaluate(() => {
    const c = document.getElementById("heatmap");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let blue = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 2] === 255 && d[i] < 200) blue++;
    return { w: c.width, h: c.height, blue };
  });
  check("heatmap drawn", heat.blue > 50, JSON.stringify(heat));

  const emb = await page.evaluate(async (texts) => {
    const { createEngine, loadBert } = await import("./heedful.js");
    const engine = await createEngine();
    const bert = await loadBert(engine, "models/minilm/");
    return (await bert.embed(texts)).map((v) => Array.from(v));
  }, sentences);
  check("one embedding per sentence", emb.length === nativeEmb.length,
    `${emb.length} of ${nativeEmb.length}`);
  emb.forEach((v, i) => {
    const w = nativeEmb[i] ?? [];
    let maxAbs = v.length === w.length ? 0 : Infinity;
    for (let j = 0; j < Math.min(v.length, w.length); j++) maxAbs = Math.max(maxAbs, Math.abs(v[j] - w[j]));
    check(`embedding ${i} within 1e-4 of native`, maxAbs <= 1e-4, `max abs diff ${maxAbs.toExponential(2)} (dim ${v.length})`);
  });

  // Translation: the demo's own run (its sentence box, generation_config.json's beam 4) ...
  const t = demo.translation ?? { error: "no translation in the demo's results" };
  check("demo page translates", !t.error, t.error ?? "");
  if (!t.error) {
    const i = mtSentences.indexOf(t.sentence);
    const want = nativeMt[4][i];
    check(`demo translation of "${t.sentence}" equals native beam 4`, i >= 0 && same(t.ids, want?.ids),
      `page ${JSON.stringify(t.ids)} "${t.text}" native ${JSON.stringify(want?.ids)} "${want?.text}"`);
  }
  // ... then every sentence in one batch through the page's translator, greedy and beam 4.
  const mt = await page.evaluate(async (texts) => {
    const m = window.heedfulDemo.marian;
    const out = {};
    for (const beams of [1, 4]) {
      const t0 = performance.now();
      out[beams] = (await m.translate(texts, { beams })).map((r) => ({ text: r.text, ids: r.ids }));
      out[`ms${beams}`] = performance.now() - t0;
    }
    return out;
  }, mtSentences);
  for (const beams of [1, 4]) {
    console.log(`page: ${mtSentences.length} sentences, beam ${beams}, in ${mt[`ms${beams}`].toFixed(0)} ms`);
    mtSentences.forEach((s, i) => {
      const [got, want] = [mt[beams][i], nativeMt[beams][i]];
      check(`beam ${beams} ids of "${s}" equal native`, same(got?.ids, want?.ids) && got?.text === want?.text,
        `page ${JSON.stringify(got?.ids)} "${got?.text}" native ${JSON.stringify(want?.ids)} "${want?.text}"`);
    });
  }
  // The longest sentence through the page's box and button: its translation shown, and a
  // heatmap of source pieces x generated pieces whose rows are attention distributions.
  const long = mtSentences.reduce((a, b) => (b.length > a.length ? b : a));
  await page.fill("#sentence", long);
  await page.click("#translate");
  const wantLong = nativeMt[4][mtSentences.indexOf(long)];
  await page.waitForFunction(
    (s) => document.getElementById("translation").textContent.startsWith(s + " →"), long);
  const shown = await page.evaluate(() => document.getElementById("translation").textContent);
  check("translate button shows the native beam-4 text", shown === `${long} → ${wantLong.text}`, shown);
  const att = await page.evaluate(async (s) => {
    const [r] = await window.heedfulDemo.marian.translate([s], { attention: true });
    const a = r.attention;
    const sums = a.rows.map((row) => row.reduce((x, y) => x + y, 0));
    return { ids: r.ids, layer: a.layer, src: a.sourcePieces, tgt: a.targetPieces,
      rows: a.rows.length, cols: a.rows.map((row) => row.length), sums };
  }, long);
  check("attention: one row per generated token, one column per source piece",
    att.rows === att.ids.length - 1 && att.tgt.length === att.rows && att.cols.every((c) => c === att.src.length),
    `rows ${att.rows}, ids ${att.ids.length}, cols ${[...new Set(att.cols)]}, source pieces ${att.src.length}`);
  check("attention rows sum to 1", att.sums.every((x) => Math.abs(x - 1) < 1e-3),
    `sums ${att.sums.map((x) => x.toFixed(4)).join(" ")}`);
  console.log(`page attention: layer ${att.layer}, source ${JSON.stringify(att.src)}, target ${JSON.stringify(att.tgt)}`);
  const mtHeat = await page.evaluate(() => {
    const c = document.getElementById("mt-heatmap");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let blue = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 2] === 255 && d[i] < 200) blue++;
    return { w: c.width, h: c.height, blue };
  });
  check("translation heatmap drawn", mtHeat.blue > 50, JSON.stringify(mtHeat));
  // Back to the page's own phrase (one the small model knows) for the screenshot.
  const first = demo.translation?.sentence ?? mtSentences[0];
  await page.fill("#sentence", first);
  await page.click("#translate");
  await page.waitForFunction(
    (s) => document.getElementById("translation").textContent.startsWith(s + " →"), first);

  await page.screenshot({ path: "out/demo.png", fullPage: true });
  console.log("screenshot: web/out/demo.png");
} catch (e) {
  check("page ran", false, String(e?.stack ?? e));
} finally {
  await context.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
