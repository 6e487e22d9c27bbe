#!/usr/bin/env python3
"""Writes weights/fixtures/marian_tokenizer.json: what Hugging Face's MarianTokenizer (with the
`sentencepiece` library) makes of an edge-case corpus and of held-out lines, for
tests/marian_tokenizer.rs to compare heedful's Rust tokenizer against. No torch needed.

    pip install sentencepiece transformers
    python weights/make_marian_tokenizer_fixtures.py

Two tokenizer folders:
  shared    weights/marian/ (one vocab.json for both sides; decoding uses source.spm, as
            transformers does when separate_vocabs is false).
  separate  the same .spm files with separate_vocabs: vocab.json of the source pieces and a
            target_vocab.json that numbers target pieces by their SentencePiece id but lists only
            the first 1500, so ids 1500.. decode through target.spm's IdToPiece fallback. Its three
            JSON files are stored in the fixture; the Rust test writes them next to copies of the
            .spm files.

For each folder and text: `ids` (tokenizer(text)["input_ids"]), `tokens` (tokenizer.tokenize),
`spm_pieces` (source.spm's encode(text, out_type=str), no language-code handling) and
`normalized` (source.spm's normalize). Decode rows: `ids` and `text` (decode with
skip_special_tokens=True), `tokens` (convert_ids_to_tokens), or `error` when transformers raises;
`decode_each_id`: [text, token] of every id alone, by id.
"""

import json
import os
import random
import shutil
import tempfile
import warnings

