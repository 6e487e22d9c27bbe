// Hugging Face generate, one decoder step, per row: the logits processors and the row's best
// continuations. One workgroup per row r of R = batch * num_beams rows.
//
//   BEAM = 1: log_softmax(logits) -> processors -> + running score; writes the row's top N
//             (N = 2 * num_beams) as (score bits, token) pairs for search_beam.wgsl, which merges
//             the rows of an item.
//   BEAM = 0: processors on the raw logits -> argmax (first index of the maximum, NaN largest, as
//             torch.argmax); finished rows get the pad token (HF's unfinished_sequences rule); the
//             token goes to `tokens` (the next step's input) and to the history; a row that ends
//             (end token, or the length limit) records its step + 1 in its status word.
//
// Processors, in HF's order: bad words (x + -inf where a banned sequence would complete: single
// tokens from `rules[0..V)`, multi-token sequences matched against the row's history), min length
// (end token = -inf while the sequence is shorter than min_length), forced EOS at position
// max_length - 1 (every token -inf, the forced one 0).
//
// Bindings:
//   p       uniform Params
//   logits: [R, V] f32                 binding 1
//   step:   [1] u32                    binding 2 (the current step s, 0-based)
//   rules:  [V + 2 * n_multi + ..] u32 binding 3 (ban flags [V]; then n_multi (offset, len) pairs
//                                      into the same array: each multi-token bad word's tokens)
//   hist:   [max_steps, 2, R] u32      binding 4 (per step: chosen token of each row, then the row
//                                      each row continues; greedy writes the tokens, beam reads)
//   state:  [4 + 7R] u32               binding 5 (search state: see search.rs; here the stop word,
//                                      greedy's status [R] at 4, beam's running scores at 4 + R)
//   cand:   [R, N, 2] u32              binding 6 (beam: score bits, token; best first)
//   tokens: [R] u32                    binding 7 (greedy: the next step's input)
//
// Constants from the Rust side: WG (threads per row), N (candidates per row), BEAM, MAXB (most
// multi-token bad words).
//
// Grid: one workgroup per row, linear workgroup index wid.x + wid.y * nwg.x.

// workgroup-init: self -- invocation 0 writes wg_skip and wg_nban before workgroupUniformLoad (a barrier); wg_m/wg_s[lid] and wg_v/wg_i[lid*N..] are written by every invocation before the barrier that precedes their reads; wg_ban is read only below the count of entries written.
var<workgroup> wg_v: array<f32, WG * N>;
var<workgroup> wg_i: array<u32, WG * N>;
var<workgroup> wg_m: array<f32, WG>;
var<workgroup> wg_s: array<f32, WG>;
var<workgroup> wg_ban: array<u32, MAXB>;
var<workgroup> wg_nban: atomic<u32>;
var<workgroup> wg_skip: u32;

// neg_infinity, pos_infinity, is_nan and better (torch's order): shaders/common/float_order.wgsl.

// Inserts (x, j) into the sorted list (bv, bi) (best first; the last entry falls off when x
// beats it). A fixed pass over the N slots (each takes x when x is better, and x carries on with
// what it displaced) instead of a search loop: the slots keep constant indices, so the lists stay
// in registers, and no lane waits on another lane's loop.
fn insert(bv: ptr<function, array<f32, N>>, bi: ptr<function, array<u32, N>>, x: f32, j: u32) {
    var cv = x;
    var ci = j;
    for (var n = 0u; n < N; n++) {
        let tv = (*bv)[n];
        let ti = (*bi)[n];
        let take = better(cv, ci, tv, ti);
        (*bv)[n] = select(tv, cv, take);
        (*bi)[n] = select(ti, ci, take);
        cv = select(cv, tv, take);
        ci = select(ci, ti, take);
    }
}

// The row's logits at j, j + WG, j + 2 WG, j + 3 WG (indices past V read the last one; callers
// mask them): all four loads are issued before any is used, so a thread waits for one memory
// round trip per four elements instead of one per element (one workgroup per row leaves a GPU
// nothing else to hide that latency behind: an H200 took 0.47 ms per 65 001-token row pass).
fn load4(base: u32, j: u32) -> vec4<f32> {
    let last = p.v - 1u;
    return vec4<f32>(
        logits[base + j],
        logits[base + min(j + WG, last)],
        logits[base + min(j + 2u * WG, last)],
        logits[base + min(j + 3u * WG, last)]
    );
}

