// Softmax over the last dim: y[r, i] = exp(x[r, i] - m_r) / sum_j exp(x[r, j] - m_r), m_r = max_j x[r, j].
//
// Bindings (the Rust side declares x and out, in scalar or vec4 units):
//   p    uniform Params
//   x:   [R, N] f32   binding 1, read with x_at(i) / x_at4(i)  (i an element index; i % 4 == 0 for _at4)
//   out: [R, N] f32   binding 2, written with out_set(i, v) / out_set4(i, v)
//
// Constants from the Rust side:
//   WG        threads per workgroup (a power of two)
//   VEC4      1 when N % 4 == 0: rows are read and written in vec4 units
//   PER_ROW   1: one workgroup per row, threads stride over the row and meet in a shared-memory tree;
//             0: one thread per row (short rows, or CPU adapters where barriers are expensive)
//
// Numerics: one pass keeps a running (max m, sum s of exp(x - m)) per thread (online softmax), partial
// states merge as (max(m1, m2), s1 exp(m1 - m) + s2 exp(m2 - m)); a second pass writes exp(x - m) / s.
// exp only ever sees arguments <= 0, so logits of any finite size (e.g. +-3e38) cannot overflow.
// The running max starts at -FLT_MAX instead of -inf, so a -inf entry contributes exp(-inf) = 0 and
// never forms inf - inf. A row that is entirely -inf ends with s = 0 and is written as all zeros.
//
// Grid: PER_ROW = 1: one workgroup per row, linear index wid.x + wid.y * nwg.x.
//       PER_ROW = 0: ceil(R / WG) workgroups, the same linearisation.

const NEG_BIG: f32 = -3.4028234663852886e38;

// Running softmax state: max m and sum s of exp(x - m) over the elements seen.
struct Ms {
    m: f32,
    s: f32,
}

fn ms_merge(a: Ms, b: Ms) -> Ms {
    let m = max(a.m, b.m);
    return Ms(m, a.s * exp(a.m - m) + b.s * exp(b.m - m));
}

fn ms_add1(a: Ms, v: f32) -> Ms {
    if (v > a.m) {
        return Ms(v, a.s * exp(a.m - v) + 1.0);
    }
    return Ms(a.m, a.s + exp(v - a.m));
}

fn ms_add4(a: Ms, v: vec4<f32>) -> Ms {
    let m = max(a.m, max(max(v.x, v.y), max(v.z, v.w)));
    let e = exp(v - vec4<f32>(m));
    return Ms(m, a.s * exp(a.m - m) + (e.x + e.y) + (e.z + e.w));
}

// Accumulates elements [start, end) of the row at `base`, stepping `step` elements (or vec4 units).
fn row_state(base: u32, first: u32, step: u32) -> Ms {
    var st = Ms(NEG_BIG, 0.0);
    if (VEC4 == 1u) {
        for (var i = first * 4u; i < p.n; i += step * 4u) {
            st = ms_add4(st, x_at4(base + i));
        }
    } else {
        for (var i = first; i < p.n; i += step) {
            st = ms_add1(st, x_at(base + i));
        }
    }
    return st;
}

fn row_write(base: u32, first: u32, step: u32, st: Ms) {
    let inv = select(0.0, 1.0 / st.s, st.s > 0.0);
    if (VEC4 == 1u) {
        for (var i = first * 4u; i < p.n; i += step * 4u) {
            out_set4(base + i, exp(x_at4(base + i) - vec4<f32>(st.m)) * inv);
        }
    } else {
        for (var i = first; i < p.n; i += step) {
            out_set(base + i, exp(x_at(base + i) - st.m) * inv);
        }
    }
}

// workgroup-init: self -- red_m/red_s[lid] are written by every invocation before the barrier that precedes any read.
var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

// Tree reduction of the threads' states; every thread gets the row's state.
fn wg_reduce(lid: u32, v: Ms) -> Ms {
    red_m[lid] = v.m;
    red_s[lid] = v.s;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (lid < off) {
            let r = ms_merge(Ms(red_m[lid], red_s[lid]), Ms(red_m[lid + off], red_s[lid + off]));
            red_m[lid] = r.m;
            red_s[lid] = r.s;
        }
        workgroupBarrier();
    }
    return Ms(red_m[0], red_s[0]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (PER_ROW == 1u) {
        // g is uniform over the workgroup, so this return keeps the barriers in uniform control flow.
        if (g >= p.rows) {
            return;
        }
        let base = g * p.n;
        let st = wg_reduce(lid, row_state(base, lid, WG));
        row_write(base, lid, WG, st);
    } else {
        let row = g * WG + lid;
        if (row >= p.rows) {
            return;
        }
        let base = row * p.n;
        row_write(base, 0u, 1u, row_state(base, 0u, 1u));
    }
}
