// Hugging Face beam search (transformers 5.25 `_beam_search`), one step's selection for every
// item, after search_row.wgsl gave each row its top N = 2K (running score + processed log-prob).
// One workgroup; thread t handles items t, t + WG, ...; thread 0 then applies the batch-wide stop
// rule. Each item owns rows i*K .. i*K+K (running beams) and finished slots i*K .. i*K+K.
//
// Per item, as HF (all in f32, with its -1e9 penalties):
//   1. the top 2K of the K*V candidates (= of the rows' top 2K lists), equal scores by the lower
//      flat index beam * V + token;
//   2. hits[j]: token j is the end token or the sequence reaches max_length;
//   3. running beams: the top K of lp[j] + (hits[j] ? -1e9 : 0);
//   4. finished slots: the top K of [slot scores, lp[j] / len ** length_penalty + penalties]
//      (-1e9 each: beams full under early_stopping=True, heuristic satisfied, not a hit among
//      the first K);
//   5. the early-stop heuristic: the best running score / best_len ** length_penalty must beat
//      the worst finished score (or a slot is still empty) for the item to go on.
// The search stops when no item can improve, or every slot of every item has finished with
// early_stopping=True, or every candidate hit (max_length).
//
// Bindings:
//   p       uniform Params
//   step:   [1] u32               binding 1
//   div:    [max_length + 1] f32  binding 2 (div[n] = n ** length_penalty, as torch divides)
//   cand:   [R, N, 2] u32         binding 3 (from search_row.wgsl)
//   state:  [4 + 7R] u32          binding 4 (0: stopped, 1: steps done; 4 + i: item i's heuristic
//                                 flag; 4 + R + r: running score bits; 4 + 2R + 5q: finished
//                                 slot q = (step or ~0, source row, token, finished, score bits))
//   tokens: [R] u32               binding 5 (the next step's input)
//   parents:[R] u32               binding 6 (the row each new row continues)
//   hist:   [max_steps, 2, R] u32 binding 7 (per step: tokens, then parents)
//
// Constants from the Rust side: WG, K (beams), N (= 2K), M (= K + N), MODE (early stopping:
// 0 heuristic, 1 done, 2 never).

// workgroup-init: self -- invocation 0 writes wg_stop and stores zero to the three counters before workgroupUniformLoad (a barrier) reads wg_stop.
var<workgroup> wg_unsat: atomic<u32>;
var<workgroup> wg_open: atomic<u32>;
var<workgroup> wg_valid: atomic<u32>;
var<workgroup> wg_stop: u32;

const NEG: f32 = -1.0e9;

// neg_infinity, pos_infinity, is_nan and better (torch's order): shaders/common/float_order.wgsl.

