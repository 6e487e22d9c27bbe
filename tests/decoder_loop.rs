//! The fused greedy decoder kernel (`kernels::decoder_loop`) against the CPU reference
//! (`reference::decoder_loop`) on random f16-representable weights and awkward sizes: every cell,
//! every attention, both step orders, stacks, input feeding, the attentional layer, vocabularies larger than a
//! workgroup, one-row memories and ragged lengths; chunked dispatches must give the same result
//! as one long dispatch.

mod common;

use common::{assert_close, f16_round, Rng};
use heedful::gpu::{Gpu, Recorder};
use heedful::kernels::decoder_loop::{
    beam_state_len, beam_step_dispatches, dispatch, state_layout, write_beam_lengths, write_stop,
    BeamStepBuffers, DecoderLoopDims, LoopAttention, LoopBuffers,
};
use heedful::kernels::recurrent::CellKind;
use heedful::reference::decoder_loop::{
    greedy, step, DecoderWeights, LoopResult, LoopStart, StepState,
};
use heedful::tensor::{DType, Tensor};
use heedful::weights::pack::{self, AttentionWeights, RecurrentLayerWeights, Weight};

/// Host weights owned by a test.
struct Owned {
    emb: Vec<f32>,
    cells: Vec<[Vec<f32>; 4]>,
    general: Vec<f32>,
    additive: [Vec<f32>; 3],
    w_c: Vec<f32>,
    out: [Vec<f32>; 2],
}

fn random_weights(d: &DecoderLoopDims, rng: &mut Rng) -> Owned {
    let mut r = |n: usize, s: f32| f16_round(&rng.vec(n, -s, s));
    let (g, h, m, a) = (d.cell.gates(), d.hidden, d.mem, d.attn_dim);
    let cells = (0..d.layers)
        .map(|l| {
            let n_in = if l == 0 { d.input0() } else { h };
            let s = 1.0 / (n_in.max(h) as f32).sqrt();
            [
                r(g * h * n_in, 2.0 * s),
                r(g * h * h, 2.0 * s),
                r(g * h, 0.3),
                r(g * h, 0.3),
            ]
        })
        .collect();
    Owned {
        emb: r(d.vocab * d.emb, 1.0),
        cells,
        general: r(h * m, 0.5),
        additive: [r(a * h, 0.5), r(a, 0.3), r(a, 1.0)],
        w_c: r(h * (d.ctx() + h), 0.5),
        out: [r(d.vocab * d.out_in(), 1.5), r(d.vocab, 0.5)],
    }
}

/// Per layer the four cell weight slices of `o`, as [`DecoderWeights::cells`] takes them.
fn cell_refs(o: &Owned) -> Vec<[&[f32]; 4]> {
    o.cells
        .iter()
        .map(|c| [&c[0][..], &c[1][..], &c[2][..], &c[3][..]])
        .collect()
}

fn view<'a>(o: &'a Owned, cells: &'a [[&'a [f32]; 4]]) -> DecoderWeights<'a> {
    DecoderWeights {
        emb: &o.emb,
        cells,
        general: &o.general,
        additive: [&o.additive[0], &o.additive[1], &o.additive[2]],
        w_c: &o.w_c,
        out: [&o.out[0], &o.out[1]],
    }
}

/// The typed weights the packer takes, from the reference's slices (empty: absent).
fn typed<'a>(d: &DecoderLoopDims, w: &DecoderWeights<'a>) -> pack::DecoderWeights<'a> {
    let f = |v: &'a [f32]| {
        if v.is_empty() {
            Weight::Absent
        } else {
            Weight::F32(v)
        }
    };
    pack::DecoderWeights {
        emb: f(w.emb),
        cells: w
            .cells
            .iter()
            .map(|c| RecurrentLayerWeights {
                w_ih: f(c[0]),
                w_hh: f(c[1]),
                b_ih: f(c[2]),
                b_hh: f(c[3]),
            })
            .collect(),
        attention: match d.attention {
            LoopAttention::General => AttentionWeights::General { w: f(w.general) },
            LoopAttention::Additive => AttentionWeights::Additive {
                w_q: f(w.additive[0]),
                b_k: f(w.additive[1]),
                v: f(w.additive[2]),
            },
            _ => AttentionWeights::None,
        },
        w_c: f(w.w_c),
        out_w: f(w.out[0]),
        out_b: f(w.out[1]),
    }
}

