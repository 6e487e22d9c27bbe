//! Shader composition, the pipeline cache, and prepared dispatches.
//!
//! A kernel's WGSL file under `shaders/` holds the body; the Rust side prepends what varies per
//! variant: `enable f16;` when the device reads f16 natively, `const` tile sizes, and the storage
//! declarations of inputs whose dtype varies (f32, native f16 or packed f16). Pipelines are compiled
//! once per `(kernel, variant)` and cached for the life of the [`Gpu`].
//!
//! Binding convention for every kernel: `@binding(0)` is the `Params` uniform, storage buffers follow
//! at 1, 2, ... in the order the dispatch function passes them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use wgpu::util::DeviceExt;

use super::context::Gpu;
use super::serial::Guarded;
use crate::error::{Error, Result};
use crate::tensor::DType;

/// How a kernel reads an array of real numbers from a storage buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    /// `array<f32>`.
    F32,
    /// `array<f16>` with `SHADER_F16`.
    F16,
    /// f16 pairs packed in `array<u32>`, read with `unpack2x16float` (no `SHADER_F16` needed).
    F16Packed,
}

impl Elem {
    /// The way this device reads a tensor of `dtype` (f32 or f16).
    pub fn for_dtype(gpu: &Gpu, dtype: DType) -> Option<Elem> {
        match dtype {
            DType::F32 => Some(Elem::F32),
            DType::F16 if gpu.caps().native_f16 => Some(Elem::F16),
            DType::F16 => Some(Elem::F16Packed),
            _ => None,
        }
    }

    /// True when the composed shader needs `enable f16;`.
    pub fn needs_f16(self) -> bool {
        self == Elem::F16
    }
}

/// Generates a read-only storage declaration `name` at `binding` with two accessors:
/// `fn {name}_at(i: u32) -> f32` and `fn {name}_at4(i: u32) -> vec4<f32>` (elements i..i+4).
///
/// With `vec4 = true` the array is declared in 4-element units, which is faster but requires
/// `i % 4 == 0` in `_at4` calls (the caller guarantees it: for example the inner dim is a multiple of 4).
pub fn declare_input(name: &str, binding: u32, elem: Elem, vec4: bool) -> String {
    let head = format!("@group(0) @binding({binding}) var<storage, read> {name}");
    match (elem, vec4) {
        (Elem::F32, false) => format!(
            "{head}: array<f32>;\n\
             fn {name}_at(i: u32) -> f32 {{ return {name}[i]; }}\n\
             fn {name}_at4(i: u32) -> vec4<f32> {{ return vec4<f32>({name}[i], {name}[i + 1u], {name}[i + 2u], {name}[i + 3u]); }}\n"
        ),
        (Elem::F32, true) => format!(
            "{head}: array<vec4<f32>>;\n\
             fn {name}_at(i: u32) -> f32 {{ return {name}[i >> 2u][i & 3u]; }}\n\
             fn {name}_at4(i: u32) -> vec4<f32> {{ return {name}[i >> 2u]; }}\n"
        ),
        (Elem::F16, false) => format!(
            "{head}: array<f16>;\n\
             fn {name}_at(i: u32) -> f32 {{ return f32({name}[i]); }}\n\
             fn {name}_at4(i: u32) -> vec4<f32> {{ return vec4<f32>(f32({name}[i]), f32({name}[i + 1u]), f32({name}[i + 2u]), f32({name}[i + 3u])); }}\n"
        ),
        (Elem::F16, true) => format!(
            "{head}: array<vec4<f16>>;\n\
             fn {name}_at(i: u32) -> f32 {{ return f32({name}[i >> 2u][i & 3u]); }}\n\
             fn {name}_at4(i: u32) -> vec4<f32> {{ return vec4<f32>({name}[i >> 2u]); }}\n"
        ),
        (Elem::F16Packed, false) => format!(
            "{head}: array<u32>;\n\
             fn {name}_at(i: u32) -> f32 {{ return unpack2x16float({name}[i >> 1u])[i & 1u]; }}\n\
             fn {name}_at4(i: u32) -> vec4<f32> {{ return vec4<f32>({name}_at(i), {name}_at(i + 1u), {name}_at(i + 2u), {name}_at(i + 3u)); }}\n"
        ),
        (Elem::F16Packed, true) => format!(
            "{head}: array<vec2<u32>>;\n\
             fn {name}_at(i: u32) -> f32 {{ return unpack2x16float({name}[i >> 2u][(i >> 1u) & 1u])[i & 1u]; }}\n\
             fn {name}_at4(i: u32) -> vec4<f32> {{ let p = {name}[i >> 2u]; return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y)); }}\n"
        ),
    }
}