warnings.filterwarnings("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
FOLDER = os.path.join(HERE, "marian")
OUT = os.path.join(HERE, "fixtures", "marian_tokenizer.json")

# Each entry probes one behaviour; the comment says which.
EDGE = [
    # empty and whitespace-only input (sentencepiece yields no pieces; only </s> remains)
    "", " ", "   ", "\t", "\n", "\r\n", " \t \n ", "\u3000", "\u00a0",
    # leading, trailing and repeated spaces, tabs, newlines, other Unicode spaces
    " hello", "hello ", "  hello  world  ", "hello\tworld", "hello\nworld", "a\r\nb",
    "a \u3000 b", "\u00a0x\u00a0", "a\u2003b", "a\u2028b", "a\u0085b", "a\u200bb", "\ufeffbom",
    "tab\t\tsep", "a\x0bb\x0cc", "x\x1fy",
    # full-width punctuation and digits, CJK punctuation
    "\uff21\uff22\uff23\uff11\uff12\uff13", "\uff28\uff45\uff4c\uff4c\uff4f\uff0c\uff57\uff4f\uff52\uff4c\uff44\uff01",
    "\uff08\u62ec\u53f7\uff09", "\u300c\u5f15\u53f7\u300d", "\uff11\uff10\uff05", "\u3002\u3001\uff1f\uff01\uff1a\uff1b",
    # NFKC: ligatures, circled and super/subscript digits, compatibility forms, half-width kana
    # (multi-character rules: sentencepiece matches the longest rule), combining marks
    "\ufb01ne \ufb02ow \ufb03", "\u2460\u2461\u2462", "\u337b", "\u216b", "\uff76\uff9e\uff77\uff9e",
    "\uff8a\uff9f\uff9d", "x\u00b2 H\u2082O", "\u00bd \u2153", "\u2122 \u2103", "wait\u2026",
    "e\u0301 \u00e9", "\u212b \u00c5", "\u01c5", "\ufdfa", "\u1e9b\u0323", "\u3300", "\u2474",
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522",
    # CJK, other scripts, mixed scripts
    "\u6211\u7231\u4f60", "\u4e2d\u6587\u548cEnglish\u6df7\u5408", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\ud55c\uad6d\uc5b4", "\u041c\u043e\u0441\u043a\u0432\u0430 is \u83ab\u65af\u79d1",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac and \u0639\u0631\u0628\u0649", "hello\u4e16\u754c123",
    # emoji and characters outside the vocabulary (unknown runs are merged into one piece)
    "\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f1e8\U0001f1f3", "a\U0001f600b\U0001f600\U0001f600c", "\u16a0\u16c7\u16bb", "x\x00y", "\x01\x7f",
    "\U00010348\U00010349",
    # Marian language codes (split off whole, even when not in the vocabulary)
    ">>cmn_Hans<< hello world", ">>cmn_Hans<<", ">>cmn_Hans<<hello", " >>cmn_Hans<< hello",
    ">>fra<< bonjour", ">>x", "<<x>>", ">><< a", ">>a<<>>b<< c", ">>cmn_Hans<<   ",
    # special tokens written in the text (split off as added tokens)
    "a </s> b", "x<unk>y", "<pad>", "</s></s>", ">>cmn_Hans<< a</s>>>cmn_Hans<< b", "< /s>",
    # very long words and inputs
    "pneumonoultramicroscopicsilicovolcanoconiosis", "a" * 300,
    "antidisestablishmentarianism" * 5, " ".join(["word"] * 100),
    # numbers
    "3.14159", "1,000,000", "2026-12-04", "0x1F", "-42", "1e10", "\uff11\uff12\uff13\uff14", "007",
    # capitals, punctuation, quotes
    "HELLO", "Hello", "Hello, world!", "it's", "don't", "\"quoted\"", "a--b", "...", "?!",
    "(a)[b]{c}", "candle-stick", "e-mail", "rock'n'roll", "\u201csmart\u201d \u2018quotes\u2019",
    "a . b , c !",
    # the mdata engineer's tokenizer cases (weights/make_marian_fixtures.py), so one file holds all
    "hello", "Hello world", "  leading spaces", "trailing spaces  ", "repeated   inner    spaces",
    "candlestick", "Candlestick", "CANDLESTICK", ">>cmn_Hans<< candlestick", ">>cmn_Hans<<candlestick",
    ">>xx<< unknown language code", "full-width\uff1a\uff0c\u3002\uff01\uff08\uff09",
    "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \uff21\uff22\uff23 \uff11\uff12\uff13",
    "\ufb01 ligature \u2460\u2461", "caf\u00e9 na\u00efve", "\u4e2d\u6587 text \u70db\u53f0",
    "emoji \U0001f600 \U0001f680 end", "tab\tand\nnewline", "digits 12345 and 3.14",
    "punctuation!?.,;:'\"()[]{}", "a", "I", "x" * 40, "unclasp the voguish candlestick", "\u00a0nbsp\u00a0",
    "zero\u200bwidth", "\u03a9 \u2248 \u00b5", "<unk> </s> <pad>",
    "\u2039quotes\u203a \u00abguillemets\u00bb \u201ccurly\u201d",
]


def corpus():
    """The edge cases, then held-out headwords (English) and their senses (Chinese)."""
    lines = [l.rstrip("\n").split("\t") for l in open(os.path.join(FOLDER, "data", "heldout.tsv"), encoding="utf8")]
    en = [l[0] for l in lines[:200]]
    zh = [l[1] for l in lines[:60] if len(l) > 1]
    # Sentence-like held-out inputs: a few headwords joined, capitalized, with the language code.
    rng = random.Random(14)
    sent = []
    for i in range(40):
        words = rng.sample([l[0] for l in lines], rng.randint(2, 6))
        s = " ".join(words)
        if i % 3 == 0:
            s = s.capitalize() + "."
        if i % 2 == 0:
            s = ">>cmn_Hans<< " + s
        sent.append(s)
    return [("edge", t) for t in EDGE] + [("heldout_en", t) for t in en] + [("heldout_sentence", t) for t in sent] + [
        ("heldout_zh", t) for t in zh
    ]


def encode_rows(tok, sp, texts):
    rows = []
    for kind, text in texts:
        rows.append(
            {
                "kind": kind,
                "text": text,
                "ids": tok(text)["input_ids"],
                "tokens": tok.tokenize(text),
                "spm_pieces": sp.encode(text, out_type=str),
                "normalized": sp.normalize(text),
            }
        )
    return rows


def decode_rows(tok, id_rows):
    rows = []
    for ids in id_rows:
        row = {"ids": ids}
        try:
            row["text"] = tok.decode(ids, skip_special_tokens=True)
            row["tokens"] = tok.convert_ids_to_tokens(ids)
        except Exception as e:  # transformers raises IndexError for ids outside the model
            row["error"] = type(e).__name__
        rows.append(row)
    return rows


def each_id(tok, n_ids):
    """Every id alone, compactly: [decoded text, token] per id 0..n_ids-1."""
    return [[tok.decode([i], skip_special_tokens=True), tok.convert_ids_to_tokens(i)] for i in range(n_ids)]


def id_rows(tok, n_ids, extra_ids, zh):
    """Target id rows: ids past the vocabulary, targets of held-out senses, random rows with pad/eos/unk."""
    pad, eos, unk = tok.pad_token_id, tok.eos_token_id, tok.unk_token_id
    rows = [[i] for i in extra_ids]
    for t in zh:
        labels = tok(text_target=t)["input_ids"]
        rows.append([pad] + labels)  # as generate returns them: decoder start (= pad) first
        rows.append([pad] + labels + [pad, pad])  # a finished row padded in a batch
    rng = random.Random(7)
    for _ in range(200):
        row = [rng.randrange(n_ids) for _ in range(rng.randint(0, 12))]
        for _ in range(rng.randint(0, 3)):
            row.insert(rng.randint(0, len(row)), rng.choice([pad, eos, unk]))
        rows.append(row)
    rows += [[], [pad], [eos], [unk], [pad, eos], [unk, unk, 5, unk], [pad, 5, eos, 6, pad]]
    return rows


# Piece lists for sentencepiece's decode_pieces: leading/inner ▁, <unk>, control pieces, pieces not
# in the model, byte pieces (valid UTF-8, invalid bytes, a truncated character).
DECODE_PIECES = [
    [],
    ["\u2581", "\u2581a", "<unk>", "<s>", "</s>", "xyz", "\u2581\u2581b"],
    ["<s>", "\u2581", "\u2581"],
    ["\u2581he", "ll", "o", "\u2581", "w"],
    ["<0xE4>", "<0xB8>", "<0xAD>", "\u2581x", "<0xFF>", "a", "<0xE4>"],
    ["<0x41>", "<0xe4>", "<0x20>", "<0x0A>"],
    ["\u2581hello", "<sep>", "\u2581", "<unk>", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"],
]


def spm_variants(texts):
    """sentencepiece settings Marian's own models do not use, for the Rust SentencePiece code:
    source.spm with normalizer/trainer flags changed (the Rust test changes the same fields of the
    parsed model), and a small identity-normalized model with byte_fallback and user-defined
    symbols, stored whole (base64)."""
    import base64
    import io

    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2 as pb

    base = open(os.path.join(FOLDER, "source.spm"), "rb").read()
    variants = []
    for name, normalizer, trainer in [
        ("no_dummy_prefix", {"add_dummy_prefix": False}, {}),
        ("keep_whitespace", {"remove_extra_whitespaces": False}, {}),
        ("keep_whitespace_no_prefix", {"remove_extra_whitespaces": False, "add_dummy_prefix": False}, {}),
        ("no_escape", {"escape_whitespaces": False}, {}),
        ("whitespace_suffix", {}, {"treat_whitespace_as_suffix": True}),
    ]:
        m = pb.ModelProto()
        m.ParseFromString(base)
        for k, v in normalizer.items():
            setattr(m.normalizer_spec, k, v)
        for k, v in trainer.items():
            setattr(m.trainer_spec, k, v)
        variants.append(({"name": name, "base": "source.spm", "normalizer": normalizer, "trainer": trainer}, m.SerializeToString()))

    pairs = [l.rstrip("\n").split("\t") for l in open(os.path.join(FOLDER, "data", "heldout.tsv"), encoding="utf8")]
    lines = [p[0] for p in pairs] + [p[0].capitalize() for p in pairs] + [" ".join(p) for p in pairs[:10]]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 3),
        model_writer=model,
        vocab_size=600,
        hard_vocab_limit=False,
        model_type="unigram",
        normalization_rule_name="identity",
        byte_fallback=True,
        user_defined_symbols=["<sep>", "hello", "\u4e2d\u6587"],
        character_coverage=0.98,
        num_threads=1,
        minloglevel=2,
    )
    tiny = model.getvalue()
    variants.append(({"name": "tiny_byte_fallback", "model_base64": base64.b64encode(tiny).decode()}, tiny))

    extra = ["hello<sep>world", "say hello", "<sep><sep>", "\u4e2d\u6587\u4e2d", "hellohello x"]
    out = []
    for meta, proto in variants:
        sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
        rows = []
        for _, t in texts[:110] + [("x", e) for e in extra]:
            pieces = sp.encode(t, out_type=str)
            rows.append({"text": t, "pieces": pieces, "normalized": sp.normalize(t), "decoded": sp.decode_pieces(pieces)})
        meta["encode"] = rows
        meta["decode"] = [{"pieces": p, "text": sp.decode_pieces(p)} for p in DECODE_PIECES]
        out.append(meta)
    return out


