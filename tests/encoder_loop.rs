//! The fused encoder layers (`kernels::encoder_loop`) against the CPU reference
//! (`reference::recurrent::forward` on the embedded ids) on random f16-representable weights:
//! every cell, stacks, both directions, ragged lengths (1 and T), sizes that are not multiples of 8,
//! and bad inputs.

mod common;

use std::collections::HashMap;

use common::{assert_close, f16_round, Rng};
use heedful::gpu::Recorder;
use heedful::kernels::encoder_loop::{record, EncoderBuffers};
use heedful::kernels::recurrent::{CellKind, RecurrentSpec};
use heedful::reference::recurrent::forward;
use heedful::tensor::{DType, Tensor};
use heedful::weights::pack::{EncoderWeights, RecurrentLayerWeights, Weight};

fn weights(spec: &RecurrentSpec, rng: &mut Rng, bias: bool) -> HashMap<String, Vec<f32>> {
    let (h, g, d) = (spec.hidden_size, spec.kind.gates(), spec.directions());
    let s = 1.5 / (h as f32).sqrt();
    let mut w = HashMap::new();
    for l in 0..spec.num_layers {
        let input = if l == 0 { spec.input_size } else { d * h };
        for dir in 0..d {
            let sfx = format!("_l{l}{}", if dir == 1 { "_reverse" } else { "" });
            let mut names = vec![("weight_ih", g * h * input), ("weight_hh", g * h * h)];
            if bias {
                names.extend([("bias_ih", g * h), ("bias_hh", g * h)]);
            }
            for (name, n) in names {
                w.insert(format!("{name}{sfx}"), f16_round(&rng.vec(n, -s, s)));
            }
        }
    }
    w
}

/// The typed weights of `spec` over the named map `w` (as the reference reads it) and `emb`.
fn typed<'a>(
    spec: &RecurrentSpec,
    emb: &'a [f32],
    w: &'a HashMap<String, Vec<f32>>,
) -> EncoderWeights<'a> {
    let get = |n: String| w.get(&n).map_or(Weight::Absent, |v| Weight::F32(v));
    let mut layers = Vec::new();
    for l in 0..spec.num_layers {
        for dir in 0..spec.directions() {
            let sfx = format!("_l{l}{}", if dir == 1 { "_reverse" } else { "" });
            layers.push(RecurrentLayerWeights {
                w_ih: get(format!("weight_ih{sfx}")),
                w_hh: get(format!("weight_hh{sfx}")),
                b_ih: get(format!("bias_ih{sfx}")),
                b_hh: get(format!("bias_hh{sfx}")),
            });
        }
    }
    EncoderWeights {
        emb: Weight::F32(emb),
        layers,
    }
}

fn check(spec: RecurrentSpec, vocab: usize, t: usize, lengths: &[usize], bias: bool, seed: u64) {
    let gpu = common::gpu();
    let mut rng = Rng::new(seed);
    let e = spec.input_size;
    let emb = f16_round(&rng.vec(vocab * e, -1.0, 1.0));
    let w = weights(&spec, &mut rng, bias);
    let r = lengths.len();
    let ids: Vec<u32> = (0..r * t).map(|_| rng.below(vocab) as u32).collect();
    // Reference: embed on the CPU, then the PyTorch-semantics layer stack.
    let x: Vec<f32> = ids
        .iter()
        .flat_map(|&i| emb[i as usize * e..(i as usize + 1) * e].to_vec())
        .collect();
    let want = forward(&spec, &w, &x, r, t, None, None, Some(lengths));

    // Both ways of reading layer 0's input: the folded table and the embedding lookup.
    for fold in [true, false] {
        let blob = typed(&spec, &emb, &w)
            .pack_with_fold(&gpu, spec, vocab, fold)
            .unwrap();
        let (dirs, h, layers) = (spec.directions(), spec.hidden_size, spec.num_layers);
        let ids_t = Tensor::from_u32(&gpu, &ids, &[r, t]).unwrap();
        let lens: Vec<u32> = lengths.iter().map(|&l| l as u32).collect();
        let lens_t = Tensor::from_u32(&gpu, &lens, &[r]).unwrap();
        // Poisoned outputs: every element must be written.
        let poison = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            Tensor::from_f32(&gpu, &vec![f32::NAN; n], shape).unwrap()
        };
        let outputs: Vec<Tensor> = (0..layers).map(|_| poison(&[r, t, dirs * h])).collect();
        let h_n = poison(&[layers * dirs, r, h]);
        let lstm = spec.kind == CellKind::Lstm;
        let c_n = lstm.then(|| poison(&[layers * dirs, r, h]));
        let mut rec = Recorder::new(&gpu);
        let bufs = EncoderBuffers {
            ids: &ids_t,
            lengths: &lens_t,
            outputs: &outputs,
            h_n: &h_n,
            c_n: c_n.as_ref(),
        };
        record(&mut rec, &blob, &bufs).unwrap();
        rec.submit().unwrap();
        let what = format!("{spec:?} lengths {lengths:?} fold {fold}");
        let got = outputs[layers - 1].to_vec_f32(&gpu).unwrap();
        assert_close(&format!("{what}: output"), &got, &want.output, 1e-4, 1e-3);
        let got = h_n.to_vec_f32(&gpu).unwrap();
        assert_close(&format!("{what}: h_n"), &got, &want.h_n, 1e-4, 1e-3);
        if let (Some(c), Some(wc)) = (&c_n, &want.c_n) {
            let got = c.to_vec_f32(&gpu).unwrap();
            assert_close(&format!("{what}: c_n"), &got, wc, 1e-4, 1e-3);
        }
    }
}

