//! The loop runtime's own contract (src/graph/runtime.rs), checked with plain kernels rather than
//! a model: the GPU step index seen by replayed step work, histories, chunking and stop rules.

mod common;

use heedful::graph::{LoopBuilder, Schedule, Stop, Writes};
use heedful::kernels::embedding::record_embedding;
use heedful::tensor::DType;

/// A `[max_steps, 3]` f32 table whose row s is (s, 10 s, 100 s): what a step kernel gathers by
/// the step index.
fn step_table(max_steps: usize) -> Vec<f32> {
    (0..max_steps)
        .flat_map(|s| [s as f32, 10.0 * s as f32, 100.0 * s as f32])
        .collect()
}

/// Each step gathers row `step_index` of a table on the GPU; the history of the gathered rows
/// and of the index itself must be 0, 1, 2, ... whatever the chunking and the number of step
/// phases (a replayed recording sees the step only through the index).
#[test]
fn step_index_counts_steps_across_chunks_and_phases() {
    let gpu = common::gpu();
    for (max_steps, phases, first_chunk, chunk) in [(1, 1, 1, 1), (7, 1, 2, 3), (9, 2, 1, 4)] {
        let mut b = LoopBuilder::new(&gpu, max_steps);
        let ix = b.step_index().unwrap();
        assert_eq!(ix.shape(), &[1]);
        // The same tensor on every call (one counter per plan).
        let again = b.step_index().unwrap();
        assert!(ix.buffer() == again.buffer());
        let table = b
            .constant_f32(&step_table(max_steps), &[max_steps, 3])
            .unwrap();
        let row = b.buffer(&[1, 3], DType::F32).unwrap();
        for phase in 0..phases {
            record_embedding(b.step(phase), &ix, &table, &row).unwrap();
        }
        b.history("index", &ix).unwrap();
        b.history("rows", &row).unwrap();
        let plan = b.build().unwrap();
        let out = plan
            .run(
                &Writes::new(),
                Schedule {
                    max_steps,
                    first_chunk,
                    chunk,
                },
            )
            .unwrap();
        assert_eq!(out.steps_run, max_steps);
        let want: Vec<u32> = (0..max_steps as u32).collect();
        assert_eq!(out.u32s("index").unwrap(), want, "{max_steps} steps");
        assert_eq!(out.f32s("rows").unwrap(), step_table(max_steps));
        // A second run of the same plan starts again at step 0.
        let out = plan
            .run(
                &Writes::new(),
                Schedule {
                    max_steps,
                    first_chunk: max_steps,
                    chunk: 1,
                },
            )
            .unwrap();
        assert_eq!(out.u32s("index").unwrap(), want);
    }
}

/// A stop rule that reads the step index's history: the run ends after the chunk in which the
/// watched token (step 4) was seen, not before and not at the step limit.
#[test]
fn stop_rule_ends_the_run_after_the_chunk_that_saw_the_token() {
    let gpu = common::gpu();
    let mut b = LoopBuilder::new(&gpu, 20);
    let ix = b.step_index().unwrap();
    let table = b.constant_f32(&step_table(20), &[20, 3]).unwrap();
    let row = b.buffer(&[1, 3], DType::F32).unwrap();
    record_embedding(b.step(0), &ix, &table, &row).unwrap();
    b.history("index", &ix).unwrap();
    b.stop_when(Stop::TokenSeen {
        history: "index".into(),
        token: 4,
        rows: 1,
    });
    let plan = b.build().unwrap();
    let out = plan
        .run(
            &Writes::new(),
            Schedule {
                max_steps: 20,
                first_chunk: 2,
                chunk: 3,
            },
        )
        .unwrap();
    // Chunks end after steps 2, 5: step 4 falls in the second.
    assert_eq!(out.steps_run, 5);
}
