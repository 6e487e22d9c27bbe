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
  if (m.type() === "error") console.log(`page console: ${m.text()}`);
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
  await page.screenshot({ path: "out/demo.png", fullPage: true });
  console.log("screenshot: web/out/demo.png");
} catch (e) {
  check("page ran", false, String(e?.stack ?? e));
} finally {
  await context.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