fn spec(kind: CellKind, e: usize, h: usize, layers: usize, bi: bool) -> RecurrentSpec {
    RecurrentSpec {
        kind,
        input_size: e,
        hidden_size: h,
        num_layers: layers,
        bidirectional: bi,
    }
}

#[test]
fn lstm_two_layers_bidirectional_ragged() {
    check(
        spec(CellKind::Lstm, 5, 13, 2, true),
        11,
        7,
        &[7, 3, 1],
        true,
        1,
    );
}

#[test]
fn gru_one_direction_without_bias() {
    check(
        spec(CellKind::Gru, 9, 20, 1, false),
        4,
        6,
        &[2, 6],
        false,
        2,
    );
}

#[test]
fn relu_rnn_three_layers() {
    check(
        spec(CellKind::RnnRelu, 3, 6, 3, true),
        7,
        5,
        &[5, 4, 1, 2],
        true,
        3,
    );
}

#[test]
fn tanh_rnn_like_the_bundled_g2p_encoder() {
    check(
        spec(CellKind::RnnTanh, 64, 96, 1, true),
        29,
        12,
        &[12, 9],
        true,
        4,
    );
}

#[test]
fn bad_inputs_are_errors() {
    let gpu = common::gpu();
    let s = spec(CellKind::Lstm, 4, 8, 1, false);
    let mut rng = Rng::new(5);
    let w = weights(&s, &mut rng, true);
    let emb = vec![0.0; 3 * 4];
    // Wrong embedding size and a missing weight name the tensor.
    // (Folded and not.)
    for fold in [true, false] {
        let e = typed(&s, &emb[1..], &w)
            .pack_with_fold(&gpu, s, 3, fold)
            .unwrap_err();
        assert!(e.to_string().contains("embedding"), "{e}");
        let mut missing = w.clone();
        missing.remove("weight_hh_l0");
        let e = typed(&s, &emb, &missing)
            .pack_with_fold(&gpu, s, 3, fold)
            .unwrap_err();
        assert!(e.to_string().contains("layer 0 weight_hh"), "{e}");
        let s2 = spec(CellKind::Lstm, 4, 8, 2, false);
        let e = typed(&s2, &emb, &w)
            .pack_with_fold(&gpu, s2, 3, fold)
            .unwrap_err();
        assert!(e.to_string().contains("layer 1 weight_ih"), "{e}");
        // A layer list that does not match the spec.
        let mut short = typed(&s, &emb, &w);
        short.layers.pop();
        let e = short.pack_with_fold(&gpu, s, 3, fold).unwrap_err();
        assert!(e.to_string().contains("layer weight sets"), "{e}");
        // A wrong-sized weight names it and its expected shape.
        let mut wrong = w.clone();
        wrong.insert("weight_ih_l0".into(), vec![0.0; 5]);
        let e = typed(&s, &emb, &wrong)
            .pack_with_fold(&gpu, s, 3, fold)
            .unwrap_err();
        assert!(e.to_string().contains("layer 0 weight_ih"), "{e}");
    }
    // Buffers of the wrong shape or without the LSTM's c_n.
    let blob = typed(&s, &emb, &w).pack(&gpu, s, 3).unwrap();
    let ids = Tensor::zeros(&gpu, &[2, 5], DType::U32).unwrap();
    let lens = Tensor::zeros(&gpu, &[2], DType::U32).unwrap();
    let out = vec![Tensor::zeros(&gpu, &[2, 5, 8], DType::F32).unwrap()];
    let h_n = Tensor::zeros(&gpu, &[1, 2, 8], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    let mut bufs = EncoderBuffers {
        ids: &ids,
        lengths: &lens,
        outputs: &out,
        h_n: &h_n,
        c_n: None,
    };
    let e = record(&mut rec, &blob, &bufs).unwrap_err();
    assert!(e.to_string().contains("c_n"), "{e}");
    bufs.c_n = Some(&h_n);
    let bad_out = vec![Tensor::zeros(&gpu, &[2, 4, 8], DType::F32).unwrap()];
    bufs.outputs = &bad_out;
    let e = record(&mut rec, &blob, &bufs).unwrap_err();
    assert!(e.to_string().contains("output of layer 0"), "{e}");
    bufs.outputs = &out;
    bufs.ids = &lens;
    let e = record(&mut rec, &blob, &bufs).unwrap_err();
    assert!(e.to_string().contains("ids"), "{e}");
}
