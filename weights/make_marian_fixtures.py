#!/usr/bin/env python3
"""Hugging Face reference outputs of the bundled Marian model (weights/marian/) for heedful's tests.

    python weights/make_marian_fixtures.py --model weights/marian --out weights/fixtures

The model is loaded as float32 from the F16 folder (MarianMTModel.from_pretrained(dir,
dtype=torch.float32)), on the CPU with one thread, in eval mode; every run is transformers'
`generate`. All files carry "versions": {"transformers", "torch"} and "model": the folder.

Inputs (shared by the generate files): the first --n held-out pairs of data/heldout.tsv, each
turned into a source text by index i: i % 10 == 9 joins the headword with the next held-out
headword ("word1 word2", longer sources); i % 7 == 2 capitalizes it; i % 5 == 3 prefixes the
language token (">>cmn_Hans<< word"). So lengths and spellings are mixed.

marian_generate_greedy.json and marian_generate_beam.json (same schema):
  inputs: [{index, text, reference (the dictionary's Chinese), source_ids (MarianTokenizer ids,
            </s> = 0 last, no padding)}]
  runs: [{
    name: e.g. "greedy", "beam4_lp0.6", "beam4_nrs2", "batch1_beam4",
    kwargs: the keyword arguments given to generate on top of generation_config.json (beam runs:
            num_beams, length_penalty, early_stopping, max_length / max_new_tokens,
            num_return_sequences; greedy runs: num_beams 1),
    batches: [{
      inputs: [input indices, in batch order],
      input_ids: the padded source matrix fed to generate ([B, S], right-padded with pad id),
      attention_mask: [B, S] (1 = token, 0 = pad),
      output: the matrix generate returned ([B * num_return_sequences, L]: decoder start (= pad
              id) first, rows that ended early padded with pad id after their </s>),
    }],
    results: [{  # one per input of the run, in input order
      input: index,
      ids: [[...]] one row per returned sequence: the output row without padding (decoder start
           first, </s> last when reached; what `heedful translate --json` reports),
      texts: [...] batch_decode(rows, skip_special_tokens=True),
      min_gap: the near-tie measure of this input in this run (float; large = safe), see below,
      gap_step: the step (0-based generated position) where min_gap occurred,
    }],
  }]

Near ties (min_gap): an input whose min_gap < 1e-4 may be set aside by a Rust test (counted and
listed). Greedy: at every step before the row's </s>, the gap between the largest and second
largest processed scores (output_scores: logits after bad-words suppression and forced EOS;
steps where only one token is allowed are skipped). Beam: at every step, over the item's
K * V accumulated scores (log-probs + running beam score, after processors), the gap between the
2K-th and (2K+1)-th candidates (which tokens enter the top 2K), over the 2K candidates the gap
between the K-th and (K+1)-th running (not just-finished) candidates (which continue), and over
the merged finished hypotheses the gap between the K-th and (K+1)-th finite scores (which are kept);
the minimum of all three over all steps, including steps after the item is done (conservative).
Not covered: the early-stopping heuristic's comparison of best running and worst finished scores.

marian_logits.json (mmodel's teacher-forced checks):
  inputs: [{text, source_ids, decoder_ids: decoder start + the first greedy tokens,
            positions: [{position p, top_ids: 16 ids of the largest raw logits (model output,
            float32, final_logits_bias included, no processors) at decoder position p
            (predicting token p+1 of decoder_ids), descending, top_values, row_sum, row_sum_sq
            (f64 sums over the whole vocab row)}]}]
  batch: {texts, input_ids [B, S] right-padded, attention_mask, decoder_ids [B, 3] (each row the
          first 3 ids of its own greedy output, pad id after </s> if shorter; teacher-forced
          together, no decoder mask), rows: [B][3] position entries as above}
  encoder: [{text, source_ids, last_hidden_state: [S, d_model] float32 values,
             row_sums: [S] f64}] for 2 inputs.

marian_tokenizer.json is written by make_marian_tokenizer_fixtures.py (the tokenizer's own edge-case
  corpus), not here.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LANG = ">>cmn_Hans<<"


def load(model_dir):
    import torch
    import transformers
    from transformers import MarianMTModel, MarianTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()  # "both max_new_tokens and max_length" notices
    tok = MarianTokenizer.from_pretrained(model_dir)
    model = MarianMTModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    return tok, model


def heldout(model_dir):
    with open(os.path.join(model_dir, "data", "heldout.tsv"), encoding="utf8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def make_inputs(pairs, n):
    out = []
    for i in range(n):
        en, zh = pairs[i]
        text = en
        if i % 10 == 9:
            text = f"{en} {pairs[i + 1][0]}"
            zh = f"{zh} {pairs[i + 1][1]}"
        if i % 7 == 2:
            text = text.capitalize()
        if i % 5 == 3:
            text = f"{LANG} {text}"
        out.append({"index": i, "text": text, "reference": zh})
    return out


class GapProbe:
    """Wraps the model's beam-search helpers to record near-tie gaps per batch item."""

    def __init__(self, model):
        self.model = model
        self.gaps = None
        self.step = 0

    def install(self, batch, num_beams):
        import torch

        m = self.model
        self.gaps = [(float("inf"), -1)] * batch
        self.step = 0
        k = num_beams
        orig_topk = type(m)._get_top_k_continuations
        orig_run = type(m)._get_running_beams_for_next_iteration
        orig_fin = type(m)._update_finished_beams
        probe = self

        def note(b, g):
            if g < probe.gaps[b][0]:
                probe.gaps[b] = (g, probe.step)

        def topk(self_, accumulated_log_probs, *a, **kw):
            s = torch.topk(accumulated_log_probs, k=2 * k + 1).values
            for b in range(s.shape[0]):
                if s[b, 2 * k] > -1e8:
                    note(b, (s[b, 2 * k - 1] - s[b, 2 * k]).item())
            return orig_topk(self_, accumulated_log_probs, *a, **kw)

        def run(self_, *a, **kw):
            args = dict(zip(["topk_log_probs", "topk_running_sequences", "topk_running_beam_indices",
                             "next_token_hits_stopping_criteria", "num_beams"], a))
            args.update(kw)
            hits = args["next_token_hits_stopping_criteria"]
            s = torch.sort(args["topk_log_probs"] + hits.to(torch.float32) * -1.0e9, descending=True).values
            for b in range(s.shape[0]):
                if s[b, k] > -1e8:
                    note(b, (s[b, k - 1] - s[b, k]).item())
            return orig_run(self_, *a, **kw)

        def fin(self_, *a, **kw):
            out = orig_fin(self_, *a, **kw)
            # Recompute the merged scores' K-th/(K+1)-th gap from the arguments (same formula as HF).
            args = dict(zip(["sequences", "topk_running_sequences", "beam_scores", "topk_log_probs", "beam_indices",
                             "topk_running_beam_indices", "is_early_stop_heuristic_unsatisfied", "is_sent_finished",
                             "next_token_hits_stopping_criteria", "top_num_beam_mask", "num_beams", "cur_len",
                             "decoder_prompt_len", "length_penalty", "early_stopping"], a))
            args.update(kw)
            done = args["next_token_hits_stopping_criteria"] & args["top_num_beam_mask"][None, :]
            lp = args["topk_log_probs"] / ((args["cur_len"] + 1 - args["decoder_prompt_len"]) ** args["length_penalty"])
            full = torch.all(args["is_sent_finished"], axis=-1, keepdims=True) & (args["early_stopping"] is True)
            lp = lp + full.to(torch.float32) * -1.0e9
            lp = lp + (~args["is_early_stop_heuristic_unsatisfied"]).to(torch.float32) * -1.0e9
            lp = lp + (~done) * -1.0e9
            merged = torch.sort(torch.cat((args["beam_scores"], lp), dim=1), descending=True).values
            for b in range(merged.shape[0]):
                if merged[b, k] > -1e8:
                    note(b, (merged[b, k - 1] - merged[b, k]).item())
            probe.step += 1
            return out

        m._get_top_k_continuations = topk.__get__(m)
        m._get_running_beams_for_next_iteration = run.__get__(m)
        m._update_finished_beams = fin.__get__(m)

    def remove(self):
        for name in ("_get_top_k_continuations", "_get_running_beams_for_next_iteration", "_update_finished_beams"):
            self.model.__dict__.pop(name, None)


