//! Every `HEEDFUL_*` setting the engine itself reads, parsed once.
//!
//! [`GpuOptions::from_env`](super::GpuOptions::from_env) reads the process environment through
//! [`EnvConfig::parse`] when options are built; kernels never read the environment on a call. The
//! parse is a pure function of a lookup, so tests give it a map instead of mutating the process
//! environment (which other tests in the same process would see):
//!
//! ```
//! use heedful::gpu::{EnvConfig, F16Mode};
//! let env = |k: &str| (k == "HEEDFUL_F16").then(|| "packed".to_string());
//! assert_eq!(EnvConfig::parse(env)?.f16, F16Mode::Packed);
//! let bad = |k: &str| (k == "HEEDFUL_F16").then(|| "fast".to_string());
//! assert!(EnvConfig::parse(bad).unwrap_err().to_string().contains("native, packed"));
//! # Ok::<(), heedful::gpu::EnvError>(())
//! ```
//!
//! | variable | accepted | effect |
//! | --- | --- | --- |
//! | `HEEDFUL_ADAPTER` | any text | first adapter whose name contains it (case-insensitive) |
//! | `HEEDFUL_BACKEND` | `vulkan`, `metal`, `dx12`, `gl`, `webgpu`, comma separated | backends considered |
//! | `HEEDFUL_F16` | `native` (default), `packed` | how kernels read f16 data |
//! | `HEEDFUL_ATTN_R` | 1..=1024 | attention query rows per invocation (both flash variants) |
//! | `HEEDFUL_ATTN_KT` | 1..=1024 | attention keys per tile (both flash variants) |
//! | `HEEDFUL_ATTN_WG` | 1..=1024, at most the device's invocations per workgroup | attention workgroup size |
//! | `HEEDFUL_ATTN_SHARED` | `0`, `1` | attention K/V tiles staged in workgroup memory |
//! | `HEEDFUL_ATTN_UNROLL` | `0`, `1` | the unrolled CPU flash variant allowed |
//! | `HEEDFUL_ATTN_DECODE_WG` | `0`, `1` | decoding attention: one workgroup (1) or invocation (0) per key chunk |
//! | `HEEDFUL_ATTN_SUBGROUP` | `0`, `1` | unrolled flash kernel: k/v rows loaded once per 8-lane subgroup (1) or by every lane (0) |
//! | `HEEDFUL_ATTN_COOP` | `0`, `1` | full-sequence attention on cooperative matrices where the adapter offers them |
//! | `HEEDFUL_ATTN_COOP_TILE` | `NSxNKF`, NS 1..=8, NKF 1..=4 | that kernel's block: subgroups of 16 query rows per workgroup, 16-key fragments per tile |
//! | `HEEDFUL_COOP` | `0`, `1` (default) | cooperative matrices (tensor cores) used where offered |
//! | `HEEDFUL_COOP_AUTO` | `0`, `1` | `Auto` takes the cooperative-matrix kernel for f16 weights (default: the tuning table) |
//! | `HEEDFUL_COOP_TILE` | `WMxWNxFMxFN[xKF]`, each 1..=8, KF 1..=4 | the cooperative-matrix kernel's block |
//! | `HEEDFUL_COOP_TILE_SMALL` | as `HEEDFUL_COOP_TILE` | its block for grids too small to fill the device |
//! | `HEEDFUL_PROFILE` | `0`, `1` | time every dispatch with GPU timestamps ([`crate::gpu::DispatchProfile`]) |
//!
//! Unset or blank variables take the default; anything else outside the accepted set is an
//! [`EnvError`] naming the variable, the value and what is accepted. The `HEEDFUL_ATTN_*` knobs are
//! for benchmarks (see [`TuningOverrides`]).

use super::context::parse_backends;
use crate::error::{Error, Result};

