// Flash attention, CPU-adapter (lavapipe) variant: same bindings and results as sdpa.wgsl (see
// there), but with the per-invocation state in named registers instead of loop-indexed private
// arrays, which lavapipe turns into per-lane scratch memory (gathers and scatters).
//
//   q: [B, H, Tq, D] f32, k: [B, H, Tk, D] f32, v: [B, H, Tk, Dv] f32 (bindings 1-3, strided)
//   mask (binding 4), out (binding 5), stats (binding 6) as in sdpa.wgsl
//
// Grid: x = row_blocks * nsplit (heaviest causal row blocks first), y = B*H. A workgroup owns
// the WG*R query rows i0 + lid + r*WG; lavapipe runs one SIMD group of 8 lanes at a time, and
// with WG = 8 (the tuning table's choice) a workgroup is one such group of 8*R consecutive rows
// whose key loop stops at its own causal end, which is what makes causal attention cheaper, and
// short sequences still give enough workgroups for every thread. Each invocation walks its split's keys in tiles of KT: R x KT scores
// from scalar FMA chains (each k element loaded once serves R rows), an online softmax in base 2
// (q is prescaled by scale * log2(e), so exp2 replaces exp), then P·V with each v load serving
// R rows. The `{{NAME}}` markers are filled with straight-line code by `unrolled_flash_source`
// in src/kernels/sdpa/cpu_source.rs (q{r}_{c}: row r's chunk c of q times the scale; a{r}_{c}: its
// accumulator chunk; s{r}_{t} / p{r}_{t}: score / probability of row r and key t of the tile).
// Where subgroups are 8 lanes (lavapipe) the generated tile loads each k and v row once per
// subgroup (one vec4 per lane per whole 32 elements where rows are vec4-aligned, else one element
// per lane per 8) and spreads it with subgroupBroadcast (the entry point then takes the subgroup
// lane `sid` as an extra argument): llvmpipe loads storage lane by lane
// inside the key loop even where every lane reads the same address.

const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;

// st4(base, c, a): writes chunk c of the output row at element `base` (generated: four scalar
// stores, or one where `out` is bound in vec4 units).
{{ST4}}

// Masked base-2 score of key j for a row whose keys end at `end` (NEG when not visible);
// `sc` is the score times log2(e), an additive mask is scaled alike.
// The score of key j (in bounds) after the mask, for the variants generated with a mask; the
// causal and past-the-end cut is a select in the generated code (a divergent `if` around this
// costs llvmpipe mask bookkeeping on every score, even where nothing is masked). The scores are
// in base 2, so an additive mask is scaled by log2(e).
fn mask_score(mb: u32, j: u32, sc: f32) -> f32 {
    switch p.mask_kind {
        case 3u: {
            let a = bitcast<f32>(mask[mb + j * p.m_sj]);
            return select(sc + a * LOG2E, NEG, a <= -1.0e30);
        }
        default: { return apply_mask(mb, j, sc); }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32{{ARGS}}) {
    // Keeps the mask binding in the pipeline layout of the variants that read no mask.
    _ = &mask;
    var rb = wid.x % p.row_blocks;
    if (p.causal != 0u) {
        // Later rows see more keys: dispatch them first so the light blocks fill the tail.
        rb = p.row_blocks - 1u - rb;
    }
    let split = wid.x / p.row_blocks;
    let bh = wid.y;
    let b = bh / p.heads;
    let h = bh % p.heads;
    let i0 = rb * WG * R;
    let ks = split * p.chunk;
    let ke = min(p.tk, ks + p.chunk);
    // The workgroup's last row bounds its key loop (uniform: lavapipe keeps it a scalar loop).
    let wg_end = causal_end(min(i0 + WG * R - 1u, p.tq - 1u), ke);
    let kb = p.k.x + b * p.k.y + h * p.k.z;
    let vb = p.v.x + b * p.v.y + h * p.v.z;
    let qs = p.scale * LOG2E;
{{INIT}}
    for (var j0 = ks; j0 < wg_end; j0 += KT) {
{{TILE}}
    }
{{STORE}}
}
