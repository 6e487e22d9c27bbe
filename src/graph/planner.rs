//! Memory planning: node order, lifetimes of intermediates, best-fit buffer reuse.
//!
//! Inputs, weights and graph outputs get buffers of their own. Every other node output (an
//! intermediate) lives from the node that writes it to the last node that reads it; views (reshape)
//! extend the lifetime of the value they view. Walking the nodes in order, a buffer whose value
//! died before the current node returns to a free list, and each new intermediate takes the smallest
//! free buffer that fits (best fit), else grows the largest free one, else gets a new one.
//!
//! In-place reuse of an operand's own buffer by the node that last reads it is not done: WebGPU
//! forbids binding one buffer as both read-only and read-write storage in a dispatch, so an in-place
//! kernel would need its own single-binding variant; reuse across lifetimes already gives the saving.

use super::{Graph, Source, Value};

/// Where each value lives and what the plan costs.
#[derive(Clone, Debug, Default)]
pub struct MemoryPlan {
    /// Nodes to run, in order (nodes no output depends on are dropped).
    pub order: Vec<usize>,
    /// Size in bytes of each reusable buffer.
    pub slot_sizes: Vec<u64>,
    /// For each value: the reusable buffer it lives in (intermediates only).
    pub slot_of: Vec<Option<usize>>,
    /// For each value: the value whose buffer it uses (itself unless it is a view).
    pub root_of: Vec<Value>,
    /// Bytes of all reusable buffers: intermediate memory with reuse.
    pub reused_bytes: u64,
    /// Sum of every intermediate's bytes: intermediate memory without reuse.
    pub naive_bytes: u64,
}

/// Plans buffers for `graph` given each value's byte size (`bytes[v]`, views included).
pub fn plan(graph: &Graph, bytes: &[u64]) -> MemoryPlan {
    let n_values = graph.values.len();
    // Roots: a view's buffer is its operand's buffer.
    let mut root_of: Vec<Value> = (0..n_values).map(Value).collect();
    for node in &graph.nodes {
        if node.op.is_view() {
            let r = root_of[node.inputs[0].0];
            root_of[node.outputs[0].0] = r;
        }
    }
    // Keep only nodes some output depends on, in insertion order (a topological order: the
    // builder only lets a node use values that already exist).
    let mut needed = vec![false; n_values];
    for (_, v) in &graph.outputs {
        needed[v.0] = true;
    }
    let mut keep = vec![false; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|o| needed[o.0]) {
            keep[i] = true;
            for inp in &node.inputs {
                needed[inp.0] = true;
            }
        }
    }
    let order: Vec<usize> = (0..graph.nodes.len()).filter(|&i| keep[i]).collect();

    let is_output: Vec<bool> = {
        let mut o = vec![false; n_values];
        for (_, v) in &graph.outputs {
            o[root_of[v.0].0] = true;
        }
        o
    };
    let is_intermediate =
        |v: usize| matches!(graph.values[v], Source::Node) && root_of[v].0 == v && !is_output[v];
    // Lifetimes of root intermediates, in positions of `order`.
    let mut def = vec![usize::MAX; n_values];
    let mut last = vec![0usize; n_values];
    for (pos, &ni) in order.iter().enumerate() {
        let node = &graph.nodes[ni];
        for o in &node.outputs {
            let r = root_of[o.0].0;
            if def[r] == usize::MAX {
                def[r] = pos;
            }
            last[r] = last[r].max(pos);
        }
        for i in &node.inputs {
            let r = root_of[i.0].0;
            last[r] = last[r].max(pos);
        }
    }

    let mut slot_sizes: Vec<u64> = Vec::new();
    let mut slot_of: Vec<Option<usize>> = vec![None; n_values];
    let mut free: Vec<usize> = Vec::new();
    let mut live: Vec<usize> = Vec::new();
    let mut naive_bytes = 0;
    for (pos, &ni) in order.iter().enumerate() {
        // Release buffers of values that died before this node.
        live.retain(|&v| {
            if last[v] < pos {
                // Live values always have slots.
                free.extend(slot_of[v]);
                false
            } else {
                true
            }
        });
        for o in &graph.nodes[ni].outputs {
            let v = o.0;
            if !is_intermediate(v) {
                continue;
            }
            let need = bytes[v].max(4);
            naive_bytes += need;
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, &s)| slot_sizes[s] >= need)
                .min_by_key(|(_, &s)| slot_sizes[s])
                .map(|(i, _)| i);
            let slot = match best {
                Some(i) => free.swap_remove(i),
                None => match free.iter().enumerate().max_by_key(|(_, &s)| slot_sizes[s]) {
                    Some((i, _)) => {
                        let s = free.swap_remove(i);
                        slot_sizes[s] = need;
                        s
                    }
                    None => {
                        slot_sizes.push(need);
                        slot_sizes.len() - 1
                    }
                },
            };
            slot_of[v] = Some(slot);
            live.push(v);
        }
    }
    for v in 0..n_values {
        if slot_of[v].is_none() {
            slot_of[v] = slot_of[root_of[v].0];
        }
    }
    MemoryPlan {
        order,
        reused_bytes: slot_sizes.iter().sum(),
        slot_sizes,
        slot_of,
        root_of,
        naive_bytes,
    }
}
