// One beam-search step's selection, on the GPU, for every batch item at once.
//
// Each batch item b owns K hypothesis rows b*K .. b*K+K-1 (live ones first, dead ones have score
// -inf). The top-k kernel gave each row its K best next tokens; here the K*K candidates
// (score = row score + token log-prob) are walked best first (ties: lower row, then better token
// rank, i.e. a stable sort in row-major order); a candidate ending in `eos` is finished (recorded
// with its step, parent row and score, divided by its length when LENGTH_NORM), the others become
// the new live rows until K are taken. The item is done when K hypotheses are finished, none is
// live, or (without length normalization) the best finished score is at least the best live one.
// Rows of a done item keep their state and feed `eos`. The CPU reads parents, tokens and finished
// records back once per chunk of steps and rebuilds the hypotheses.
//
// Bindings:
//   p         uniform Params
//   cand_ids: [B*K, K] u32   binding 1 (from topk.wgsl)
//   cand_lp:  [B*K, K] f32   binding 2
//   scores:   [B*K] f32      binding 3 (read and updated)
//   parent:   [B*K] u32      binding 4 (global row each new row continues)
//   tokens:   [B*K] u32      binding 5 (token each new row appended: the next step's input)
//   ctl:      [B, 4] u32     binding 6 (done flag, step, finished count, best finished score bits)
//   fin:      [B, CAP, 3] u32 binding 7 (step, parent row, score bits per finished hypothesis)
//
// Constants from the Rust side: WG, K (beam width), KK (= K * K).
// Grid: 1-D over B batch items, linear index (wid.x + wid.y * nwg.x) * WG + lid.

// neg_infinity and is_nan: shaders/common/float_order.wgsl.

fn finite(x: f32) -> bool {
    return !is_nan(x) && abs(x) <= 3.4e38;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let b = (wid.x + wid.y * nwg.x) * WG + lid;
    if (b >= p.batch) {
        return;
    }
    let row0 = b * K;
    let neg_inf = neg_infinity();
    if (ctl[b * 4u] != 0u) {
        for (var r = 0u; r < K; r++) {
            parent[row0 + r] = row0 + r;
            tokens[row0 + r] = p.eos;
        }
        return;
    }
    let step = ctl[b * 4u + 1u];
    var fin_count = ctl[b * 4u + 2u];
    var best_fin = bitcast<f32>(ctl[b * 4u + 3u]);
    var cand: array<f32, KK>;
    for (var r = 0u; r < K; r++) {
        let s = scores[row0 + r];
        for (var j = 0u; j < K; j++) {
            var c = neg_inf;
            if (finite(s)) {
                c = s + cand_lp[(row0 + r) * K + j];
            }
            cand[r * K + j] = c;
        }
    }
    var taken = 0u;
    var best_live = neg_inf;
    for (var it = 0u; it < KK; it++) {
        var bi = KK;
        var bv = neg_inf;
        for (var c = 0u; c < KK; c++) {
            if (finite(cand[c]) && (bi == KK || cand[c] > bv)) {
                bi = c;
                bv = cand[c];
            }
        }
        if (bi == KK) {
            break;
        }
        cand[bi] = neg_inf;
        let r = bi / K;
        let tok = cand_ids[(row0 + r) * K + (bi - r * K)];
        if (tok == p.eos) {
            var norm = bv;
            if (p.length_norm != 0u) {
                norm = bv / f32(step + 1u);
            }
            if (fin_count < p.cap) {
                let f = (b * p.cap + fin_count) * 3u;
                fin[f] = step;
                fin[f + 1u] = row0 + r;
                fin[f + 2u] = bitcast<u32>(norm);
            }
            if (fin_count == 0u || norm > best_fin) {
                best_fin = norm;
            }
            fin_count += 1u;
        } else {
            if (taken == 0u) {
                best_live = bv;
            }
            parent[row0 + taken] = row0 + r;
            tokens[row0 + taken] = tok;
            scores[row0 + taken] = bv;
            taken += 1u;
            if (taken == K) {
                break;
            }
        }
    }
    for (var r = taken; r < K; r++) {
        parent[row0 + r] = row0;
        tokens[row0 + r] = p.eos;
        scores[row0 + r] = neg_inf;
    }
    var done = fin_count >= K || taken == 0u;
    if (p.length_norm == 0u && fin_count > 0u && best_fin >= best_live) {
        done = true;
    }
    ctl[b * 4u] = select(0u, 1u, done);
    ctl[b * 4u + 1u] = step + 1u;
    ctl[b * 4u + 2u] = fin_count;
    ctl[b * 4u + 3u] = bitcast<u32>(best_fin);
}
