//! The KV-cache unit's tests: write, gather and cache attention against [`super::reference`] on
//! awkward shapes (head widths not multiples of 4, one row, one position, steps at and past the
//! last position, chunk boundaries), each step index written into the GPU step tensor as the
//! loop runtime does.

use super::*;
use crate::gpu::Gpu;
use crate::testing::*;

fn run(gpu: &Gpu, f: impl FnOnce(&mut Recorder) -> Result<()>) {
    let mut rec = Recorder::new(gpu);
    f(&mut rec).unwrap();
    rec.submit().unwrap();
}

const LAYOUTS: [CacheLayout; 7] = [
    CacheLayout {
        planes: 2,
        rows: 1,
        positions: 1,
        heads: 1,
        width: 1,
    },
    CacheLayout {
        planes: 4,
        rows: 3,
        positions: 17,
        heads: 2,
        width: 10,
    },
    CacheLayout {
        planes: 6,
        rows: 5,
        positions: 33,
        heads: 3,
        width: 21,
    },
    CacheLayout {
        planes: 2,
        rows: 2,
        positions: 40,
        heads: 4,
        width: 64,
    },
    // A head wider than a workgroup (Dh 96 > 64) and positions over three 64-position chunks.
    CacheLayout {
        planes: 2,
        rows: 2,
        positions: 150,
        heads: 2,
        width: 192,
    },
    // One chunk on every adapter (at most 16 positions): the CPU kernel's merge-free pass.
    CacheLayout {
        planes: 2,
        rows: 70,
        positions: 12,
        heads: 2,
        width: 14,
    },
    // Rows x heads enough for a CPU adapter's lanes: one chunk of 40 positions there.
    CacheLayout {
        planes: 2,
        rows: 40,
        positions: 40,
        heads: 2,
        width: 16,
    },
];

/// The CPU kernel's chunks: the whole cache once rows x heads fill the lanes wanted, else chunks
/// of at least the minimum (16 here, 256 in the CPU tuning table), never more chunks than
/// positions allow.
#[test]
fn cpu_chunks_cover_the_cache_and_split_only_for_few_rows() {
    let lay = |rows, heads, positions| CacheLayout {
        planes: 2,
        rows,
        positions,
        heads,
        width: heads,
    };
    // (rows, heads, positions, lanes wanted) -> chunk
    for (r, h, t, lanes, want) in [
        (64, 2, 100, 64, 100),
        (128, 4, 21, 64, 21),
        (1, 8, 33, 64, 17),
        (4, 4, 21, 64, 21),
        (1, 1, 5, 64, 5),
        (2, 2, 1000, 64, 63),
        (1, 1, 1, 65536, 1),
    ] {
        let l = lay(r, h, t);
        let chunk = cpu_chunk(&l, lanes, CHUNK);
        assert_eq!(chunk, want, "{l:?} lanes {lanes}");
        let nsplit = t.div_ceil(chunk);
        assert!(
            nsplit * chunk >= t && (nsplit == 1 || chunk >= CHUNK),
            "{l:?}"
        );
    }
    // A longer minimum: no split under it, whole chunks of it over it.
    assert_eq!(cpu_chunk(&lay(1, 8, 255), 64, 256), 255);
    assert_eq!(cpu_chunk(&lay(1, 8, 512), 64, 256), 256);
    assert_eq!(cpu_chunk(&lay(1, 8, 700), 64, 256), 350);
}

/// Every first pass of the cache attention (one workgroup per 64-position chunk; one invocation
/// per chunk of at least 16 positions, merged, and per whole cache up to 256 positions, not) at
/// every step of every layout, after a separate write and appending the step's keys and values
/// themselves (from a fused q/k/v tensor): the public functions run the first pass the tuning
/// table names, this test the others too.
#[test]
fn write_then_attend_matches_reference_at_every_step() {
    for kernel in [
        CacheKernel::Workgroup,
        CacheKernel::Lanes { min_chunk: CHUNK },
        CacheKernel::Lanes { min_chunk: 256 },
    ] {
        for append in [false, true] {
            write_then_attend(kernel, append);
        }
    }
}