struct Case {
    dims: DecoderLoopDims,
    t: usize,
    lens: Vec<usize>,
    max_len: usize,
}

/// Runs `case` on the GPU in dispatches of `chunk` steps and returns each row's result.
#[allow(clippy::too_many_arguments)]
fn run_gpu(
    gpu: &Gpu,
    case: &Case,
    w: &DecoderWeights,
    mem: &[f32],
    kp: &[f32],
    h0: &[Vec<Vec<f32>>],
    c0: &[Vec<Vec<f32>>],
    chunk: usize,
    fold: bool,
    bos: u32,
    eos: u32,
) -> Vec<LoopResult> {
    let d = &case.dims;
    let (r, t) = (case.lens.len(), case.t);
    let blob = typed(d, w).pack_with_fold(gpu, *d, fold).unwrap();
    let mem_t = Tensor::from_f32(gpu, mem, &[r, t, d.mem.max(1)]).unwrap();
    let kp_t = Tensor::from_f32(gpu, kp, &[r, t, d.attn_dim.max(1)]).unwrap();
    let layout = state_layout(d, r);
    let mut state = vec![0f32; layout[2].end.max(1)];
    for (row, (hr, cr)) in h0.iter().zip(c0).enumerate() {
        for l in 0..d.layers {
            let at = (l * r + row) * d.hidden;
            state[at..at + d.hidden].copy_from_slice(&hr[l]);
            if !layout[1].is_empty() {
                let at = layout[1].start + at;
                state[at..at + d.hidden].copy_from_slice(&cr[l]);
            }
        }
    }
    let state_t = Tensor::from_f32(gpu, &state, &[state.len()]).unwrap();
    let mut ctl: Vec<u32> = case
        .lens
        .iter()
        .flat_map(|&len| [bos, 0, len as u32, 0])
        .collect();
    ctl.extend([0; 4]);
    let ctl_t = Tensor::from_u32(gpu, &ctl, &[r + 1, 4]).unwrap();
    let toks = Tensor::zeros(gpu, &[case.max_len, r], DType::U32).unwrap();
    let logps = Tensor::zeros(gpu, &[case.max_len, r], DType::F32).unwrap();
    let attn = Tensor::zeros(gpu, &[case.max_len, r, t], DType::F32).unwrap();
    let bufs = LoopBuffers {
        mem: &mem_t,
        keys_proj: &kp_t,
        state: &state_t,
        ctl: &ctl_t,
        tokens: &toks,
        logps: &logps,
        attn: &attn,
    };
    let disp = dispatch(gpu, &blob, &bufs, case.max_len, eos, true).unwrap();
    // Runs stopping at chunk, 2 chunk, ... (the last one past max_len: the kernel caps it).
    for stop in (1..=case.max_len.div_ceil(chunk)).map(|i| i * chunk) {
        write_stop(gpu, &ctl_t, stop).unwrap();
        let mut rec = Recorder::new(gpu);
        rec.push(disp.clone());
        rec.submit().unwrap();
    }
    let tk: Vec<u32> = bytemuck::pod_collect_to_vec(&toks.to_bytes(gpu).unwrap());
    let lp = logps.to_vec_f32(gpu).unwrap();
    let at = attn.to_vec_f32(gpu).unwrap();
    let ctl_after: Vec<u32> = bytemuck::pod_collect_to_vec(&ctl_t.to_bytes(gpu).unwrap());
    (0..r)
        .map(|row| {
            let steps = ctl_after[row * 4 + 3] as usize;
            let mut res = LoopResult::default();
            for s in 0..steps {
                res.tokens.push(tk[s * r + row]);
                res.logps.push(lp[s * r + row]);
                if d.attention != LoopAttention::None {
                    let base = (s * r + row) * t;
                    res.attention.push(at[base..base + t].to_vec());
                }
            }
            res
        })
        .collect()
}