/// A `HEEDFUL_*` variable whose value is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: {problem}; accepted: {accepted}")]
pub struct EnvError {
    /// The variable, e.g. `HEEDFUL_F16`.
    pub var: &'static str,
    /// The value it held.
    pub value: String,
    /// What is wrong with it, e.g. `unknown backend "vulkun"`.
    pub problem: String,
    /// What the variable accepts.
    pub accepted: String,
}

/// How kernels read f16 data (`HEEDFUL_F16`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum F16Mode {
    /// Natively where the device has `SHADER_F16`, packed `u32` otherwise.
    #[default]
    Native,
    /// Always packed `u32` + `unpack2x16float`, even where the device has `SHADER_F16` (tests cover
    /// both paths on one device this way).
    Packed,
}

/// Benchmark overrides of the tuning table ([`crate::gpu::Tuning`]); `None` keeps the table's value.
/// Applied on every adapter class by [`crate::gpu::Tuning::with_overrides`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TuningOverrides {
    /// `HEEDFUL_COOP_AUTO`: [`MatmulKernel::Auto`](crate::kernels::matmul::MatmulKernel::Auto)
    /// takes the cooperative-matrix kernel for f16 weights where offered (`1`) or never (`0`).
    pub coop_auto: Option<bool>,
    /// `HEEDFUL_COOP_TILE`: the cooperative-matrix kernel's block, `WMxWNxFMxFN[xKF]`.
    pub coop_tile: Option<super::CoopTile>,
    /// `HEEDFUL_COOP_TILE_SMALL`: its block for grids too small to fill the device.
    pub coop_tile_small: Option<super::CoopTile>,
    /// `HEEDFUL_ATTN_DECODE_WG`: decoding attention runs one workgroup (`1`) or one invocation
    /// (`0`) per key chunk.
    pub attn_decode_workgroup: Option<bool>,
    /// `HEEDFUL_ATTN_SUBGROUP`: the unrolled flash kernel shares k/v row loads over 8-lane
    /// subgroups (`1`) or every lane loads them (`0`).
    pub attn_subgroup: Option<bool>,
    /// `HEEDFUL_ATTN_COOP`: full-sequence attention runs the cooperative-matrix flash kernel
    /// where the adapter offers cooperative matrices (`1`) or never (`0`).
    pub attn_coop: Option<bool>,
    /// `HEEDFUL_ATTN_COOP_TILE`: that kernel's block, `NSxNKF`.
    pub attn_coop_tile: Option<super::CoopAttnTile>,
    /// `HEEDFUL_ATTN_R`: query rows per invocation of both flash variants.
    pub attn_rows: Option<u32>,
    /// `HEEDFUL_ATTN_KT`: keys per tile of both flash variants.
    pub attn_kt: Option<u32>,
    /// `HEEDFUL_ATTN_WG`: invocations per attention workgroup.
    pub attn_wg: Option<u32>,
    /// `HEEDFUL_ATTN_SHARED`: stage K/V tiles in workgroup memory.
    pub attn_shared: Option<bool>,
    /// `HEEDFUL_ATTN_UNROLL`: allow the unrolled CPU flash variant.
    pub attn_unrolled: Option<bool>,
}

/// The `HEEDFUL_*` settings, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvConfig {
    /// `HEEDFUL_ADAPTER`: substring of the adapter name to use.
    pub adapter: Option<String>,
    /// `HEEDFUL_BACKEND`: comma-separated backend list, checked by [`parse_backends`].
    pub backends: Option<String>,
    /// `HEEDFUL_F16`.
    pub f16: F16Mode,
    /// `HEEDFUL_ATTN_*`.
    pub overrides: TuningOverrides,
    /// `HEEDFUL_PROFILE=1`: time every dispatch (see [`crate::gpu::DispatchProfile`]).
    pub profile: bool,
    /// `HEEDFUL_COOP=0`: never use cooperative matrices (the default, unset or `1`, uses them
    /// where the adapter offers them).
    pub no_coop: bool,
}

/// Accepted backend names, as the errors list them.
pub(crate) const BACKENDS_ACCEPTED: &str = "vulkan, metal, dx12, gl, webgpu (comma separated)";