/// Builds a complete WGSL module: `enable f16;` if needed, `const` definitions, generated
/// declarations, then the kernel body from `shaders/`.
pub fn compose(body: &str, f16: bool, consts: &[(&str, u32)], decls: &[String]) -> String {
    let mut s = String::with_capacity(body.len() + 512);
    if f16 {
        s.push_str("enable f16;\n");
    }
    for (k, v) in consts {
        s.push_str(&format!("const {k}: u32 = {v}u;\n"));
    }
    for d in decls {
        s.push_str(d);
    }
    s.push_str(body);
    s
}

/// What a kernel's compiled WGSL depends on (tile sizes, element types, flags): the pipeline cache's
/// key, compared and hashed by value (never through a `Debug` string). Any
/// `Hash + Eq + Clone + Debug` type qualifies; kernels define a small struct or use a tuple.
pub trait VariantKey: Hash + Eq + Clone + Debug + Send + Sync + 'static {}
impl<T: Hash + Eq + Clone + Debug + Send + Sync + 'static> VariantKey for T {}

/// Object-safe view of a [`VariantKey`], so variants of different types share one map.
trait DynVariant: Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn eq_dyn(&self, other: &dyn DynVariant) -> bool;
    fn hash_dyn(&self, state: &mut dyn Hasher);
}

impl<T: VariantKey> DynVariant for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn eq_dyn(&self, other: &dyn DynVariant) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
    fn hash_dyn(&self, mut state: &mut dyn Hasher) {
        TypeId::of::<T>().hash(&mut state);
        self.hash(&mut state);
    }
}

/// `(kernel name, variant)`: one compiled pipeline.
#[derive(Debug)]
struct PipelineKey {
    kernel: &'static str,
    variant: Box<dyn DynVariant>,
}

impl PartialEq for PipelineKey {
    fn eq(&self, other: &Self) -> bool {
        self.kernel == other.kernel && self.variant.eq_dyn(other.variant.as_ref())
    }
}
impl Eq for PipelineKey {}
impl Hash for PipelineKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kernel.hash(state);
        self.variant.hash_dyn(state);
    }
}

/// Fills a WGSL template's generated blocks: each `{{NAME}}` marker (the one marker syntax of
/// `shaders/`, used only where a kernel's unrolled register block is generated in Rust) is
/// replaced by its text. Sizes and flags are `const`s from [`compose`], never markers.
pub fn fill_template(template: &str, fills: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (name, text) in fills {
        s = s.replace(&format!("{{{{{name}}}}}"), text);
    }
    debug_assert!(!s.contains("{{"), "unfilled marker in a WGSL template");
    s
}

/// The marker a kernel's WGSL carries, next to its `var<workgroup>` declarations, once it has been
/// checked that every invocation writes each workgroup element it (or another invocation) reads
/// before the read, in every dispatch: the pipeline is then compiled with
/// `zero_initialize_workgroup_memory` off. naga's GLSL output zero-initializes workgroup arrays as
/// one huge constructor that Mesa's llvmpipe compiles for minutes; Vulkan drivers pay a prologue.
pub const WORKGROUP_SELF_INIT: &str = "// workgroup-init: self";

/// The marker of a kernel that reads workgroup memory it has not written and relies on wgpu's
/// zero initialization (kept on). A composed module with both markers keeps it on.
pub const WORKGROUP_ZERO_INIT: &str = "// workgroup-init: zero";

/// True when the composed WGSL `src` declares its workgroup memory as written before read
/// ([`WORKGROUP_SELF_INIT`]) and no fragment of it asks for zero initialization.
pub fn initializes_own_workgroup_memory(src: &str) -> bool {
    src.contains(WORKGROUP_SELF_INIT) && !src.contains(WORKGROUP_ZERO_INIT)
}