fn check(case: Case, seed: u64) {
    let gpu = common::gpu();
    let d = case.dims;
    let mut rng = Rng::new(seed);
    let o = random_weights(&d, &mut rng);
    let cells = cell_refs(&o);
    let w = view(&o, &cells);
    let r = case.lens.len();
    let (t, m, a) = (case.t, d.mem.max(1), d.attn_dim.max(1));
    let mem = rng.vec(r * t * m, -1.0, 1.0);
    let kp = rng.vec(r * t * a, -1.0, 1.0);
    let lstm = d.cell == CellKind::Lstm;
    let h0: Vec<Vec<Vec<f32>>> = (0..r)
        .map(|_| {
            (0..d.layers)
                .map(|_| rng.vec(d.hidden, -0.5, 0.5))
                .collect()
        })
        .collect();
    let c0: Vec<Vec<Vec<f32>>> = (0..r)
        .map(|_| {
            (0..d.layers)
                .map(|_| {
                    if lstm {
                        rng.vec(d.hidden, -0.5, 0.5)
                    } else {
                        Vec::new()
                    }
                })
                .collect()
        })
        .collect();
    let (bos, eos) = (1u32, 0u32);
    let want: Vec<LoopResult> = (0..r)
        .map(|row| {
            greedy(
                &d,
                &w,
                &LoopStart {
                    mem: &mem[row * t * m..(row + 1) * t * m],
                    keys_proj: &kp[row * t * a..(row + 1) * t * a],
                    t,
                    len: case.lens[row],
                    h0: h0[row].clone(),
                    c0: if lstm { c0[row].clone() } else { Vec::new() },
                    bos,
                    eos,
                    max_len: case.max_len,
                },
            )
        })
        .collect();
    assert!(
        want.iter().any(|x| x.tokens.len() > 2),
        "the case should decode more than two steps somewhere"
    );
    // Chunks with the embedding folded into layer 0 where `DecoderWeights::pack` would fold it, and
    // one run with the other choice (the folded table vs the embedding lookup).
    let auto = d.folds_embedding();
    for (chunk, fold) in [
        (case.max_len, auto),
        (1, auto),
        (3, auto),
        (case.max_len, !auto),
    ] {
        let got = run_gpu(&gpu, &case, &w, &mem, &kp, &h0, &c0, chunk, fold, bos, eos);
        for (row, (g, x)) in got.iter().zip(&want).enumerate() {
            let what = format!("{:?} row {row} chunk {chunk} fold {fold}", d);
            assert_eq!(g.tokens, x.tokens, "{what}: tokens");
            assert_close(&format!("{what}: logps"), &g.logps, &x.logps, 2e-4, 1e-3);
            for (s, (ga, xa)) in g.attention.iter().zip(&x.attention).enumerate() {
                assert_close(&format!("{what}: attention step {s}"), ga, xa, 2e-5, 1e-3);
            }
            assert_eq!(
                g.attention.len(),
                x.attention.len(),
                "{what}: attention steps"
            );
        }
    }
}

fn dims(cell: CellKind, attention: LoopAttention) -> DecoderLoopDims {
    DecoderLoopDims {
        cell,
        layers: 1,
        emb: 5,
        hidden: 37,
        mem: 37,
        attn_dim: 0,
        vocab: 71,
        attention,
        input_feeding: false,
        attn_layer: false,
        bahdanau: false,
    }
}

#[test]
fn lstm_stack_dot_input_feeding_attn_layer() {
    let d = DecoderLoopDims {
        layers: 2,
        input_feeding: true,
        attn_layer: true,
        ..dims(CellKind::Lstm, LoopAttention::Dot)
    };
    check(
        Case {
            dims: d,
            t: 9,
            lens: vec![9, 3, 1],
            max_len: 13,
        },
        1,
    );
}

#[test]
fn gru_general_one_position() {
    let d = DecoderLoopDims {
        emb: 8,
        hidden: 16,
        mem: 24,
        vocab: 5,
        ..dims(CellKind::Gru, LoopAttention::General)
    };
    check(
        Case {
            dims: d,
            t: 1,
            lens: vec![1, 1],
            max_len: 9,
        },
        2,
    );
}