impl EnvConfig {
    /// Parses the settings from `lookup` (a variable name to its value, `None` when unset). Blank
    /// values count as unset; values are trimmed; names (`packed`, `vulkan`) are case-insensitive.
    pub fn parse(lookup: impl Fn(&str) -> Option<String>) -> Result<EnvConfig, EnvError> {
        let get = |k: &str| {
            lookup(k)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let bad = |var: &'static str, value: &str, problem: &str, accepted: &str| EnvError {
            var,
            value: value.to_string(),
            problem: problem.to_string(),
            accepted: accepted.to_string(),
        };
        let backends = get("HEEDFUL_BACKEND");
        if let Some(b) = &backends {
            parse_backends(Some(b)).map_err(|e| {
                let name = match e {
                    Error::BadBackend(part) => part,
                    _ => b.clone(),
                };
                let problem = format!("unknown backend {name:?}");
                bad("HEEDFUL_BACKEND", b, &problem, BACKENDS_ACCEPTED)
            })?;
        }
        let f16 = match get("HEEDFUL_F16") {
            None => F16Mode::Native,
            Some(v) if v.eq_ignore_ascii_case("native") => F16Mode::Native,
            Some(v) if v.eq_ignore_ascii_case("packed") => F16Mode::Packed,
            Some(v) => return Err(bad("HEEDFUL_F16", &v, "unknown f16 mode", "native, packed")),
        };
        let count = |var: &'static str| -> Result<Option<u32>, EnvError> {
            get(var)
                .map(|v| match v.parse::<u32>() {
                    Ok(n) if (1..=1024).contains(&n) => Ok(n),
                    _ => Err(bad(
                        var,
                        &v,
                        "not a count in range",
                        "an integer in 1..=1024",
                    )),
                })
                .transpose()
        };
        let flag = |var: &'static str| -> Result<Option<bool>, EnvError> {
            get(var)
                .map(|v| match v.as_str() {
                    "0" => Ok(false),
                    "1" => Ok(true),
                    _ => Err(bad(var, &v, "not a flag", "0, 1")),
                })
                .transpose()
        };
        let tile = |var: &'static str| -> Result<Option<super::CoopTile>, EnvError> {
            get(var)
                .map(|v| {
                    super::CoopTile::parse(&v).ok_or_else(|| {
                        bad(
                            var,
                            &v,
                            "not a cooperative-matrix block",
                            "WMxWNxFMxFN or WMxWNxFMxFNxKF, each 1..=8, KF 1..=4 (e.g. 2x2x2x4)",
                        )
                    })
                })
                .transpose()
        };
        Ok(EnvConfig {
            adapter: get("HEEDFUL_ADAPTER"),
            backends,
            f16,
            overrides: TuningOverrides {
                attn_rows: count("HEEDFUL_ATTN_R")?,
                attn_kt: count("HEEDFUL_ATTN_KT")?,
                attn_wg: count("HEEDFUL_ATTN_WG")?,
                attn_shared: flag("HEEDFUL_ATTN_SHARED")?,
                attn_unrolled: flag("HEEDFUL_ATTN_UNROLL")?,
                coop_auto: flag("HEEDFUL_COOP_AUTO")?,
                attn_decode_workgroup: flag("HEEDFUL_ATTN_DECODE_WG")?,
                attn_subgroup: flag("HEEDFUL_ATTN_SUBGROUP")?,
                attn_coop: flag("HEEDFUL_ATTN_COOP")?,
                attn_coop_tile: get("HEEDFUL_ATTN_COOP_TILE")
                    .map(|v| {
                        super::CoopAttnTile::parse(&v).ok_or_else(|| {
                            bad(
                                "HEEDFUL_ATTN_COOP_TILE",
                                &v,
                                "not a cooperative-matrix attention block",
                                "NSxNKF, NS 1..=8, NKF 1..=4 (e.g. 2x2)",
                            )
                        })
                    })
                    .transpose()?,
                coop_tile: tile("HEEDFUL_COOP_TILE")?,
                coop_tile_small: tile("HEEDFUL_COOP_TILE_SMALL")?,
            },
            profile: flag("HEEDFUL_PROFILE")?.unwrap_or(false),
            no_coop: !flag("HEEDFUL_COOP")?.unwrap_or(true),
        })
    }

    /// Parses the process environment (read once per call; [`GpuOptions::from_env`] calls it once
    /// when options are built).
    ///
    /// [`GpuOptions::from_env`]: super::GpuOptions::from_env
    pub fn from_process() -> Result<EnvConfig, EnvError> {
        Self::parse(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, x)| x.clone())
    }

    #[test]
    fn unset_and_blank_take_the_defaults() {
        assert_eq!(EnvConfig::parse(env(&[])).unwrap(), EnvConfig::default());
        let blank = env(&[
            ("HEEDFUL_BACKEND", " "),
            ("HEEDFUL_F16", ""),
            ("HEEDFUL_ATTN_KT", "  "),
        ]);
        assert_eq!(EnvConfig::parse(blank).unwrap(), EnvConfig::default());
    }

    #[test]
    fn accepted_values_parse() {
        let c = EnvConfig::parse(env(&[
            ("HEEDFUL_ADAPTER", "llvm"),
            ("HEEDFUL_BACKEND", "Vulkan, gl"),
            ("HEEDFUL_F16", " PACKED "),
            ("HEEDFUL_ATTN_R", "2"),
            ("HEEDFUL_ATTN_KT", "16"),
            ("HEEDFUL_ATTN_WG", "32"),
            ("HEEDFUL_ATTN_SHARED", "1"),
            ("HEEDFUL_ATTN_UNROLL", "0"),
            ("HEEDFUL_PROFILE", "1"),
            ("HEEDFUL_COOP", "0"),
            ("HEEDFUL_COOP_AUTO", "1"),
            ("HEEDFUL_COOP_TILE", "4x2x2x1"),
            ("HEEDFUL_COOP_TILE_SMALL", "1x2x1x1x4"),
            ("HEEDFUL_ATTN_DECODE_WG", "0"),
            ("HEEDFUL_ATTN_SUBGROUP", "0"),
            ("HEEDFUL_ATTN_COOP", "1"),
            ("HEEDFUL_ATTN_COOP_TILE", "2x1"),
        ]))
        .unwrap();
        assert!(c.profile && c.no_coop);
        assert_eq!(c.adapter.as_deref(), Some("llvm"));
        assert_eq!(c.backends.as_deref(), Some("Vulkan, gl"));
        assert_eq!(c.f16, F16Mode::Packed);
        assert_eq!(
            c.overrides,
            TuningOverrides {
                attn_rows: Some(2),
                attn_kt: Some(16),
                attn_wg: Some(32),
                attn_shared: Some(true),
                attn_unrolled: Some(false),
                coop_auto: Some(true),
                coop_tile: Some(crate::gpu::CoopTile {
                    wm: 4,
                    wn: 2,
                    fm: 2,
                    fn_: 1,
                    kf: 2
                }),
                coop_tile_small: crate::gpu::CoopTile::parse("1x2x1x1x4"),
                attn_decode_workgroup: Some(false),
                attn_subgroup: Some(false),
                attn_coop: Some(true),
                attn_coop_tile: crate::gpu::CoopAttnTile::parse("2x1"),
            }
        );
        let native = EnvConfig::parse(env(&[("HEEDFUL_F16", "native")])).unwrap();
        assert_eq!(native.f16, F16Mode::Native);
    }

    #[test]
    fn coop_tile_garbage_is_an_error_naming_the_form() {
        for value in [
            "2x2x2",
            "2x2x2x2x5",
            "1x1x1x1x1x1",
            "0x2x2x2",
            "2x9x2x2",
            "axbxcxd",
            "2x2x2x-1",
        ] {
            let e = EnvConfig::parse(env(&[("HEEDFUL_COOP_TILE", value)])).unwrap_err();
            assert_eq!((e.var, e.value.as_str()), ("HEEDFUL_COOP_TILE", value));
            assert!(e.to_string().contains("WMxWNxFMxFN"), "{e}");
        }
        // The slice depth is optional (32-deep by default).
        for (value, kf) in [("2x2x1x1", 2), ("2x2x1x1x4", 4)] {
            let c = EnvConfig::parse(env(&[("HEEDFUL_COOP_TILE", value)])).unwrap();
            assert_eq!(c.overrides.coop_tile.map(|t| t.kf), Some(kf), "{value}");
        }
    }

    #[test]
    fn attention_coop_tile_garbage_is_an_error_naming_the_form() {
        for value in ["2", "2x", "0x1", "9x1", "2x5", "2x2x2", "axb", "-1x1"] {
            let e = EnvConfig::parse(env(&[("HEEDFUL_ATTN_COOP_TILE", value)])).unwrap_err();
            assert_eq!((e.var, e.value.as_str()), ("HEEDFUL_ATTN_COOP_TILE", value));
            assert!(e.to_string().contains("NSxNKF"), "{e}");
        }
        let c = EnvConfig::parse(env(&[("HEEDFUL_ATTN_COOP_TILE", "8x4")])).unwrap();
        assert_eq!(
            c.overrides.attn_coop_tile,
            Some(crate::gpu::CoopAttnTile { ns: 8, nkf: 4 })
        );
    }

    /// The old code took any `HEEDFUL_F16` other than `packed` as native f16.
    #[test]
    fn f16_garbage_is_an_error_naming_variable_value_and_accepted() {
        let e = EnvConfig::parse(env(&[("HEEDFUL_F16", "packd")])).unwrap_err();
        assert_eq!(e.var, "HEEDFUL_F16");
        let msg = e.to_string();
        for want in ["HEEDFUL_F16", "\"packd\"", "native, packed"] {
            assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        }
    }

    #[test]
    fn unknown_backend_is_an_error_listing_the_accepted_ones() {
        for value in ["vulkun", "vulkan,foo", ","] {
            let e = EnvConfig::parse(env(&[("HEEDFUL_BACKEND", value)])).unwrap_err();
            let msg = e.to_string();
            let want_unknown = if value == "vulkan,foo" {
                "unknown backend \"foo\""
            } else {
                "unknown backend"
            };
            for want in [
                "HEEDFUL_BACKEND",
                value,
                want_unknown,
                "vulkan, metal, dx12, gl, webgpu",
            ] {
                assert!(msg.contains(want), "{msg:?} lacks {want:?}");
            }
        }
    }

    /// The old code ignored unparsable knobs, and `HEEDFUL_ATTN_WG=0` or `HEEDFUL_ATTN_KT=0`
    /// divided by zero in the attention plan.
    #[test]
    fn attention_knob_garbage_and_zero_are_errors() {
        for var in ["HEEDFUL_ATTN_R", "HEEDFUL_ATTN_KT", "HEEDFUL_ATTN_WG"] {
            for value in ["0", "x", "-1", "4096"] {
                let e = EnvConfig::parse(env(&[(var, value)])).unwrap_err();
                assert_eq!((e.var, e.value.as_str()), (var, value));
                assert!(e.to_string().contains("1..=1024"), "{e}");
            }
        }
        for var in [
            "HEEDFUL_ATTN_SHARED",
            "HEEDFUL_ATTN_UNROLL",
            "HEEDFUL_PROFILE",
            "HEEDFUL_COOP_AUTO",
            "HEEDFUL_ATTN_DECODE_WG",
            "HEEDFUL_ATTN_SUBGROUP",
            "HEEDFUL_ATTN_COOP",
        ] {
            let e = EnvConfig::parse(env(&[(var, "yes")])).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.to_string().contains("0, 1"), "{e}");
        }
    }
}
