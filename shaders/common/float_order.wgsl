// Float helpers of the decoding-search kernels (search_row, search_beam, topk, beam_select):
// run-time infinities, a NaN test that survives the driver's optimizer, and torch's order.

// -inf, made at run time: a const-expression that evaluates to an infinity is a shader-creation
// error in WGSL (browsers' Tint enforces it, naga does not), so the bits pass through a var.
fn neg_infinity() -> f32 {
    var bits = 0xff800000u;
    return bitcast<f32>(bits);
}

// +inf, made at run time (see neg_infinity).
fn pos_infinity() -> f32 {
    var bits = 0x7f800000u;
    return bitcast<f32>(bits);
}

// NaN, tested on the bits (exponent all ones, mantissa not zero). `x != x` is not a NaN test a
// shader can rely on: a compiler that assumes no NaNs folds it to false (lavapipe did, and ranked
// NaN logits below every number).
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// torch's order (topk, argmax): larger first, NaN largest, equal values by the lower index.
// Branch-free (`&`, `|` and selects): the search kernels run it once per vocabulary entry, and a
// CPU adapter runs a branch that differs between lanes under an execution mask.
fn better(a: f32, ai: u32, b: f32, bi: u32) -> bool {
    let an = is_nan(a);
    let bn = is_nan(b);
    let ordered = (a > b) | ((a == b) & (ai < bi));
    return select(select(ordered, an, an != bn), ai < bi, an & bn);
}