#[test]
fn rnn_stack_additive_wide_vocab() {
    let d = DecoderLoopDims {
        layers: 3,
        hidden: 19,
        mem: 13,
        attn_dim: 11,
        vocab: 300,
        input_feeding: true,
        ..dims(CellKind::RnnTanh, LoopAttention::Additive)
    };
    check(
        Case {
            dims: d,
            t: 17,
            lens: vec![17, 5, 12, 2],
            max_len: 11,
        },
        3,
    );
}

#[test]
fn relu_rnn_without_attention() {
    let d = DecoderLoopDims {
        hidden: 6,
        mem: 0,
        vocab: 3,
        ..dims(CellKind::RnnRelu, LoopAttention::None)
    };
    check(
        Case {
            dims: d,
            t: 4,
            lens: vec![4],
            max_len: 7,
        },
        4,
    );
}

#[test]
fn bahdanau_order_additive_stack() {
    let d = DecoderLoopDims {
        layers: 2,
        emb: 7,
        hidden: 21,
        mem: 10,
        attn_dim: 9,
        vocab: 90,
        bahdanau: true,
        ..dims(CellKind::Gru, LoopAttention::Additive)
    };
    check(
        Case {
            dims: d,
            t: 6,
            lens: vec![6, 2, 5],
            max_len: 10,
        },
        6,
    );
}

#[test]
fn bahdanau_order_lstm_dot() {
    let d = DecoderLoopDims {
        bahdanau: true,
        ..dims(CellKind::Lstm, LoopAttention::Dot)
    };
    check(
        Case {
            dims: d,
            t: 3,
            lens: vec![3, 1],
            max_len: 8,
        },
        7,
    );
}

#[test]
fn bad_inputs_are_errors() {
    let gpu = common::gpu();
    let d = dims(CellKind::Gru, LoopAttention::Dot);
    let mut rng = Rng::new(5);
    let o = random_weights(&d, &mut rng);
    let cells = cell_refs(&o);
    let w = view(&o, &cells);
    // Wrong weight sizes name the tensor.
    let mut bad = w;
    bad.out = [&o.out[0][1..], &o.out[1]];
    let e = typed(&d, &bad).pack(&gpu, d).unwrap_err();
    assert!(e.to_string().contains("output weight"), "{e}");
    // ... with and without the embedding folded into layer 0.
    let c = &o.cells[0];
    let short_ih = [[&c[0][1..], &c[1][..], &c[2][..], &c[3][..]]];
    let short_b = [[&c[0][..], &c[1][..], &c[2][1..], &c[3][..]]];
    for fold in [true, false] {
        let mut bad = w;
        bad.emb = &o.emb[1..];
        let e = typed(&d, &bad).pack_with_fold(&gpu, d, fold).unwrap_err();
        assert!(e.to_string().contains("embedding"), "{e}");
        let mut bad = w;
        bad.cells = &short_ih;
        let e = typed(&d, &bad).pack_with_fold(&gpu, d, fold).unwrap_err();
        assert!(e.to_string().contains("layer 0 weight_ih"), "{e}");
        let mut bad = w;
        bad.cells = &short_b;
        let e = typed(&d, &bad).pack_with_fold(&gpu, d, fold).unwrap_err();
        assert!(e.to_string().contains("bias_ih"), "{e}");
    }
    let two_layers = DecoderLoopDims { layers: 2, ..d };
    let e = typed(&two_layers, &w).pack(&gpu, two_layers).unwrap_err();
    assert!(e.to_string().contains("2 layers"), "{e}");
    // The Bahdanau order with the attentional layer.
    let e = DecoderLoopDims {
        bahdanau: true,
        attn_layer: true,
        ..d
    }
    .check(&gpu, 4)
    .unwrap_err();
    assert!(e.to_string().contains("Bahdanau"), "{e}");
    // Dot attention with hidden != memory width.
    let e = DecoderLoopDims { mem: 36, ..d }.check(&gpu, 4).unwrap_err();
    assert!(e.to_string().contains("dot attention"), "{e}");
    // A state that does not fit workgroup memory is a limit error, not a failed compile.
    let huge = DecoderLoopDims {
        hidden: 1 << 16,
        mem: 1 << 16,
        ..d
    };
    let e = huge.check(&gpu, 4).unwrap_err();
    assert!(e.to_string().contains("workgroup"), "{e}");
    // Buffers of the wrong shape.
    let blob = typed(&d, &w).pack(&gpu, d).unwrap();
    let mem = Tensor::zeros(&gpu, &[2, 4, 37], DType::F32).unwrap();
    let state = Tensor::zeros(&gpu, &[2 * 37 + 2 * 37], DType::F32).unwrap();
    let ctl = Tensor::zeros(&gpu, &[2, 4], DType::U32).unwrap();
    let toks = Tensor::zeros(&gpu, &[5, 2], DType::U32).unwrap();
    let bufs = LoopBuffers {
        mem: &mem,
        keys_proj: &mem,
        state: &state,
        ctl: &ctl,
        tokens: &toks,
        logps: &toks,
        attn: &mem,
    };
    // ctl lacks the stop row.
    let e = dispatch(&gpu, &blob, &bufs, 5, 0, false).unwrap_err();
    assert!(e.to_string().contains("ctl"), "{e}");
    let e = dispatch(&gpu, &blob, &bufs, 0, 0, false).unwrap_err();
    assert!(e.to_string().contains("max_len"), "{e}");
    let e = write_stop(&gpu, &mem, 3).unwrap_err();
    assert!(e.to_string().contains("[R + 1, 4]"), "{e}");
}

