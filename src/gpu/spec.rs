//! The Rust <-> WGSL contract of a kernel, written once in Rust.
//!
//! A kernel's uniform `Params` and its storage bindings are declared here, on the Rust side, and the
//! WGSL prologue is generated from those declarations, so the two can never drift:
//!
//! - [`wgsl_params!`](crate::wgsl_params) defines a `#[repr(C)]` Pod struct and its WGSL `struct`
//!   declaration plus `@group(0) @binding(0) var<uniform> p: Params;`.
//! - [`wgsl_bindings!`](crate::wgsl_bindings) defines a struct of [`Bind`]s whose field order gives
//!   the `@binding` numbers (1, 2, ...): the same value yields the WGSL declarations (through
//!   [`Access`]) and the buffers in binding order for the bind group.
//!
//! ```
//! heedful::wgsl_params! {
//!     /// Example parameters.
//!     pub struct Params { rows: u32, eps: f32, _pad: [u32; 2] }
//! }
//! use heedful::gpu::spec::UniformParams;
//! assert!(Params::wgsl().starts_with("struct Params {\n    rows: u32,\n    eps: f32,\n"));
//! ```

use crate::gpu::pipeline::{declare_input, Elem};
use crate::tensor::Tensor;

/// A Rust type that a uniform field can have, with its WGSL spelling (same size and alignment
/// under WGSL's uniform layout rules for the scalar and 16-byte vector types listed here).
pub trait WgslType {
    /// The WGSL type name.
    const WGSL: &'static str;
    /// Its alignment in WGSL's uniform layout (a field's offset must be a multiple of it; the
    /// [`wgsl_params!`](crate::wgsl_params) macro checks this at compile time).
    const ALIGN: usize;
}

impl WgslType for u32 {
    const WGSL: &'static str = "u32";
    const ALIGN: usize = 4;
}
impl WgslType for i32 {
    const WGSL: &'static str = "i32";
    const ALIGN: usize = 4;
}
impl WgslType for f32 {
    const WGSL: &'static str = "f32";
    const ALIGN: usize = 4;
}
impl WgslType for [u32; 2] {
    const WGSL: &'static str = "vec2<u32>";
    const ALIGN: usize = 8;
}
impl WgslType for [u32; 4] {
    const WGSL: &'static str = "vec4<u32>";
    const ALIGN: usize = 16;
}
impl WgslType for [f32; 4] {
    const WGSL: &'static str = "vec4<f32>";
    const ALIGN: usize = 16;
}

/// A kernel's uniform parameters: a Pod struct whose WGSL declaration is generated from it.
pub trait UniformParams: bytemuck::Pod {
    /// The struct's name in WGSL (its Rust name).
    const NAME: &'static str;
    /// `(field, WGSL type)` in declaration order.
    const FIELDS: &'static [(&'static str, &'static str)];

    /// `struct Name { ... }` and the uniform binding `p` at `@binding(0)`.
    fn wgsl() -> String {
        let mut s = format!("struct {} {{\n", Self::NAME);
        for (field, ty) in Self::FIELDS {
            s.push_str(&format!("    {field}: {ty},\n"));
        }
        s.push_str(&format!(
            "}}\n@group(0) @binding(0) var<uniform> p: {};\n",
            Self::NAME
        ));
        s
    }
}

/// Defines a kernel's uniform `Params` once: the `#[repr(C)]` Pod Rust struct and (through
/// [`UniformParams`]) its WGSL declaration. Fields must be [`WgslType`]s at offsets WGSL's uniform
/// layout agrees with, and the struct a multiple of 16 bytes (explicit `_pad` fields): both are
/// checked at compile time, so the Rust and WGSL layouts cannot differ.
#[macro_export]
macro_rules! wgsl_params {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name { $($(#[$fm])* pub $field: $ty),* }

        impl $crate::gpu::spec::UniformParams for $name {
            const NAME: &'static str = stringify!($name);
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), <$ty as $crate::gpu::spec::WgslType>::WGSL)),*];
        }

        const _: () = {
            $(assert!(
                ::core::mem::offset_of!($name, $field)
                    % <$ty as $crate::gpu::spec::WgslType>::ALIGN
                    == 0,
                "a uniform field is not aligned as WGSL lays it out"
            );)*
            assert!(
                ::core::mem::size_of::<$name>() % 16 == 0,
                "uniform Params must be a multiple of 16 bytes (add _pad fields)"
            );
        };
    };
}