def main():
    import sentencepiece
    import transformers
    from transformers import MarianTokenizer

    texts = corpus()
    zh = [t for k, t in texts if k == "heldout_zh"]
    src_sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(FOLDER, "source.spm"))
    tgt_sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(FOLDER, "target.spm"))

    shared = MarianTokenizer.from_pretrained(FOLDER)
    n = len(shared.get_vocab())
    out = {
        "about": "MarianTokenizer outputs; written by weights/make_marian_tokenizer_fixtures.py",
        "transformers": transformers.__version__,
        "sentencepiece": sentencepiece.__version__,
        "shared": {
            "encode": encode_rows(shared, src_sp, texts),
            # n is one past the vocabulary: beyond the source model too, so transformers raises.
            "decode": decode_rows(shared, id_rows(shared, n, [n, src_sp.get_piece_size() + 5], zh)),
            "decode_each_id": each_id(shared, n),
        },
    }

    # Separate vocabularies (see the module docs).
    src_vocab = {"</s>": 0, "<unk>": 1}
    for i in range(src_sp.get_piece_size()):
        if not (src_sp.is_control(i) or src_sp.is_unknown(i)):
            src_vocab.setdefault(src_sp.id_to_piece(i), len(src_vocab))
    src_vocab[">>cmn_Hans<<"] = len(src_vocab)
    src_vocab["<pad>"] = len(src_vocab)
    tgt_vocab = {"</s>": 0, "<unk>": 1}
    for i in range(3, 1500):
        tgt_vocab[tgt_sp.id_to_piece(i)] = i
    tgt_vocab["<pad>"] = src_vocab["<pad>"]
    with tempfile.TemporaryDirectory() as d:
        for f in ["source.spm", "target.spm"]:
            shutil.copy(os.path.join(FOLDER, f), d)
        json.dump(src_vocab, open(os.path.join(d, "vocab.json"), "w", encoding="utf8"), ensure_ascii=False)
        json.dump(tgt_vocab, open(os.path.join(d, "target_vocab.json"), "w", encoding="utf8"), ensure_ascii=False)
        tok = MarianTokenizer(
            source_spm=os.path.join(d, "source.spm"),
            target_spm=os.path.join(d, "target.spm"),
            vocab=os.path.join(d, "vocab.json"),
            target_vocab_file=os.path.join(d, "target_vocab.json"),
            separate_vocabs=True,
        )
        saved = os.path.join(d, "saved")
        tok.save_pretrained(saved)
        tok = MarianTokenizer.from_pretrained(saved)
        # The saved JSON files, re-serialized compactly (same content and key order).
        files = {
            f: json.dumps(json.load(open(os.path.join(saved, f), encoding="utf8")), ensure_ascii=False, separators=(",", ":"))
            for f in sorted(os.listdir(saved))
            if f.endswith(".json")
        }
        tgt_n = tgt_sp.get_piece_size()
        rows = id_rows(tok, tgt_n, [tgt_n, len(src_vocab) - 1], zh[:20])
        out["separate"] = {
            "files": files,
            "encode": encode_rows(tok, src_sp, [t for t in texts if t[0] != "heldout_en"][:120]),
            "decode": decode_rows(tok, rows),
            "decode_each_id": each_id(tok, tgt_n),
        }

    out["spm_variants"] = spm_variants(texts)

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    enc = len(out["shared"]["encode"]) + len(out["separate"]["encode"])
    dec = sum(len(out[k]["decode"]) + len(out[k]["decode_each_id"]) for k in ["shared", "separate"])
    print(f"{OUT}: {enc} encode rows, {dec} decode rows, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