/// Compiled pipelines keyed by kernel name and variant value.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

/// A dispatch ready to record: pipeline, bound resources and grid. Built once, recordable many times.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub(crate) pipeline: wgpu::ComputePipeline,
    /// Dropped under the device lock on GL: it holds the last reference to its uniform buffer.
    pub(crate) bind_group: Guarded<wgpu::BindGroup>,
    pub(crate) workgroups: [u32; 3],
    /// When set, the workgroup counts are read on the GPU from these three u32 at this byte
    /// offset instead of `workgroups` (the loop runtime's gated steps).
    pub(crate) indirect: Option<(crate::tensor::Tensor, u64)>,
    /// Kernel name, for profiles and errors.
    pub label: &'static str,
}

impl Dispatch {
    /// Sets the pipeline and bind group and dispatches (directly or indirectly) into `pass`.
    pub(crate) fn encode_into(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &*self.bind_group, &[]);
        match &self.indirect {
            Some((args, offset)) => pass.dispatch_workgroups_indirect(args.buffer(), *offset),
            None => {
                let [x, y, z] = self.workgroups;
                pass.dispatch_workgroups(x, y, z);
            }
        }
    }

    /// The workgroup grid recorded for the dispatch.
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }

    /// The same dispatch with its workgroup counts read from `args` at byte `offset` (three u32;
    /// `args` must have been created with indirect usage, see [`crate::Tensor::indirect_args`]).
    pub fn with_indirect(&self, args: &crate::tensor::Tensor, offset: u64) -> Dispatch {
        Dispatch {
            indirect: Some((args.clone(), offset)),
            ..self.clone()
        }
    }
}

