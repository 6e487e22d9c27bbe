//! Sessions: run a graph, building and caching one plan per set of input shapes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::executor::{HostInput, HostOutput, Plan};
use super::profile::Profile;
use super::Graph;
use crate::error::Result;
use crate::gpu::Gpu;

/// Input name -> shape: the key of a session's plan cache.
type InputShapes = BTreeMap<String, Vec<usize>>;

/// Runs a graph: builds (and caches) one [`Plan`] per set of input shapes.
///
/// A `Session` can be shared across threads; runs of the same input shapes take turns on that
/// plan's buffers, runs of different shapes proceed independently. Several sessions over one graph
/// (for example one per thread) share the graph's weights.
pub struct Session {
    gpu: Gpu,
    graph: Arc<Graph>,
    plans: Mutex<HashMap<InputShapes, Arc<Mutex<Plan>>>>,
}

impl Session {
    /// A session over `graph` on `gpu`.
    pub fn new(gpu: &Gpu, graph: Arc<Graph>) -> Session {
        Session {
            gpu: gpu.clone(),
            graph,
            plans: Mutex::new(HashMap::new()),
        }
    }

    /// The plan for these input shapes, built on first use.
    pub fn plan(&self, inputs: &[(&str, HostInput)]) -> Result<Arc<Mutex<Plan>>> {
        let key: BTreeMap<String, Vec<usize>> = inputs
            .iter()
            .map(|(n, h)| (n.to_string(), h.shape.clone()))
            .collect();
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = plans.get(&key) {
            return Ok(p.clone());
        }
        let plan = Arc::new(Mutex::new(Plan::build(&self.gpu, &self.graph, &key)?));
        plans.insert(key, plan.clone());
        Ok(plan)
    }

    /// Runs the graph on `inputs` (name, data) and returns every output by name.
    pub fn run(&self, inputs: &[(&str, HostInput)]) -> Result<HashMap<String, HostOutput>> {
        let plan = self.plan(inputs)?;
        let plan = plan.lock().unwrap_or_else(|e| e.into_inner());
        plan.run(&self.gpu, inputs)
    }

    /// Runs the graph and times every node.
    pub fn run_profiled(
        &self,
        inputs: &[(&str, HostInput)],
    ) -> Result<(HashMap<String, HostOutput>, Profile)> {
        let plan = self.plan(inputs)?;
        let mut plan = plan.lock().unwrap_or_else(|e| e.into_inner());
        plan.run_profiled(&self.gpu, inputs)
    }
}