/// Two beam steps (even: state half 0 -> 1, odd: 1 -> 0) with permuted parents: logits, new states
/// and attention weights against the reference step applied to each row's parent state.
fn check_beam_steps(d: DecoderLoopDims, t: usize, lens: &[usize], seed: u64) {
    let gpu = common::gpu();
    let mut rng = Rng::new(seed);
    let o = random_weights(&d, &mut rng);
    let cells = cell_refs(&o);
    let w = view(&o, &cells);
    let r = lens.len();
    let (m, a) = (d.mem.max(1), d.attn_dim.max(1));
    let mem = rng.vec(r * t * m, -1.0, 1.0);
    let kp = rng.vec(r * t * a, -1.0, 1.0);
    let lstm = d.cell == CellKind::Lstm;
    let mut states: Vec<StepState> = (0..r)
        .map(|_| StepState {
            h: (0..d.layers)
                .map(|_| rng.vec(d.hidden, -0.5, 0.5))
                .collect(),
            c: (0..d.layers)
                .map(|_| {
                    if lstm {
                        rng.vec(d.hidden, -0.5, 0.5)
                    } else {
                        vec![0.0; d.hidden]
                    }
                })
                .collect(),
            ctx: rng.vec(d.ctx(), -0.5, 0.5),
        })
        .collect();
    let blob = typed(&d, &w).pack(&gpu, d).unwrap();
    let layout = state_layout(&d, r);
    let half = layout[2].end;
    let pack = |states: &[StepState], at: usize, buf: &mut Vec<f32>| {
        for (row, s) in states.iter().enumerate() {
            for l in 0..d.layers {
                let i = at + (l * r + row) * d.hidden;
                buf[i..i + d.hidden].copy_from_slice(&s.h[l]);
                if lstm {
                    let i = at + layout[1].start + (l * r + row) * d.hidden;
                    buf[i..i + d.hidden].copy_from_slice(&s.c[l]);
                }
            }
            let i = at + layout[2].start + row * d.ctx();
            buf[i..i + d.ctx()].copy_from_slice(&s.ctx);
        }
    };
    let mut init = vec![0f32; beam_state_len(&d, r)];
    pack(&states, 0, &mut init);
    let state_t = Tensor::from_f32(&gpu, &init, &[init.len()]).unwrap();
    let lens_u: Vec<u32> = lens.iter().map(|&l| l as u32).collect();
    write_beam_lengths(&gpu, &d, &state_t, &lens_u).unwrap();
    let mem_t = Tensor::from_f32(&gpu, &mem, &[r, t, m]).unwrap();
    let kp_t = Tensor::from_f32(&gpu, &kp, &[r, t, a]).unwrap();
    let parent_t = Tensor::zeros(&gpu, &[r], DType::U32).unwrap();
    let tokens_t = Tensor::zeros(&gpu, &[r], DType::U32).unwrap();
    let logits_t = Tensor::zeros(&gpu, &[r, d.vocab], DType::F32).unwrap();
    let weights_t = Tensor::zeros(&gpu, &[r, t], DType::F32).unwrap();
    let bufs = BeamStepBuffers {
        mem: &mem_t,
        keys_proj: &kp_t,
        state: &state_t,
        parent: &parent_t,
        tokens: &tokens_t,
        logits: &logits_t,
        weights: &weights_t,
    };
    let steps = beam_step_dispatches(&gpu, &blob, &bufs, true, None).unwrap();
    for (n, disp) in steps.iter().enumerate() {
        // Rows continue a permutation (with repeats) of the previous rows.
        let parent: Vec<u32> = (0..r).map(|i| ((i * 7 + n * 3 + 1) % r) as u32).collect();
        let tokens: Vec<u32> = (0..r).map(|_| rng.below(d.vocab) as u32).collect();
        gpu.queue()
            .write_buffer(parent_t.buffer(), 0, bytemuck::cast_slice(&parent));
        gpu.queue()
            .write_buffer(tokens_t.buffer(), 0, bytemuck::cast_slice(&tokens));
        let mut rec = Recorder::new(&gpu);
        rec.push(disp.clone());
        rec.submit().unwrap();
        let logits = logits_t.to_vec_f32(&gpu).unwrap();
        let weights = weights_t.to_vec_f32(&gpu).unwrap();
        let mut next = Vec::new();
        for row in 0..r {
            let mut st = states[parent[row] as usize].clone();
            let start = LoopStart {
                mem: &mem[row * t * m..(row + 1) * t * m],
                keys_proj: &kp[row * t * a..(row + 1) * t * a],
                t,
                len: lens[row],
                h0: Vec::new(),
                c0: Vec::new(),
                bos: 0,
                eos: 0,
                max_len: 1,
            };
            let (want, want_w) = step(&d, &w, &start, &mut st, tokens[row]);
            let want: Vec<f32> = want.iter().map(|&z| z as f32).collect();
            let what = format!("{d:?} step {n} row {row}");
            assert_close(
                &format!("{what}: logits"),
                &logits[row * d.vocab..(row + 1) * d.vocab],
                &want,
                2e-4,
                1e-3,
            );
            if let Some(ww) = want_w {
                assert_close(
                    &format!("{what}: weights"),
                    &weights[row * t..(row + 1) * t],
                    &ww,
                    2e-5,
                    1e-3,
                );
            }
            next.push(st);
        }
        // The new states are in the other half.
        let got = state_t.to_vec_f32(&gpu).unwrap();
        let mut want = vec![0f32; init.len()];
        let at = if n == 0 { half } else { 0 };
        pack(&next, at, &mut want);
        assert_close(
            &format!("{d:?} step {n}: new states"),
            &got[at..at + half],
            &want[at..at + half],
            2e-5,
            1e-3,
        );
        states = next;
    }
}