fn pen(on: bool) -> f32 {
    return select(0.0, NEG, on);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    if (lid == 0u) {
        wg_stop = state[0];
        atomicStore(&wg_unsat, 0u);
        atomicStore(&wg_open, 0u);
        atomicStore(&wg_valid, 0u);
    }
    if (workgroupUniformLoad(&wg_stop) != 0u) {
        return;
    }
    let s = step[0];
    let rows = p.batch * K;
    let fin0 = 4u + 2u * rows;
    for (var i = lid; i < p.batch; i += WG) {
        // 1. The item's top N over its K rows' lists.
        var lp: array<f32, N>;
        var key: array<u32, N>;
        var tok: array<u32, N>;
        var src: array<u32, N>;
        for (var n = 0u; n < N; n++) {
            lp[n] = neg_infinity();
            key[n] = 0xffffffffu;
        }
        for (var b = 0u; b < K; b++) {
            let r = i * K + b;
            for (var n = 0u; n < N; n++) {
                let x = bitcast<f32>(cand[(r * N + n) * 2u]);
                let t = cand[(r * N + n) * 2u + 1u];
                if (t == 0xffffffffu) {
                    // The row's list ran out (V < N): the rest are placeholders.
                    break;
                }
                let fk = b * p.v + t;
                if (!better(x, fk, lp[N - 1u], key[N - 1u])) {
                    break;
                }
                var k = N - 1u;
                while (k > 0u && better(x, fk, lp[k - 1u], key[k - 1u])) {
                    lp[k] = lp[k - 1u];
                    key[k] = key[k - 1u];
                    tok[k] = tok[k - 1u];
                    src[k] = src[k - 1u];
                    k -= 1u;
                }
                lp[k] = x;
                key[k] = fk;
                tok[k] = t;
                src[k] = r;
            }
        }
        // 2. Hits.
        var hit: array<bool, N>;
        var all_hit = true;
        for (var n = 0u; n < N; n++) {
            hit[n] = tok[n] == p.eos || s + 2u >= p.max_length;
            all_hit = all_hit && hit[n];
        }
        // 3. Running beams: top K of lp + hit penalty (ties by candidate order).
        var rl: array<f32, N>;
        var taken: array<bool, N>;
        for (var n = 0u; n < N; n++) {
            rl[n] = lp[n] + pen(hit[n]);
            taken[n] = false;
        }
        var best_run = 0.0;
        for (var q = 0u; q < K; q++) {
            var bj = N;
            for (var n = 0u; n < N; n++) {
                if (!taken[n] && (bj == N || better(rl[n], n, rl[bj], bj))) {
                    bj = n;
                }
            }
            taken[bj] = true;
            let row = i * K + q;
            state[4u + rows + row] = bitcast<u32>(rl[bj]);
            tokens[row] = tok[bj];
            parents[row] = src[bj];
            hist[(s * 2u) * rows + row] = tok[bj];
            hist[(s * 2u + 1u) * rows + row] = src[bj];
            if (q == 0u) {
                best_run = rl[bj];
            }
        }
        // 4. Finished slots.
        var unsat = state[4u + i] != 0u;
        var full = MODE == 1u;
        var old_s: array<f32, K>;
        var old_r: array<vec4<u32>, K>;
        for (var q = 0u; q < K; q++) {
            let at = fin0 + (i * K + q) * 5u;
            old_r[q] = vec4<u32>(state[at], state[at + 1u], state[at + 2u], state[at + 3u]);
            old_s[q] = bitcast<f32>(state[at + 4u]);
            full = full && old_r[q].w != 0u;
        }
        let dv = div[s + 1u];
        var fs: array<f32, N>;
        for (var n = 0u; n < N; n++) {
            let did = hit[n] && n < K;
            var x = lp[n] / dv;
            x = x + pen(full);
            x = x + pen(!unsat);
            x = x + pen(!did);
            fs[n] = x;
        }
        var used: array<bool, M>;
        for (var c = 0u; c < K + N; c++) {
            used[c] = false;
        }
        var worst = pos_infinity();
        var new_fin: array<bool, K>;
        var new_s: array<f32, K>;
        for (var q = 0u; q < K; q++) {
            var bc = K + N;
            var bvv = 0.0;
            for (var c = 0u; c < K + N; c++) {
                var x = 0.0;
                if (c < K) {
                    x = old_s[c];
                } else {
                    x = fs[c - K];
                }
                if (!used[c] && (bc == K + N || better(x, c, bvv, bc))) {
                    bc = c;
                    bvv = x;
                }
            }
            used[bc] = true;
            var rec: vec4<u32>;
            if (bc < K) {
                rec = old_r[bc];
            } else {
                let n = bc - K;
                rec = vec4<u32>(s, src[n], tok[n], select(0u, 1u, hit[n] && n < K));
            }
            let at = fin0 + (i * K + q) * 5u;
            state[at] = rec.x;
            state[at + 1u] = rec.y;
            state[at + 2u] = rec.z;
            state[at + 3u] = rec.w;
            state[at + 4u] = bitcast<u32>(bvv);
            new_fin[q] = rec.w != 0u;
            new_s[q] = bvv;
            worst = min(worst, bvv);
        }
        // 5. The early-stop heuristic.
        var best_len = s + 1u;
        if (MODE == 2u && p.lp_positive != 0u) {
            best_len = p.max_length - 1u;
        }
        let best = best_run / div[best_len];
        var any = false;
        var all_fin = true;
        for (var q = 0u; q < K; q++) {
            let w = select(NEG, worst, new_fin[q]);
            any = any || best > w;
            all_fin = all_fin && new_fin[q];
        }
        unsat = unsat && any;
        state[4u + i] = select(0u, 1u, unsat);
        if (unsat) {
            atomicOr(&wg_unsat, 1u);
        }
        if (!all_fin) {
            atomicOr(&wg_open, 1u);
        }
        if (!all_hit) {
            atomicOr(&wg_valid, 1u);
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        let improvement = atomicLoad(&wg_unsat) != 0u;
        let open = atomicLoad(&wg_open) != 0u || MODE != 1u;
        let valid = atomicLoad(&wg_valid) != 0u;
        state[1] = s + 1u;
        if (!(improvement && open && valid)) {
            state[0] = 1u;
        }
    }
}
