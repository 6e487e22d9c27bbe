// A fragment shared by the workgroup-per-chunk decoding kernels (sdpa_decode_wg.wgsl,
// sdpa_cache_wg.wgsl): tree reductions over a workgroup of WG invocations (WG a power of two).
// Each returns the result to every invocation and leaves `red` free for the next call; they hold
// barriers, so call them from uniform control flow, every invocation of the workgroup.

// workgroup-init: self -- every call writes red[lid] for every invocation before its first
// barrier, and reads only entries written in that call.
var<workgroup> red: array<f32, WG>;

// The largest `v` of the workgroup.
fn workgroup_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) {
            red[lid] = max(red[lid], red[lid + w]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// The sum of `v` over the workgroup.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) {
            red[lid] = red[lid] + red[lid + w];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}
