#!/usr/bin/env python3
"""Writes weights/fixtures/marian_search.json: Hugging Face `generate` (the installed transformers,
5.25) on a tiny encoder-decoder whose logits are a table lookup, over a grid of decoding options.
tests/marian_search.rs replays every case with heedful's CPU reference of generate
(src/reference/generate.rs) and compares every returned row and beam score. Needs torch.

The model (`TableModel`, a PreTrainedModel + GenerationMixin with is_encoder_decoder=True): the
encoder input of item b is `[[c_b]]` (one id, the item's "class"); the decoder's logits for a row
whose last token is t, at step s (the decoder input holds s + 1 tokens), of class c are

    logits = (tok[t] + cls[c]) + pos[s]          (float32, added in this order)

where tok `[V, V]`, cls `[C, V]`, pos `[S, V]` are float32 tables stored in the JSON, so the Rust
side computes bit-identical logits. use_cache=False: every step sees the full decoder input, so no
cache reordering is involved.

Cases: greedy and beam 2-5 x length_penalty 0.6 / 1 / 2 x early_stopping True / False / "never" x
max_length 2..25 x num_return_sequences; max_new_tokens, min_length, min_new_tokens, bad words
(single and multi-token, one starting with the decoder start), forced EOS; a seeded sweep (length
penalties -1..3, end-token pulls 0.5 / 1.25 / 2 per step); and options generate refuses (each
case then holds HF's error message). Exact score ties are kept out of beam cases: torch.topk
orders equal scores arbitrarily (the "ties" table is used for greedy only, where argmax takes the
first index).

    python weights/make_search_fixtures.py
"""

import json
import os
import warnings

import numpy as np
import torch
import transformers
from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "marian_search.json")


class TableConfig(PretrainedConfig):
    model_type = "heedful_table"

    def __init__(self, vocab_size=16, **kw):
        self.vocab_size = vocab_size
        super().__init__(is_encoder_decoder=True, **kw)


class TableEncoder(torch.nn.Module):
    main_input_name = "input_ids"

    def forward(self, input_ids=None, attention_mask=None, **kw):
        return BaseModelOutput(last_hidden_state=input_ids.to(torch.float32).unsqueeze(-1))


class TableModel(PreTrainedModel, GenerationMixin):
    config_class = TableConfig
    main_input_name = "input_ids"

    def __init__(self, config, tok, cls, pos):
        super().__init__(config)
        self.encoder = TableEncoder()
        self.register_buffer("tok", torch.tensor(tok, dtype=torch.float32))
        self.register_buffer("cls", torch.tensor(cls, dtype=torch.float32))
        self.register_buffer("pos", torch.tensor(pos, dtype=torch.float32))
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def get_encoder(self):
        return self.encoder

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                encoder_outputs=None, return_dict=True, **kw):
        if isinstance(encoder_outputs, (tuple, list)):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        cls = encoder_outputs.last_hidden_state[:, 0, 0].to(torch.long)  # [R]
        step = decoder_input_ids.shape[1] - 1
        last = decoder_input_ids[:, -1]
        logits = (self.tok[last] + self.cls[cls]) + self.pos[step]
        return Seq2SeqLMOutput(logits=logits[:, None, :])


def table(rng, rows, v, ties=False):
    if ties:
        # Quarter steps: many exact ties between tokens and between beams.
        return (rng.integers(-12, 12, size=(rows, v)) / 4.0).astype(np.float32)
    return (rng.standard_normal((rows, v)) * 2.0).astype(np.float32)


def f32list(a):
    return [float(x) for x in np.asarray(a, dtype=np.float32).reshape(-1)]


MODELS = {
    # name: (V, classes, steps, ties, seed)
    "v24": (24, 4, 25, False, 1),
    "v9": (9, 3, 25, False, 2),
    "ties": (16, 3, 25, True, 3),
    "v40p2": (40, 4, 25, False, 4),
    "v60p05": (60, 4, 25, False, 5),
}
# The end token's pull per step (logit added to pos[s, EOS] = pull * s - 1).
PULL = {"v40p2": 2.0, "v60p05": 0.5}
EOS, PAD, START = 0, 1, 2


