// The uniform and output shared by the matmul family (matmul.wgsl, matmul_tiled.wgsl, gemv.wgsl);
// the Rust side prepends it. Mirrors `Params` in src/kernels/matmul/problem.rs.
//   out: [batch, M, N] f32

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_bs: u32,    // batch stride of a, elements
    b_bs: u32,    // batch stride of b, elements (0 = shared)
    o_bs: u32,    // batch stride of out, elements
    tiles_n: u32, // workgroups along N
    tiles_m: u32, // workgroups along M
    alpha: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
