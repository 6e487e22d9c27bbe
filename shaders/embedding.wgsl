// Embedding lookup: out[t, :] = weight[ids[t], :], or zeros when ids[t] is outside [0, V).
// The positioned variant adds a second lookup in the same pass (token embedding, scale and
// position of a Transformer's input): out[t, :] = weight[ids[t], :] * scale + pos_weight[pos_ids[t'], :]
// with t' = t, or 0 when one position serves every row (a decoder step's position on the GPU).
//
// Bindings (from `EmbeddingBindings` or `PositionedBindings` in src/kernels/embedding.rs):
//   p       uniform Params
//   ids:    [T]    i32|u32  binding 1 (read as u32: a negative i32 becomes >= 2^31 >= V, so out of range)
//   weight: [V, D] f32|f16  binding 2, declared by the Rust side: weight_at / weight_at4
//   pos_ids: [T] or [1] u32, pos_weight [P, D] f32|f16: bindings 3 and 4 of the positioned variant
//   out:    [T, D] f32      last binding, declared by the Rust side: out_set / out_set4
//   fn extra(t, j) / extra4(t, j): generated, the position term (0 for the plain lookup)
//
// Constants from the Rust side: WG, VEC4 (1 when D % 4 == 0: one thread per 4 outputs).
//
// A GPU kernel cannot report an error, so an out-of-range id yields a zero row; callers that need
// validation use the host-side entry point (`ops::embedding_ids`), which checks ids before uploading.
//
// Grid: 1-D over the T * D / (VEC4 ? 4 : 1) output units, linear index (wid.x + wid.y * nwg.x) * WG + lid.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let u = (wid.x + wid.y * nwg.x) * WG + lid;
    if (u >= p.units) {
        return;
    }
    if (VEC4 == 1u) {
        let per_row = p.d / 4u;
        let t = u / per_row;
        let j = (u - t * per_row) * 4u;
        let id = ids[t];
        var v = vec4<f32>(0.0);
        if (id < p.v) {
            v = weight_at4(id * p.d + j);
        }
        out_set4(t * p.d + j, v * p.scale + extra4(t, j));
    } else {
        let t = u / p.d;
        let j = u - t * p.d;
        let id = ids[t];
        var v = 0.0;
        if (id < p.v) {
            v = weight_at(id * p.d + j);
        }
        out_set(u, v * p.scale + extra(t, j));
    }
}