def cases():
    out = []
    base = dict(eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=START)
    for model in ["v24", "v9"]:
        for k in [1, 2, 3, 4, 5]:
            if model == "v9" and k > 4:
                continue
            for lp in [0.6, 1.0, 2.0]:
                for es in [True, False, "never"]:
                    if k == 1 and (es is not False or lp != 1.0):
                        continue
                    for ml in [2, 3, 7, 12, 25]:
                        opts = dict(base, num_beams=k, length_penalty=lp, early_stopping=es,
                                    max_length=ml)
                        if k > 1:
                            opts["num_return_sequences"] = min(k, 1 + (ml % k))
                        out.append((model, [0, 1, 2, 3, 1, 2][: 1 + ml % 6], opts))
    # max_new_tokens, min_length, min_new_tokens, bad words (single and multi-token), forced eos.
    for model in ["v24", "v9", "ties"]:
        for k in [1, 3, 5]:
            if model == "ties" and k > 1:
                # torch.topk orders equal scores arbitrarily: ties are tested against the CPU
                # reference only (tests/marian_search.rs), greedy's argmax takes the first.
                continue
            if model == "v9" and k > 3:
                continue
            extra = [
                dict(max_new_tokens=5),
                dict(max_new_tokens=1),
                dict(max_length=10, min_length=6),
                dict(max_length=10, min_new_tokens=4),
                dict(max_length=9, bad_words_ids=[[PAD], [5], [3, 4], [4, 3, 6], [START, 7]]),
                dict(max_length=8, forced_eos_token_id=EOS),
                dict(max_length=8, forced_eos_token_id=EOS, min_length=8, bad_words_ids=[[PAD]]),
                dict(max_length=12, bad_words_ids=[[PAD], [EOS, 3]], min_length=3),
            ]
            for e in extra:
                opts = dict(base, num_beams=k, **e)
                if k > 1:
                    opts["num_return_sequences"] = 2
                    opts["early_stopping"] = [True, False, "never"][k % 3]
                    opts["length_penalty"] = [0.6, 1.0, 2.0][len(out) % 3]
                out.append((model, [0, 1, 2][: (len(out) % 3) + 1], opts))
    # A seeded sweep: items finishing at different steps, every early stopping mode, length
    # penalties from -1 to 3 (the heuristic's edges).
    rng = np.random.default_rng(7)
    for _ in range(80):
        model = ["v40p2", "v60p05", "v24"][rng.integers(3)]
        k = int(rng.integers(2, 6))
        opts = dict(base, num_beams=k, max_length=int(rng.integers(3, 21)),
                    early_stopping=[True, False, "never"][rng.integers(3)],
                    length_penalty=[-1.0, 0.0, 0.6, 1.0, 2.0, 3.0][rng.integers(6)],
                    num_return_sequences=int(rng.integers(1, k + 1)))
        if rng.integers(3) == 0:
            opts["min_length"] = int(rng.integers(0, 6))
        out.append((model, [int(c) for c in rng.integers(0, 4, size=rng.integers(1, 7))], opts))
    # Options generate refuses (the Rust side must refuse them too).
    for e in [dict(max_length=1), dict(num_beams=2, num_return_sequences=3),
              dict(num_return_sequences=2), dict(max_new_tokens=0),
              dict(num_beams=2, early_stopping="sometimes"), dict(bad_words_ids=[[EOS]]),
              dict(bad_words_ids=[[]]), dict(bad_words_ids=[[3, 99]])]:
        out.append(("v24", [0], dict(base, **e)))
    return out


def main():
    models = {}
    tables = {}
    for name, (v, c, s, ties, seed) in MODELS.items():
        rng = np.random.default_rng(seed)
        tok, cls, pos = table(rng, v, v, ties), table(rng, c, v, ties), table(rng, s, v, ties)
        if not ties:
            # The end token grows likelier with the step, so hypotheses end at varied lengths.
            pull = np.float32(PULL.get(name, 1.25))
            pos[:, EOS] += np.arange(s, dtype=np.float32) * pull - np.float32(1.0)
        cfg = TableConfig(vocab_size=v, eos_token_id=EOS, pad_token_id=PAD,
                          decoder_start_token_id=START)
        m = TableModel(cfg, tok, cls, pos).eval()
        m.generation_config = GenerationConfig(eos_token_id=EOS, pad_token_id=PAD,
                                               decoder_start_token_id=START)
        models[name] = m
        tables[name] = dict(vocab=v, classes=c, steps=s, tok=f32list(tok), cls=f32list(cls),
                            pos=f32list(pos))
    rows = []
    for model, classes, opts in cases():
        m = models[model]
        classes = [c % MODELS[model][1] for c in classes]
        ids = torch.tensor([[c] for c in classes])
        gen_opts = dict(opts)
        with torch.no_grad():
            try:
                res = m.generate(input_ids=ids, use_cache=False, return_dict_in_generate=True,
                                 output_scores=True, do_sample=False, **gen_opts)
            except Exception as e:  # noqa: BLE001 - the error is part of the fixture
                rows.append(dict(model=model, classes=classes, options=opts, error=str(e)[:200]))
                continue
        row = dict(model=model, classes=classes, options=opts,
                   sequences=res.sequences.tolist())
        if getattr(res, "sequences_scores", None) is not None:
            row["scores"] = f32list(res.sequences_scores)
        rows.append(row)
    doc = dict(
        transformers=transformers.__version__,
        torch=torch.__version__,
        eos=EOS, pad=PAD, start=START,
        models=tables,
        cases=rows,
    )
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"wrote {OUT}: {len(rows)} cases, {sum('error' in r for r in rows)} errors, "
          f"{os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
