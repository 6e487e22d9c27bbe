//! Per-node timing of a graph run: a table, and a Chrome-trace JSON that Perfetto opens.

use std::fmt;

/// One node's timing.
#[derive(Clone, Debug)]
pub struct ProfileRow {
    /// Node index in the graph.
    pub node: usize,
    /// Op name.
    pub op: &'static str,
    /// Input shapes.
    pub shapes: String,
    /// Start relative to the first node, ms.
    pub start_ms: f64,
    /// Duration, ms.
    pub ms: f64,
}

/// The timings of one profiled run.
#[derive(Clone, Debug)]
pub struct Profile {
    /// One row per node, in execution order.
    pub rows: Vec<ProfileRow>,
    /// "gpu timestamps" or "wall clock".
    pub method: &'static str,
}

impl Profile {
    pub(crate) fn new(rows: Vec<ProfileRow>, method: &'static str) -> Profile {
        Profile { rows, method }
    }

    /// Sum of node times, ms.
    pub fn total_ms(&self) -> f64 {
        self.rows.iter().map(|r| r.ms).sum()
    }

    /// The Chrome trace event format (`{"traceEvents": [...]}` with complete "X" events, times in
    /// microseconds); open it in Perfetto (ui.perfetto.dev) or chrome://tracing.
    pub fn chrome_trace(&self) -> serde_json::Value {
        let events: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.op, "cat": "gpu", "ph": "X", "pid": 1, "tid": 1,
                    "ts": r.start_ms * 1e3, "dur": r.ms * 1e3,
                    "args": { "node": r.node, "inputs": r.shapes },
                })
            })
            .collect();
        serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms",
                            "otherData": { "timing": self.method } })
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total_ms().max(1e-12);
        writeln!(
            f,
            "{:>5}  {:<14} {:>10} {:>7}  inputs   ({})",
            "node", "op", "ms", "share", self.method
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>5}  {:<14} {:>10.4} {:>6.1}%  {}",
                r.node,
                r.op,
                r.ms,
                100.0 * r.ms / total,
                r.shapes
            )?;
        }
        write!(
            f,
            "total {:.4} ms over {} nodes",
            self.total_ms(),
            self.rows.len()
        )
    }
}