def unpad(row, pad):
    """Decoder start (= pad) first, then the tokens up to and including </s>; trailing pad dropped."""
    body = row[1:]
    while body and body[-1] == pad:
        body = body[:-1]
    return [row[0]] + body


def run_generate(tok, model, inputs, name, kwargs, batch_size):
    import torch

    pad = model.config.pad_token_id
    nrs = kwargs.get("num_return_sequences", 1)
    beams = kwargs.get("num_beams", model.generation_config.num_beams)
    run = {"name": name, "kwargs": kwargs, "batches": [], "results": []}
    probe = GapProbe(model)
    for lo in range(0, len(inputs), batch_size):
        chunk = inputs[lo : lo + batch_size]
        enc = tok([x["text"] for x in chunk], return_tensors="pt", padding=True)
        with torch.no_grad():
            if beams > 1:
                probe.install(len(chunk), beams)
            out = model.generate(**enc, **kwargs, return_dict_in_generate=True, output_scores=True)
            probe.remove()
        seqs = out.sequences.tolist()
        run["batches"].append({"inputs": [x["index"] for x in chunk], "input_ids": enc["input_ids"].tolist(),
                               "attention_mask": enc["attention_mask"].tolist(), "output": seqs})
        if beams > 1:
            gaps = probe.gaps
        else:
            gaps = []
            for b in range(len(chunk)):
                best = (float("inf"), -1)
                for s, sc in enumerate(out.scores):
                    if seqs[b][s] == 0 and s > 0:  # the row ended before this step
                        break
                    top = torch.topk(sc[b], 2).values
                    if top[1] > -float("inf"):
                        g = (top[0] - top[1]).item()
                        if g < best[0]:
                            best = (g, s)
                gaps.append(best)
        for b, x in enumerate(chunk):
            rows = [unpad(r, pad) for r in seqs[b * nrs : (b + 1) * nrs]]
            run["results"].append({"input": x["index"], "ids": rows,
                                   "texts": tok.batch_decode(rows, skip_special_tokens=True),
                                   "min_gap": gaps[b][0], "gap_step": gaps[b][1]})
    close = sum(r["min_gap"] < 1e-4 for r in run["results"])
    print(f"{name}: {len(run['results'])} inputs, {close} with min_gap < 1e-4; e.g. "
          f"{[(inputs[i]['text'], run['results'][i]['texts'][0]) for i in range(3)]}", flush=True)
    return run