fn write_then_attend(kernel: CacheKernel, append: bool) {
    let gpu = gpu();
    let mut rng = Rng::new(7);
    for lay in LAYOUTS {
        let [p, r, t, e] = lay.shape();
        let kv = Tensor::zeros(&gpu, &lay.shape(), DType::F32).unwrap();
        let mut host = vec![0f32; p * r * t * e];
        let step = Tensor::zeros(&gpu, &[1], DType::U32).unwrap();
        let layer = lay.planes / 2 - 1;
        // One step past the end too: the write does nothing, attention covers all T.
        for s in 0..=t {
            step.write_bytes(&gpu, 0, &(s as u32).to_le_bytes());
            let k = rng.vec(r * e, -2.0, 2.0);
            let v = rng.vec(r * e, -2.0, 2.0);
            let q = rng.vec(r * e, -2.0, 2.0);
            let (kt, vt, qt) = (
                Tensor::from_f32(&gpu, &k, &[r, e]).unwrap(),
                Tensor::from_f32(&gpu, &v, &[r, e]).unwrap(),
                Tensor::from_f32(&gpu, &q, &[r, e]).unwrap(),
            );
            let out = Tensor::zeros(&gpu, &[r, e], DType::F32).unwrap();
            // [k | q | v] rows, so no column is where the plain projection would have it.
            let kqv: Vec<f32> = (0..r)
                .flat_map(|row| {
                    let at = |x: &[f32]| x[row * e..(row + 1) * e].to_vec();
                    [at(&k), at(&q), at(&v)].concat()
                })
                .collect();
            let fused = Tensor::from_f32(&gpu, &kqv, &[r, 3 * e]).unwrap();
            run(&gpu, |rec| {
                if append {
                    let q = Rows {
                        tensor: &fused,
                        col: e,
                    };
                    let cols = Some((0, 2 * e));
                    return record_cache_attention_kernel(
                        rec, &lay, layer, q, cols, &kv, &step, &out, kernel,
                    );
                }
                record_kv_write(rec, &lay, layer, &kt, &vt, &step, &kv)?;
                let q = Rows::all(&qt);
                record_cache_attention_kernel(rec, &lay, layer, q, None, &kv, &step, &out, kernel)
            });
            reference::kv_write(&lay, layer, &k, &v, s, &mut host);
            let want = reference::cache_attention(&lay, layer, &q, &host, s);
            assert_close(
                &format!("{lay:?} step {s} {kernel:?} append {append}"),
                &out.to_vec_f32(&gpu).unwrap(),
                &want,
                1e-5,
                1e-4,
            );
        }
        assert_eq!(
            kv.to_vec_f32(&gpu).unwrap(),
            host,
            "{lay:?} cache contents, {kernel:?} append {append}"
        );
    }
}

#[test]
fn gather_reorders_rows_before_the_step_only() {
    let gpu = gpu();
    let mut rng = Rng::new(9);
    for lay in LAYOUTS {
        let n = lay.shape().iter().product::<usize>();
        let src = rng.vec(n, -1.0, 1.0);
        let dst0 = rng.vec(n, -1.0, 1.0);
        // Parents with repeats and one out of range (keeps its own row).
        let parents: Vec<u32> = (0..lay.rows)
            .map(|i| {
                if i == 1 {
                    99
                } else {
                    rng.below(lay.rows) as u32
                }
            })
            .collect();
        for s in [0, 1, lay.positions / 2, lay.positions, lay.positions + 3] {
            let st = Tensor::from_f32(&gpu, &src, &lay.shape()).unwrap();
            let dt = Tensor::from_f32(&gpu, &dst0, &lay.shape()).unwrap();
            let pt = Tensor::from_u32(&gpu, &parents, &[lay.rows]).unwrap();
            let step = Tensor::from_u32(&gpu, &[s as u32], &[1]).unwrap();
            run(&gpu, |rec| {
                record_kv_gather(rec, &lay, &st, &pt, &step, &dt)
            });
            let mut want = dst0.clone();
            reference::kv_gather(&lay, &src, &parents, s, &mut want);
            assert_eq!(dt.to_vec_f32(&gpu).unwrap(), want, "{lay:?} s {s}");
        }
    }
}