/// How a kernel accesses one storage binding: decides the generated WGSL declaration and accessors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Real numbers read with `{name}_at(i)` / `{name}_at4(i)` (see [`declare_input`]); vec4 units
    /// when the flag is set.
    Input(Elem, bool),
    /// f32 written with `{name}_set(i, v)` / `{name}_set4(i, v)`; vec4 units when the flag is set.
    Output(bool),
    /// A plain array the kernel indexes itself: `var<storage, read> name: array<T>;`.
    ReadArray(&'static str),
    /// A plain read-write array: `var<storage, read_write> name: array<T>;`.
    ReadWriteArray(&'static str),
}

/// One storage binding: the tensor bound there and how the kernel accesses it.
#[derive(Clone, Copy, Debug)]
pub struct Bind<'a> {
    /// The bound tensor.
    pub tensor: &'a Tensor,
    /// How the kernel reads or writes it.
    pub access: Access,
}

impl<'a> Bind<'a> {
    /// A real-valued input read through `_at` accessors.
    pub fn input(tensor: &'a Tensor, elem: Elem, vec4: bool) -> Bind<'a> {
        Bind {
            tensor,
            access: Access::Input(elem, vec4),
        }
    }

    /// An f32 output written through `_set` accessors.
    pub fn output(tensor: &'a Tensor, vec4: bool) -> Bind<'a> {
        Bind {
            tensor,
            access: Access::Output(vec4),
        }
    }

    /// A read-only array of WGSL type `elem` (for example `"u32"`).
    pub fn read(tensor: &'a Tensor, elem: &'static str) -> Bind<'a> {
        Bind {
            tensor,
            access: Access::ReadArray(elem),
        }
    }

    /// A read-write array of WGSL type `elem`.
    pub fn read_write(tensor: &'a Tensor, elem: &'static str) -> Bind<'a> {
        Bind {
            tensor,
            access: Access::ReadWriteArray(elem),
        }
    }

    /// True when the declaration needs `enable f16;`.
    pub fn needs_f16(&self) -> bool {
        matches!(self.access, Access::Input(Elem::F16, _))
    }

    /// The WGSL declaration of this binding as `name` at `slot`.
    pub fn wgsl(&self, name: &str, slot: u32) -> String {
        let head = |mode: &str| format!("@group(0) @binding({slot}) var<storage, {mode}> {name}");
        match self.access {
            Access::Input(elem, vec4) => declare_input(name, slot, elem, vec4),
            Access::Output(vec4) => crate::kernels::softmax::declare_output(name, slot, vec4),
            Access::ReadArray(t) => format!("{}: array<{t}>;\n", head("read")),
            Access::ReadWriteArray(t) => format!("{}: array<{t}>;\n", head("read_write")),
        }
    }
}

/// A kernel's storage bindings as one value: field order is binding order (1, 2, ...; binding 0 is
/// the uniform `Params`).
pub trait Bindings {
    /// `(name, binding)` in binding order.
    fn binds(&self) -> Vec<(&'static str, Bind<'_>)>;

    /// The WGSL declarations of every binding, in order.
    fn wgsl(&self) -> Vec<String> {
        self.binds()
            .iter()
            .enumerate()
            .map(|(i, (name, b))| b.wgsl(name, i as u32 + 1))
            .collect()
    }

    /// True when some binding is read as native f16.
    fn needs_f16(&self) -> bool {
        self.binds().iter().any(|(_, b)| b.needs_f16())
    }

    /// The buffers in binding order, for the bind group.
    fn buffers(&self) -> Vec<&wgpu::Buffer> {
        self.binds()
            .iter()
            .map(|(_, b)| b.tensor.buffer())
            .collect()
    }
}

/// Defines a kernel's storage bindings as a struct of [`Bind`]s; the field order gives the
/// `@binding` numbers (from 1) and the WGSL names, through [`Bindings`].
#[macro_export]
macro_rules! wgsl_bindings {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $field:ident),* $(,)? }) => {
        $(#[$m])*
        $vis struct $name<'a> { $($(#[$fm])* pub $field: $crate::gpu::spec::Bind<'a>),* }

        impl $crate::gpu::spec::Bindings for $name<'_> {
            fn binds(&self) -> Vec<(&'static str, $crate::gpu::spec::Bind<'_>)> {
                vec![$((stringify!($field), self.$field)),*]
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::wgsl_params! {
        struct Demo { rows: u32, eps: f32, _pad: [u32; 2], v: [u32; 4] }
    }

    #[test]
    fn params_declaration_follows_the_rust_struct() {
        assert_eq!(
            Demo::wgsl(),
            "struct Demo {\n    rows: u32,\n    eps: f32,\n    _pad: vec2<u32>,\n    v: vec4<u32>,\n}\n\
             @group(0) @binding(0) var<uniform> p: Demo;\n"
        );
        assert_eq!(std::mem::size_of::<Demo>(), 32);
    }
}
