// Layer norm over the last dim, as F.layer_norm, optionally of a residual sum (post-LN blocks):
//   y[r, i] = (s[r, i] - mean_r) / sqrt(var_r + eps) * weight[i] + bias[i],  var_r biased (divide by D),
//   s = x, or s = x + residual (rounded to f32 as a separate add would) for the fused variant.
//
// Generated prologue (src/kernels/layer_norm/mod.rs: `Params`, `LayerNormBindings` or
// `AddLayerNormBindings`), scalar or vec4 units:
//   p        uniform Params { rows, d, eps }
//   x:       [R, D] f32       binding 1, x_at / x_at4
//   residual: [R, D] f32      binding 2 (fused variant only), residual_at / residual_at4
//   weight:  [D]    f32|f16   next binding, weight_at / weight_at4
//   bias:    [D]    f32|f16   next binding, bias_at / bias_at4
//   out:     [R, D] f32       last binding, out_set / out_set4
//   fn s_at(i) / s_at4(i): the normalized input s (generated: x_at, or x_at + residual_at)
//
// Constants from the Rust side: WG (power of two), VEC4 (1 when D % 4 == 0), PER_ROW (1: one
// workgroup per row with a shared-memory tree; 0: one thread per row).
//
// Numerics: mean and variance in one pass with Welford/Chan states (count, mean, M2) in f32: each
// thread folds its elements (4 at a time in vec4 mode) and the states merge pairwise, so there is no
// cancellation of sum(x^2) - sum(x)^2. The statistics are taken of x - k with k = x[r, 0] (one extra
// load per row): for rows with a large common offset (x = 1e4 + noise) the shifted values are exact
// (Sterbenz) and small, so the mean is not rounded at the offset's magnitude. A second pass reads x
// again and writes y = ((x - k) - mean_k) * rstd * weight + bias.
//
// Grid: as softmax.wgsl (one workgroup per row, or ceil(R / WG) workgroups of rows).

// Welford state: count n, mean, and M2 = sum of squared deviations from the mean.
struct Wf {
    n: f32,
    mean: f32,
    m2: f32,
}

fn wf_merge(a: Wf, b: Wf) -> Wf {
    let n = a.n + b.n;
    if (b.n == 0.0) {
        return a;
    }
    let delta = b.mean - a.mean;
    let fb = b.n / n;
    return Wf(n, a.mean + delta * fb, a.m2 + b.m2 + delta * delta * a.n * fb);
}

fn wf_add1(a: Wf, v: f32) -> Wf {
    let n = a.n + 1.0;
    let delta = v - a.mean;
    let mean = a.mean + delta / n;
    return Wf(n, mean, a.m2 + delta * (v - mean));
}

fn wf_add4(a: Wf, v: vec4<f32>) -> Wf {
    let mean = ((v.x + v.y) + (v.z + v.w)) * 0.25;
    let c = v - vec4<f32>(mean);
    return wf_merge(a, Wf(4.0, mean, dot(c, c)));
}

// Statistics of x - k over this thread's elements of the row at `base`.
fn row_stats(base: u32, first: u32, step: u32, k: f32) -> Wf {
    var st = Wf(0.0, 0.0, 0.0);
    if (VEC4 == 1u) {
        for (var i = first * 4u; i < p.d; i += step * 4u) {
            st = wf_add4(st, s_at4(base + i) - vec4<f32>(k));
        }
    } else {
        for (var i = first; i < p.d; i += step) {
            st = wf_add1(st, s_at(base + i) - k);
        }
    }
    return st;
}

fn row_write(base: u32, first: u32, step: u32, k: f32, st: Wf) {
    let mean = st.mean;
    let rstd = inverseSqrt(st.m2 / f32(p.d) + p.eps);
    if (VEC4 == 1u) {
        for (var i = first * 4u; i < p.d; i += step * 4u) {
            let v = ((s_at4(base + i) - vec4<f32>(k)) - vec4<f32>(mean)) * rstd;
            out_set4(base + i, v * weight_at4(i) + bias_at4(i));
        }
    } else {
        for (var i = first; i < p.d; i += step) {
            let v = ((s_at(base + i) - k) - mean) * rstd;
            out_set(base + i, v * weight_at(i) + bias_at(i));
        }
    }
}

// workgroup-init: self -- red_*[lid] are written by every invocation before the barrier that precedes any read.
var<workgroup> red_n: array<f32, WG>;
var<workgroup> red_mean: array<f32, WG>;
var<workgroup> red_m2: array<f32, WG>;

fn wg_reduce(lid: u32, v: Wf) -> Wf {
    red_n[lid] = v.n;
    red_mean[lid] = v.mean;
    red_m2[lid] = v.m2;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (lid < off) {
            let r = wf_merge(Wf(red_n[lid], red_mean[lid], red_m2[lid]),
                             Wf(red_n[lid + off], red_mean[lid + off], red_m2[lid + off]));
            red_n[lid] = r.n;
            red_mean[lid] = r.mean;
            red_m2[lid] = r.m2;
        }
        workgroupBarrier();
    }
    return Wf(red_n[0], red_mean[0], red_m2[0]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (PER_ROW == 1u) {
        if (g >= p.rows) {
            return;
        }
        let base = g * p.d;
        let k = s_at(base);
        let st = wg_reduce(lid, row_stats(base, lid, WG, k));
        row_write(base, lid, WG, k, st);
    } else {
        let row = g * WG + lid;
        if (row >= p.rows) {
            return;
        }
        let base = row * p.d;
        let k = s_at(base);
        row_write(base, 0u, 1u, k, row_stats(base, 0u, 1u, k));
    }
}