#[test]
fn refuses_bad_shapes() {
    let gpu = gpu();
    let lay = LAYOUTS[1];
    let kv = Tensor::zeros(&gpu, &lay.shape(), DType::F32).unwrap();
    let step = Tensor::zeros(&gpu, &[1], DType::U32).unwrap();
    let good = Tensor::zeros(&gpu, &[lay.rows, lay.width], DType::F32).unwrap();
    let bad = Tensor::zeros(&gpu, &[lay.rows, lay.width + 1], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    let e = record_kv_write(&mut rec, &lay, 0, &bad, &good, &step, &kv).unwrap_err();
    assert!(
        e.to_string().contains("kv_write") && e.to_string().contains("[3, 11]"),
        "{e}"
    );
    let e = record_cache_attention(&mut rec, &lay, 2, &good, &kv, &step, &good).unwrap_err();
    assert!(e.to_string().contains("layer 2"), "{e}");
    let two = Tensor::zeros(&gpu, &[2], DType::U32).unwrap();
    assert!(record_cache_attention(&mut rec, &lay, 0, &good, &kv, &two, &good).is_err());
    let odd = CacheLayout { heads: 3, ..lay };
    assert!(odd.check("x", None).is_err());
}

/// Keys, values and queries read from the column thirds of one fused `[R, 3E]` projection (as a
/// decoder with a fused q/k/v linear feeds them) give the same cache and outputs as separate
/// `[R, E]` rows, on every layout (E not a multiple of 4 included); sources whose columns do not
/// fit, or whose k and v widths differ, are refused.
#[test]
fn fused_projection_columns_match_separate_rows() {
    let gpu = gpu();
    let mut rng = Rng::new(11);
    for lay in LAYOUTS {
        let [p, r, t, e] = lay.shape();
        let kv = Tensor::zeros(&gpu, &lay.shape(), DType::F32).unwrap();
        let mut host = vec![0f32; p * r * t * e];
        let step = Tensor::zeros(&gpu, &[1], DType::U32).unwrap();
        let layer = 0;
        for s in 0..t.min(5) {
            step.write_bytes(&gpu, 0, &(s as u32).to_le_bytes());
            let qkv = rng.vec(r * 3 * e, -2.0, 2.0);
            let third = |j: usize| -> Vec<f32> {
                (0..r)
                    .flat_map(|row| qkv[row * 3 * e + j * e..row * 3 * e + (j + 1) * e].to_vec())
                    .collect()
            };
            let (q, k, v) = (third(0), third(1), third(2));
            let fused = Tensor::from_f32(&gpu, &qkv, &[r, 3 * e]).unwrap();
            let out = Tensor::zeros(&gpu, &[r, e], DType::F32).unwrap();
            let at = |col| Rows {
                tensor: &fused,
                col,
            };
            run(&gpu, |rec| {
                record_kv_write_from(rec, &lay, layer, at(e), at(2 * e), &step, &kv)?;
                record_cache_attention_from(rec, &lay, layer, at(0), &kv, &step, &out)
            });
            reference::kv_write(&lay, layer, &k, &v, s, &mut host);
            let want = reference::cache_attention(&lay, layer, &q, &host, s);
            assert_close(
                &format!("fused {lay:?} step {s}"),
                &out.to_vec_f32(&gpu).unwrap(),
                &want,
                1e-5,
                1e-4,
            );
        }
        assert_eq!(
            kv.to_vec_f32(&gpu).unwrap(),
            host,
            "fused {lay:?} cache contents"
        );
    }
    let lay = LAYOUTS[1];
    let (r, e) = (lay.rows, lay.width);
    let kv = Tensor::zeros(&gpu, &lay.shape(), DType::F32).unwrap();
    let step = Tensor::zeros(&gpu, &[1], DType::U32).unwrap();
    let fused = Tensor::zeros(&gpu, &[r, 3 * e], DType::F32).unwrap();
    let other = Tensor::zeros(&gpu, &[r, 2 * e], DType::F32).unwrap();
    let out = Tensor::zeros(&gpu, &[r, e], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    let past = Rows {
        tensor: &fused,
        col: 2 * e + 1,
    };
    let e1 = record_cache_attention_from(&mut rec, &lay, 0, past, &kv, &step, &out).unwrap_err();
    assert!(
        e1.to_string().contains("from column 21") && e1.to_string().contains("[3, 30]"),
        "{e1}"
    );
    let k = Rows {
        tensor: &fused,
        col: e,
    };
    let v = Rows {
        tensor: &other,
        col: e,
    };
    let e2 = record_kv_write_from(&mut rec, &lay, 0, k, v, &step, &kv).unwrap_err();
    assert!(e2.to_string().contains("same row width"), "{e2}");
    // The appending attention checks its k and v columns as it checks q's.
    let q = Rows {
        tensor: &fused,
        col: 0,
    };
    for (k_col, v_col, name) in [(2 * e + 1, 2 * e, "k"), (e, 2 * e + 1, "v")] {
        let e3 =
            record_cache_attention_appending(&mut rec, &lay, 0, q, k_col, v_col, &kv, &step, &out)
                .unwrap_err()
                .to_string();
        assert!(
            e3.contains(&format!("{name} [3, 30] from column 21")),
            "{e3}"
        );
    }
}
