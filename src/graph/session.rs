//! Sessions: run a graph, building and caching one plan per set of input shapes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::cache::{PlanCache, DEFAULT_PLAN_CAPACITY};
use super::executor::{HostInput, HostOutput, Plan};
#[cfg(not(target_arch = "wasm32"))]
use super::profile::Profile;
use super::Graph;
use crate::error::Result;
use crate::gpu::Gpu;

/// Input name -> shape: the key of a session's plan cache.
type InputShapes = BTreeMap<String, Vec<usize>>;

/// Runs a graph: builds (and caches) one [`Plan`] per set of input shapes.
///
/// At most [`DEFAULT_PLAN_CAPACITY`] plans are kept (or the count given to
/// [`Session::with_plan_capacity`]), least recently used out first, so memory stays flat however
/// many distinct shapes (sentence lengths) a session sees.
///
/// A `Session` can be shared across threads; runs of the same input shapes take turns on that
/// plan's buffers, runs of different shapes proceed independently. Several sessions over one graph
/// (for example one per thread) share the graph's weights.
pub struct Session {
    gpu: Gpu,
    graph: Arc<Graph>,
    plans: PlanCache<InputShapes, Mutex<Plan>>,
}

impl Session {
    /// A session over `graph` on `gpu`.
    pub fn new(gpu: &Gpu, graph: Arc<Graph>) -> Session {
        Session::with_plan_capacity(gpu, graph, DEFAULT_PLAN_CAPACITY)
    }

    /// A session that keeps at most `plans` prepared plans (at least one).
    pub fn with_plan_capacity(gpu: &Gpu, graph: Arc<Graph>, plans: usize) -> Session {
        Session {
            gpu: gpu.clone(),
            graph,
            plans: PlanCache::new(plans),
        }
    }

    /// Plans held now (at most the capacity).
    pub fn plan_count(&self) -> usize {
        self.plans.len()
    }

    /// The plan for these input shapes, built on first use (evicting the least recently used
    /// plan when the cache is full).
    pub fn plan(&self, inputs: &[(&str, HostInput)]) -> Result<Arc<Mutex<Plan>>> {
        let key: InputShapes = inputs
            .iter()
            .map(|(n, h)| (n.to_string(), h.shape.clone()))
            .collect();
        self.plans.get_or_try_insert(key.clone(), || {
            Plan::build(&self.gpu, &self.graph, &key).map(Mutex::new)
        })
    }

    /// Runs the graph on `inputs` (name, data) and returns every output by name.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, inputs: &[(&str, HostInput)]) -> Result<HashMap<String, HostOutput>> {
        pollster::block_on(self.run_async(inputs))
    }

    /// [`Session::run`] without blocking on the readback (the one implementation). In the browser
    /// a second run of the same input shapes while one is awaited is refused (one thread: waiting
    /// for the first run's lock there would never end); await the first.
    // The plan's lock is held across the readback on purpose: one run of a plan's buffers at a
    // time. Natively the future is driven by `block_on` on the calling thread.
    #[allow(clippy::await_holding_lock)]
    pub async fn run_async(
        &self,
        inputs: &[(&str, HostInput)],
    ) -> Result<HashMap<String, HostOutput>> {
        let plan = self.plan(inputs)?;
        #[cfg(not(target_arch = "wasm32"))]
        let plan = plan.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg(target_arch = "wasm32")]
        let plan = plan.try_lock().map_err(|_| {
            crate::error::Error::invalid(
                "graph run",
                "a run of these input shapes is still in progress: await it first",
            )
        })?;
        plan.run_async(&self.gpu, inputs).await
    }

    /// Runs the graph and times every node.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_profiled(
        &self,
        inputs: &[(&str, HostInput)],
    ) -> Result<(HashMap<String, HostOutput>, Profile)> {
        let plan = self.plan(inputs)?;
        let mut plan = plan.lock().unwrap_or_else(|e| e.into_inner());
        plan.run_profiled(&self.gpu, inputs)
    }
}