// The token at position `pos` (0: the decoder start) of the sequence row `r` holds at step `s`.
fn seq_token(r: u32, s: u32, pos: u32) -> u32 {
    if (pos == 0u) {
        return p.start;
    }
    var q = r;
    var t = s;
    // Position i (i >= 1) was chosen at step i - 1; walk back from step s - 1.
    while (t > pos) {
        t -= 1u;
        if (BEAM == 1u) {
            q = hist[(t * 2u + 1u) * p.rows + q];
        }
    }
    return hist[((pos - 1u) * 2u) * p.rows + q];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    let s = step[0];
    let neg_inf = neg_infinity();
    if (lid == 0u) {
        var skip = 0u;
        if (r >= p.rows) {
            skip = 1u;
        } else if (BEAM == 1u && state[0] != 0u) {
            // The search has stopped: later steps of the chunk change nothing.
            skip = 1u;
        } else if (BEAM == 0u && state[4u + r] != 0u) {
            // A finished row: pad, no processing.
            tokens[r] = p.pad;
            hist[(s * 2u) * p.rows + r] = p.pad;
            hist[(s * 2u + 1u) * p.rows + r] = r;
            skip = 1u;
        }
        wg_skip = skip;
        atomicStore(&wg_nban, 0u);
    }
    if (workgroupUniformLoad(&wg_skip) != 0u) {
        return;
    }
    let base = r * p.v;
    let cur_len = s + 1u;

    // Multi-token bad words whose prefix ends the row's sequence ban their last token.
    for (var w = lid; w < p.n_multi; w += WG) {
        let off = rules[p.v + 2u * w];
        let len = rules[p.v + 2u * w + 1u];
        let plen = len - 1u;
        if (plen <= cur_len) {
            var ok = true;
            for (var d = 0u; d < plen; d++) {
                if (seq_token(r, s, cur_len - plen + d) != rules[off + d]) {
                    ok = false;
                    break;
                }
            }
            if (ok) {
                let at = atomicAdd(&wg_nban, 1u);
                if (at < MAXB) {
                    wg_ban[at] = rules[off + plen];
                }
            }
        }
    }

    // Beam: the row's max and sum of exp for log_softmax.
    var m = neg_inf;
    var ls = 0.0;
    if (BEAM == 1u) {
        var lm = neg_inf;
        for (var j = lid; j < p.v; j += 4u * WG) {
            let x = load4(base, j);
            lm = max(lm, x[0]);
            lm = max(lm, select(neg_inf, x[1], j + WG < p.v));
            lm = max(lm, select(neg_inf, x[2], j + 2u * WG < p.v));
            lm = max(lm, select(neg_inf, x[3], j + 3u * WG < p.v));
        }
        wg_m[lid] = lm;
        workgroupBarrier();
        for (var h = WG / 2u; h > 0u; h = h / 2u) {
            if (lid < h) {
                wg_m[lid] = max(wg_m[lid], wg_m[lid + h]);
            }
            workgroupBarrier();
        }
        m = wg_m[0];
        var ss = 0.0;
        for (var j = lid; j < p.v; j += 4u * WG) {
            let x = load4(base, j);
            // Past V a select adds 0 (no lane-divergent branch).
            ss += exp(x[0] - m);
            ss += select(0.0, exp(x[1] - m), j + WG < p.v);
            ss += select(0.0, exp(x[2] - m), j + 2u * WG < p.v);
            ss += select(0.0, exp(x[3] - m), j + 3u * WG < p.v);
        }
        wg_s[lid] = ss;
        workgroupBarrier();
        for (var h = WG / 2u; h > 0u; h = h / 2u) {
            if (lid < h) {
                wg_s[lid] = wg_s[lid] + wg_s[lid + h];
            }
            workgroupBarrier();
        }
        ls = log(wg_s[0]);
    }
    workgroupBarrier();
    let nban = min(atomicLoad(&wg_nban), MAXB);
    let forced = p.forced != 0xffffffffu && cur_len + 1u == p.max_length;
    let min_len = cur_len < p.min_length;
    var run = 0.0;
    if (BEAM == 1u) {
        run = bitcast<f32>(state[4u + p.rows + r]);
    }

    var bv: array<f32, N>;
    var bi: array<u32, N>;
    for (var n = 0u; n < N; n++) {
        bv[n] = neg_inf;
        bi[n] = 0xffffffffu;
    }
    let pos_inf = pos_infinity();
    for (var j0 = lid; j0 < p.v; j0 += 4u * WG) {
        let xs = load4(base, j0);
        for (var u = 0u; u < 4u; u++) {
            let j = j0 + u * WG;
            var x = xs[u];
            if (BEAM == 1u) {
                x = (x - m) - ls;
            }
            // The processors below only lower a score (a ban adds -inf, min_length sets the end
            // token to -inf), except that a banned +inf becomes NaN (the largest) and forced EOS
            // sets one token to 0: other scores that do not beat the list's last entry unprocessed
            // cannot beat it processed, and skip the ban lookup (a load per entry) and the insert.
            let raw = x + run;
            let skip = !forced & !is_nan(raw) & (raw != pos_inf)
                & !better(raw, j, bv[N - 1u], bi[N - 1u]);
            if (j >= p.v || skip) {
                continue;
            }
            var banned = rules[j] != 0u;
            for (var b = 0u; b < nban; b++) {
                if (wg_ban[b] == j) {
                    banned = true;
                }
            }
            if (banned) {
                x = x + neg_inf;
            }
            if (min_len && j == p.eos) {
                x = neg_inf;
            }
            if (forced) {
                x = select(neg_inf, 0.0, j == p.forced);
            }
            if (BEAM == 1u) {
                x = x + run;
            }
            insert(&bv, &bi, x, j);
        }
    }
    for (var n = 0u; n < N; n++) {
        wg_v[lid * N + n] = bv[n];
        wg_i[lid * N + n] = bi[n];
    }
    workgroupBarrier();
    // Tree merge of the threads' sorted lists into the row's top N: at each level thread lid < h
    // merges list lid + h into its own (log2(WG) levels of N steps, where one thread merging all
    // WG lists took WG * N steps).
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (lid < h) {
            // Both lists are read from workgroup memory (this thread's own list is its bv, bi),
            // so the private lists are only ever indexed by constants and stay in registers.
            let own = lid * N;
            let other = (lid + h) * N;
            var ov: array<f32, N>;
            var oi: array<u32, N>;
            var ia = 0u;
            var ib = 0u;
            for (var n = 0u; n < N; n++) {
                let xa = wg_v[own + min(ia, N - 1u)];
                let ja = wg_i[own + min(ia, N - 1u)];
                let xb = wg_v[other + min(ib, N - 1u)];
                let jb = wg_i[other + min(ib, N - 1u)];
                let take_b = (ib < N) & ((ia >= N) | better(xb, jb, xa, ja));
                ov[n] = select(xa, xb, take_b);
                oi[n] = select(ja, jb, take_b);
                ib += u32(take_b);
                ia += u32(!take_b);
            }
            for (var n = 0u; n < N; n++) {
                bv[n] = ov[n];
                bi[n] = oi[n];
                wg_v[own + n] = ov[n];
                wg_i[own + n] = oi[n];
            }
        }
        workgroupBarrier();
    }
    if (lid != 0u) {
        return;
    }
    if (BEAM == 1u) {
        for (var n = 0u; n < N; n++) {
            cand[(r * N + n) * 2u] = bitcast<u32>(bv[n]);
            cand[(r * N + n) * 2u + 1u] = bi[n];
        }
    } else {
        let tok = bi[0];
        tokens[r] = tok;
        hist[(s * 2u) * p.rows + r] = tok;
        hist[(s * 2u + 1u) * p.rows + r] = r;
        if (tok == p.eos || s + 2u >= p.max_length) {
            state[4u + r] = s + 1u;
        }
    }
}