impl Gpu {
    /// The pipeline for `(kernel, variant)`, compiling `source()` on first use.
    ///
    /// Shader compile or validation errors come back as [`Error::Gpu`] naming the kernel.
    pub fn pipeline(
        &self,
        kernel: &'static str,
        variant: &impl VariantKey,
        source: impl FnOnce() -> String,
    ) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey {
            kernel,
            variant: Box::new(variant.clone()),
        };
        if let Some(p) = self
            .inner
            .pipelines
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let device = &self.inner.device;
        let src = source();
        // A kernel binding more storage buffers than the device allows (WebGPU's default is 8 per
        // stage; browsers' adapters often allow 10) would fail validation with a generic message:
        // name the limit instead.
        let storage = src.matches("var<storage").count() as u64;
        let max_storage = u64::from(self.caps().max_storage_buffers);
        if storage > max_storage {
            return Err(Error::Limit {
                what: format!("kernel {kernel} variant {variant:?}: storage buffers it binds"),
                needed: storage,
                limit_name: "max_storage_buffers_per_shader_stage",
                limit: max_storage,
            });
        }
        let compilation_options = wgpu::PipelineCompilationOptions {
            zero_initialize_workgroup_memory: !initializes_own_workgroup_memory(&src),
            ..Default::default()
        };
        // On GL the compile holds wgpu's one GL context for as long as the driver compiles: other
        // threads wait on the device lock instead of timing out inside wgpu (see `gpu::serial`).
        let _g = self.lock_device();
        let scope = super::context::push_scope(device, wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel),
            source: wgpu::ShaderSource::Wgsl(src.as_str().into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options,
            cache: None,
        });
        if let Some(err) = super::context::pop_scope(scope) {
            return Err(Error::Gpu {
                during: format!(
                    "compiling kernel {kernel} variant {variant:?} on {:?}",
                    self.caps().backend
                ),
                message: err.to_string(),
            });
        }
        self.inner
            .counters
            .pipelines
            .fetch_add(1, Ordering::Relaxed);
        self.inner
            .pipelines
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Binds `params` (uniform, binding 0) and `buffers` (storage, bindings 1..) to `pipeline`.
    pub fn dispatch(
        &self,
        label: &'static str,
        pipeline: &wgpu::ComputePipeline,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let max = self.caps().max_workgroups_per_dim;
        if let Some(&w) = workgroups.iter().find(|&&w| w > max) {
            return Err(Error::Limit {
                what: format!("{label}: dispatch of {workgroups:?} workgroups"),
                needed: w as u64,
                limit_name: "max_compute_workgroups_per_dimension",
                limit: max as u64,
            });
        }
        for (i, b) in buffers.iter().enumerate() {
            if b.size() > self.caps().max_storage_binding {
                return Err(Error::Limit {
                    // Binding 0 is the parameters; the buffers follow from binding 1.
                    what: format!("{label}: the buffer at storage binding {}", i + 1),
                    needed: b.size(),
                    limit_name: "max_storage_buffer_binding_size",
                    limit: self.caps().max_storage_binding,
                });
            }
        }
        let device = &self.inner.device;
        // Uniform buffers must be a multiple of 16 bytes.
        let mut bytes = params.to_vec();
        bytes.resize(params.len().max(16).div_ceil(16) * 16, 0);
        let _g = self.lock_device();
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        self.inner.counters.buffers.fetch_add(1, Ordering::Relaxed);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        self.inner
            .counters
            .bind_groups
            .fetch_add(1, Ordering::Relaxed);
        drop(uniform);
        Ok(Dispatch {
            pipeline: pipeline.clone(),
            bind_group: self.guarded(bind_group),
            workgroups,
            indirect: None,
            label,
        })
    }

    /// Splits `n` workgroups into a grid that fits the per-dimension limit. Kernels rebuild the
    /// linear index as `wid.x + wid.y * nwg.x` and return when it is `>= n`.
    pub fn grid(&self, n: u32) -> [u32; 3] {
        let max = self.caps().max_workgroups_per_dim.max(1);
        if n <= max {
            [n.max(1), 1, 1]
        } else {
            [max, n.div_ceil(max), 1]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel that binds one storage buffer more than the device allows is refused naming the
    /// limit (WebGPU's default is 8 per stage), not compiled into a generic validation error.
    #[test]
    fn too_many_storage_buffers_names_the_limit() {
        let gpu = crate::testing::gpu();
        let n = gpu.caps().max_storage_buffers + 1;
        let mut src = String::new();
        for i in 0..n {
            src.push_str(&format!(
                "@group(0) @binding({}) var<storage, read_write> b{i}: array<f32>;\n",
                i + 1
            ));
        }
        src.push_str("@compute @workgroup_size(1) fn main() {");
        for i in 0..n {
            src.push_str(&format!(" b{i}[0] = 1.0;"));
        }
        src.push('}');
        let e = gpu
            .pipeline("too_many_buffers", &n, || src)
            .expect_err("compiled a kernel over the storage-buffer limit");
        let msg = e.to_string();
        assert!(matches!(e, Error::Limit { .. }), "{e:?}");
        for want in ["too_many_buffers", "max_storage_buffers_per_shader_stage"] {
            assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        }
    }

    /// Every shader that declares workgroup memory says whether it initializes it itself
    /// ([`WORKGROUP_SELF_INIT`], compiled without zero initialization) or relies on wgpu's
    /// ([`WORKGROUP_ZERO_INIT`]): a new kernel cannot silently take either default.
    #[test]
    fn every_workgroup_memory_shader_states_its_initialization() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let mut dirs = vec![root];
        let mut checked = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let src = std::fs::read_to_string(&path).unwrap();
                if !src.contains("var<workgroup>") {
                    continue;
                }
                checked += 1;
                let marks = src.matches(WORKGROUP_SELF_INIT).count()
                    + src.matches(WORKGROUP_ZERO_INIT).count();
                assert_eq!(
                    marks,
                    1,
                    "{} declares var<workgroup>: it needs exactly one of {WORKGROUP_SELF_INIT:?} \
                     or {WORKGROUP_ZERO_INIT:?} after checking whether it writes before reading",
                    path.display()
                );
            }
        }
        assert!(
            checked >= 10,
            "only {checked} workgroup-memory shaders found"
        );
        assert!(initializes_own_workgroup_memory(&format!(
            "{WORKGROUP_SELF_INIT}\nvar<workgroup> a: array<f32, 4>;"
        )));
        assert!(!initializes_own_workgroup_memory(&format!(
            "{WORKGROUP_SELF_INIT}\n{WORKGROUP_ZERO_INIT}"
        )));
        assert!(!initializes_own_workgroup_memory("var<workgroup> a: u32;"));
    }
}
