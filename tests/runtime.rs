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
        // One timed chunk per submission, in order: the first `first_chunk` steps, then `chunk`.
        let mut next = 0;
        for (i, c) in out.chunk_times.iter().enumerate() {
            let want = if i == 0 { first_chunk } else { chunk }.min(max_steps - next);
            assert_eq!((c.first_step, c.steps), (next, want), "{max_steps} steps");
            assert!(c.seconds > 0.0 && c.seconds.is_finite(), "{c:?}");
            next += c.steps;
        }
        assert_eq!(next, max_steps, "{:?}", out.chunk_times);
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

/// Gated steps ([`LoopBuilder::gate_steps`]): once the status flag is set on the GPU in the middle
/// of a submission, the remaining steps' dispatches do no work (the gathered row keeps the value of
/// the step that set the flag) while their copies still run; an ungated plan keeps working to the
/// end of the chunk. A second run starts again (its init resets the flag).
#[test]
fn gated_steps_do_no_work_after_the_stop_flag_is_set() {
    let gpu = common::gpu();
    let max_steps = 12;
    let stop_at = 4;
    for gate in [false, true] {
        let mut b = LoopBuilder::new(&gpu, max_steps);
        let ix = b.step_index().unwrap();
        let table = b
            .constant_f32(&step_table(max_steps), &[max_steps, 3])
            .unwrap();
        let row = b.buffer(&[1, 3], DType::F32).unwrap();
        // flag_table[s] = 1 from step `stop_at` on: copied into the status by each step.
        let flags: Vec<u32> = (0..max_steps).map(|s| u32::from(s >= stop_at)).collect();
        let flag_table = b.constant_u32(&flags, &[max_steps]).unwrap();
        let status = b.buffer(&[1], DType::U32).unwrap();
        let zero = b.constant_u32(&[0], &[1]).unwrap();
        b.init().copy(zero.buffer(), 0, status.buffer(), 0, 4);
        // One phase per step, so that step s's copy reads flag_table[s] (a copy cannot index by
        // the GPU step).
        for phase in 0..max_steps {
            record_embedding(b.step(phase), &ix, &table, &row).unwrap();
            let at = 4 * phase as u64;
            b.step(phase)
                .copy(flag_table.buffer(), at, status.buffer(), 0, 4);
        }
        b.history("rows", &row).unwrap();
        b.output("status", &status);
        b.stop_when(Stop::StatusSet {
            status: "status".into(),
            stride: 1,
            word: 0,
            rows: 1,
        });
        if gate {
            b.gate_steps();
        }
        let plan = b.build().unwrap();
        for _run in 0..2 {
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
            assert_eq!(out.steps_run, max_steps);
            let rows = out.f32s("rows").unwrap();
            let gated = gate && gpu.caps().indirect_dispatch;
            let want: Vec<f32> = (0..max_steps)
                .flat_map(|s| {
                    let s = if gated { s.min(stop_at) } else { s } as f32;
                    [s, 10.0 * s, 100.0 * s]
                })
                .collect();
            assert_eq!(rows, want, "gate {gate}");
        }
    }
}