#[test]
fn beam_steps_lstm_stack_general_feeding() {
    let d = DecoderLoopDims {
        layers: 2,
        mem: 11,
        input_feeding: true,
        attn_layer: true,
        ..dims(CellKind::Lstm, LoopAttention::General)
    };
    check_beam_steps(d, 5, &[5, 2, 5, 1, 3], 8);
}

#[test]
fn beam_steps_gru_bahdanau_additive() {
    let d = DecoderLoopDims {
        // V <= 2 E: the embedding is folded into layer 0's input projection.
        emb: 9,
        hidden: 12,
        mem: 9,
        attn_dim: 6,
        vocab: 17,
        bahdanau: true,
        ..dims(CellKind::Gru, LoopAttention::Additive)
    };
    check_beam_steps(d, 4, &[4, 4, 1, 3], 9);
}

#[test]
fn beam_step_skips_rows_fed_the_end_token() {
    let gpu = common::gpu();
    let d = DecoderLoopDims {
        hidden: 16,
        mem: 16,
        vocab: 9,
        ..dims(CellKind::Gru, LoopAttention::Dot)
    };
    let mut rng = Rng::new(10);
    let o = random_weights(&d, &mut rng);
    let cells = cell_refs(&o);
    let w = view(&o, &cells);
    let (r, t, eos) = (3usize, 4usize, 7u32);
    let mem = rng.vec(r * t * d.mem, -1.0, 1.0);
    let h0 = rng.vec(d.hidden, -0.5, 0.5);
    let blob = typed(&d, &w).pack(&gpu, d).unwrap();
    let mut init = vec![0f32; beam_state_len(&d, r)];
    // Every row starts from h0 (state half 0, layer 0).
    for row in 0..r {
        init[row * d.hidden..(row + 1) * d.hidden].copy_from_slice(&h0);
    }
    let state_t = Tensor::from_f32(&gpu, &init, &[init.len()]).unwrap();
    write_beam_lengths(&gpu, &d, &state_t, &[4, 4, 4]).unwrap();
    // Lengths for another row count do not fit the state: an error naming it.
    let e = write_beam_lengths(&gpu, &d, &state_t, &[4, 4]).unwrap_err();
    assert!(e.to_string().contains("state"), "{e}");
    let mem_t = Tensor::from_f32(&gpu, &mem, &[r, t, d.mem]).unwrap();
    let parent_t = Tensor::from_u32(&gpu, &[0, 1, 2], &[r]).unwrap();
    let tokens_t = Tensor::from_u32(&gpu, &[eos, 5, eos], &[r]).unwrap();
    let logits_t = Tensor::from_f32(&gpu, &vec![123.0; r * d.vocab], &[r, d.vocab]).unwrap();
    // Stand-ins: a read-only and a read-write binding may not share a buffer.
    let no_kp = Tensor::zeros(&gpu, &[4], DType::F32).unwrap();
    let no_weights = Tensor::zeros(&gpu, &[4], DType::F32).unwrap();
    let bufs = BeamStepBuffers {
        mem: &mem_t,
        keys_proj: &no_kp,
        state: &state_t,
        parent: &parent_t,
        tokens: &tokens_t,
        logits: &logits_t,
        weights: &no_weights,
    };
    let steps = beam_step_dispatches(&gpu, &blob, &bufs, false, Some(eos)).unwrap();
    let mut rec = Recorder::new(&gpu);
    rec.push(steps[0].clone());
    rec.submit().unwrap();
    let logits = logits_t.to_vec_f32(&gpu).unwrap();
    let start = LoopStart {
        mem: &mem[t * d.mem..2 * t * d.mem],
        keys_proj: &[],
        t,
        len: 4,
        h0: Vec::new(),
        c0: Vec::new(),
        bos: 0,
        eos,
        max_len: 1,
    };
    let mut st = StepState {
        h: vec![h0.clone()],
        c: vec![vec![0.0; d.hidden]],
        ctx: vec![0.0; d.ctx()],
    };
    let (want, _) = step(&d, &w, &start, &mut st, 5);
    let want: Vec<f32> = want.iter().map(|&z| z as f32).collect();
    assert_close(
        "row 1 logits",
        &logits[d.vocab..2 * d.vocab],
        &want,
        2e-4,
        1e-3,
    );
    for row in [0, 2] {
        let untouched = &logits[row * d.vocab..(row + 1) * d.vocab];
        assert!(
            untouched.iter().all(|&z| z == 123.0),
            "row {row} ran: {untouched:?}"
        );
    }
    // Without skipping, every row runs.
    let steps = beam_step_dispatches(&gpu, &blob, &bufs, false, None).unwrap();
    let mut rec = Recorder::new(&gpu);
    rec.push(steps[0].clone());
    rec.submit().unwrap();
    let logits = logits_t.to_vec_f32(&gpu).unwrap();
    assert!(logits.iter().all(|&z| z != 123.0));
}