def logits_entry(model, src, dec):
    import torch

    with torch.no_grad():
        lg = model(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([dec])).logits[0]
    return [summary(lg[p], p) for p in range(len(dec))]


def summary(row, p):
    import torch

    v, i = torch.topk(row, 16)
    r = row.double()
    return {"position": p, "top_ids": i.tolist(), "top_values": v.tolist(), "row_sum": r.sum().item(),
            "row_sum_sq": (r * r).sum().item()}


def make_logits(tok, model, inputs):
    import torch

    pad = model.config.pad_token_id
    picks = [inputs[0], inputs[3], inputs[9], inputs[16]]
    entries = []
    for x in picks:
        src = tok(x["text"])["input_ids"]
        with torch.no_grad():
            g = model.generate(torch.tensor([src]), num_beams=1, max_new_tokens=5)[0].tolist()
        dec = unpad(g, pad)[:5]
        entries.append({"text": x["text"], "source_ids": src, "decoder_ids": dec, "positions": logits_entry(model, src, dec)})
    # A padded batch of two sources of different lengths, teacher-forced together.
    texts = [inputs[9]["text"], inputs[1]["text"]]
    enc = tok(texts, return_tensors="pt", padding=True)
    decs = []
    for t in texts:
        with torch.no_grad():
            g = model.generate(torch.tensor([tok(t)["input_ids"]]), num_beams=1, max_new_tokens=3)[0].tolist()
        decs.append(g[:3] + [pad] * (3 - len(g[:3])))
    with torch.no_grad():
        lg = model(**enc, decoder_input_ids=torch.tensor(decs)).logits
    batch = {"texts": texts, "input_ids": enc["input_ids"].tolist(), "attention_mask": enc["attention_mask"].tolist(),
             "decoder_ids": decs, "rows": [[summary(lg[b, p], p) for p in range(3)] for b in range(2)]}
    enc_entries = []
    for x in (inputs[0], inputs[9]):
        src = tok(x["text"])["input_ids"]
        with torch.no_grad():
            h = model.get_encoder()(input_ids=torch.tensor([src])).last_hidden_state[0]
        enc_entries.append({"text": x["text"], "source_ids": src, "last_hidden_state": h.tolist(),
                            "row_sums": h.double().sum(-1).tolist()})
    return {"inputs": entries, "batch": batch, "encoder": enc_entries}


TOKENIZER_CORPUS = [
    "", " ", "hello", "Hello world", "  leading spaces", "trailing spaces  ", "repeated   inner    spaces",
    "candlestick", "Candlestick", "CANDLESTICK", f"{LANG} candlestick", f"{LANG}candlestick", f"{LANG}",
    ">>xx<< unknown language code", "full-width：，。！（）", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "ﬁ ligature ①②",
    "café naïve", "中文 text 烛台", "emoji 😀 🚀 end", "tab\tand\nnewline", "digits 12345 and 3.14",
    "punctuation!?.,;:'\"()[]{}", "a", "I", "x" * 40, "unclasp the voguish candlestick", "\u00a0nbsp\u00a0",
    "zero\u200bwidth", "Ω ≈ µ", "<unk> </s> <pad>", "‹quotes› «guillemets» “curly”",
]


def dump(doc, path):
    with open(path, "w", encoding="utf8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(HERE, "marian"))
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures"), help="folder for the marian_*.json files")
    ap.add_argument("--n", type=int, default=240, help="held-out inputs per generate run")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--only", default="logits,greedy,beam", help="which files to write")
    args = ap.parse_args()
    import torch
    import transformers

    tok, model = load(args.model)
    os.makedirs(args.out, exist_ok=True)
    pairs = heldout(args.model)
    inputs = make_inputs(pairs, args.n)
    for x in inputs:
        x["source_ids"] = tok(x["text"])["input_ids"]
    head = {"versions": {"transformers": transformers.__version__, "torch": torch.__version__},
            "model": os.path.relpath(args.model, os.path.dirname(HERE))}
    only = args.only.split(",")
    if "logits" in only:
        dump({**head, **make_logits(tok, model, inputs)}, os.path.join(args.out, "marian_logits.json"))
    bs = args.batch_size
    sub = inputs[:40]
    if "greedy" in only:
        runs = [
            run_generate(tok, model, inputs, "greedy", {"num_beams": 1}, bs),
            run_generate(tok, model, inputs, "greedy_max_length6", {"num_beams": 1, "max_length": 6}, bs),
            run_generate(tok, model, inputs, "greedy_max_new_tokens3", {"num_beams": 1, "max_new_tokens": 3}, bs),
            run_generate(tok, model, sub, "batch1_greedy", {"num_beams": 1}, 1),
        ]
        dump({**head, "inputs": inputs, "runs": runs}, os.path.join(args.out, "marian_generate_greedy.json"))
    if "beam" in only:
        b4 = {"num_beams": 4}
        runs = [
            run_generate(tok, model, inputs, "beam4", {**b4}, bs),
            run_generate(tok, model, inputs, "beam4_lp0.6", {**b4, "length_penalty": 0.6}, bs),
            run_generate(tok, model, inputs, "beam4_lp2.0", {**b4, "length_penalty": 2.0}, bs),
            run_generate(tok, model, inputs, "beam4_es_true", {**b4, "early_stopping": True}, bs),
            run_generate(tok, model, inputs, "beam4_es_never", {**b4, "early_stopping": "never"}, bs),
            run_generate(tok, model, inputs, "beam4_max_length6", {**b4, "max_length": 6}, bs),
            run_generate(tok, model, inputs, "beam4_max_new_tokens3", {**b4, "max_new_tokens": 3}, bs),
            run_generate(tok, model, inputs, "beam4_nrs2", {**b4, "num_return_sequences": 2}, bs),
            run_generate(tok, model, sub, "batch1_beam4", {**b4}, 1),
        ]
        dump({**head, "inputs": inputs, "runs": runs}, os.path.join(args.out, "marian_generate_beam.json"))


if __name__ == "__main__":
    sys.exit(main())
