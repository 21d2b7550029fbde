//! The kernel sources, embedded in the binary, and the entry points each one defines (the one
//! list the backend loads from and the compile test checks).

/// Prepended to every file: type helpers and reductions.
pub const PRELUDE: &str = include_str!("../../kernels/prelude.cuh");

/// The headers kernel files include (`#include "name"` on a line of its own), which
/// [`Program::source`] writes in place for NVRTC (the emulator's compiler finds them on its
/// include path).
const HEADERS: &[(&str, &str)] = &[("gemv.cuh", include_str!("../../kernels/gemv.cuh"))];

/// `src` (the file `name`) with each `#include "h"` of [`HEADERS`] replaced by h's text, `#line`s
/// keeping error lines pointing into the file they come from.
fn with_headers(name: &str, src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for (i, line) in src.lines().enumerate() {
        let header = line
            .strip_prefix("#include \"")
            .and_then(|r| r.strip_suffix('"'))
            .and_then(|h| HEADERS.iter().find(|(n, _)| *n == h));
        match header {
            Some((h, text)) => {
                out.push_str(&format!(
                    "#line 1 \"{h}\"\n{text}\n#line {} \"{name}\"\n",
                    i + 2
                ));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// One `.cu` file: its entry points are `{function}_{dtype}` for each function and each of
/// [`DTYPES`]. A large file comes in parts (`IN_PART(n)` in the file, around each part's entry
/// points), each part an NVRTC program of its own, so that they compile in parallel.
pub struct KernelFile {
    pub name: &'static str,
    src: &'static str,
    pub parts: &'static [&'static [&'static str]],
}

/// The activation dtypes every kernel is instantiated for.
pub const DTYPES: [&str; 2] = ["bf16", "f16"];

pub const FILES: &[KernelFile] = &[
    KernelFile {
        name: "elementwise",
        src: include_str!("../../kernels/elementwise.cu"),
        parts: &[&[
            "add",
            "hold",
            "silu_mul",
            "split_qkv",
            "gather_rows",
            "to_float",
        ]],
    },
    KernelFile {
        name: "norm",
        src: include_str!("../../kernels/norm.cu"),
        parts: &[&["rms_norm", "add_rms_norm"]],
    },
    KernelFile {
        name: "rope",
        src: include_str!("../../kernels/rope.cu"),
        parts: &[&["rope"]],
    },
    KernelFile {
        name: "cache_write",
        src: include_str!("../../kernels/cache_write.cu"),
        parts: &[&[
            "write_kv",
            "qkv_to_cache",
            "qkv_to_cache_wide",
            "write_kv_fp8",
            "qkv_to_cache_fp8",
            "qkv_to_cache_wide_fp8",
        ]],
    },
    KernelFile {
        name: "attention",
        src: include_str!("../../kernels/attention.cu"),
        parts: &[
            &[
                "paged_attention",
                "paged_attention_split",
                "paged_attention_tiled",
                "paged_attention_fp8",
                "paged_attention_split_fp8",
                "paged_attention_tiled_fp8",
                "attention_merge",
            ],
            &[
                "paged_attention_group_d64",
                "paged_attention_group_d128",
                "paged_attention_group_d64_fp8",
                "paged_attention_group_d128_fp8",
            ],
        ],
    },
    KernelFile {
        name: "flash_attention",
        src: include_str!("../../kernels/flash_attention.cu"),
        parts: &[&[
            "flash_attention_d64",
            "flash_attention_d128",
            "flash_attention_d64_fp8",
            "flash_attention_d128_fp8",
        ]],
    },
    KernelFile {
        name: "moe_route",
        src: include_str!("../../kernels/moe_route.cu"),
        parts: &[&["moe_route", "gemv_norm_route"]],
    },
    KernelFile {
        name: "moe",
        src: include_str!("../../kernels/moe.cu"),
        parts: &[
            &[
                "moe_gemv_swiglu",
                "moe_gemv_swiglu_fp8",
                "moe_gemv_combine",
                "moe_gemv_combine_fp8",
                "moe_count",
                "moe_offsets",
                "moe_scatter",
                "moe_combine",
            ],
            &["moe_expert_mma", "moe_expert_mma_fp8"],
            &["moe_expert_pipe", "moe_expert_pipe_fp8"],
        ],
    },
    KernelFile {
        name: "moe_w8a8",
        src: include_str!("../../kernels/moe_w8a8.cu"),
        parts: &[&["moe_expert_w8a8"]],
    },
    KernelFile {
        name: "linear",
        src: include_str!("../../kernels/linear.cu"),
        parts: &[&[
            "gemv_half",
            "gemv_half_row",
            "gemv_fp8",
            "gemv_fp8_row",
            "gemv_swiglu_half",
            "gemv_swiglu_fp8",
            "gemv_norm_half",
            "gemv_norm_fp8",
            "dequant_fp8",
            "quant_fp8_rows",
            "quant_fp8_grouped",
            "quant_fp8_rows_by_row",
            "quant_fp8_grouped_by_row",
        ]],
    },
    KernelFile {
        name: "sample",
        src: include_str!("../../kernels/sample.cu"),
        parts: &[&[
            "argmax_rows",
            "sample_rows",
            "sample_chunks",
            "sample_pick",
            "sample_processed",
            "process_rows",
            "score_rows",
        ]],
    },
];

/// One NVRTC program: a file, or one part of a file of several.
pub struct Program {
    pub file: &'static KernelFile,
    /// 1-based within a file of several parts; 0 for a file of one (all of it).
    pub part: usize,
    pub functions: &'static [&'static str],
}

/// Every program of every file, in [`FILES`]' order.
pub fn programs() -> Vec<Program> {
    FILES
        .iter()
        .flat_map(|file| {
            let whole = file.parts.len() == 1;
            file.parts
                .iter()
                .enumerate()
                .map(move |(i, &functions)| Program {
                    file,
                    part: if whole { 0 } else { i + 1 },
                    functions,
                })
        })
        .collect()
}

impl Program {
    /// The file's name, with the part after a dot for a file of several (cache files and
    /// messages).
    pub fn name(&self) -> String {
        match self.part {
            0 => self.file.name.to_string(),
            p => format!("{}.{p}", self.file.name),
        }
    }

    /// The source NVRTC compiles for activations of `dtype` (one of [`DTYPES`]; the entry
    /// points instantiated for it alone, as a backend runs one dtype): the dtype's and the
    /// part's defines, the prelude, then the file with its headers (`#line`s keep error lines
    /// pointing into the file).
    pub fn source(&self, dtype: &str) -> String {
        let only = dtype.to_uppercase();
        let name = format!("{}.cu", self.file.name);
        format!(
            "#define FERRUM_ONLY_{only}\n#define FERRUM_PART {}\n{PRELUDE}\n#line 1 \"{name}\"\n{}",
            self.part,
            with_headers(&name, self.file.src)
        )
    }

    /// Every entry point's name for `dtype`.
    pub fn entry_points<'a>(&'a self, dtype: &'a str) -> impl Iterator<Item = String> + 'a {
        self.functions.iter().map(move |f| format!("{f}_{dtype}"))
    }
}

#[cfg(test)]
mod tests {
    use super::{FILES, programs};

    /// Every `#include "…"` of a kernel file is written in place by `Program::source` (NVRTC is
    /// given no include path of ours), headers included by headers too.
    #[test]
    fn every_include_is_written_in_place() {
        for p in programs() {
            let src = p.source("bf16");
            let left = src
                .lines()
                .find(|l| l.trim_start().starts_with("#include \""));
            assert!(left.is_none(), "{}: {left:?} left for NVRTC", p.name());
        }
    }

    /// Under programmatic dependent launch (`FERRUM_CUDA_PDL`) a kernel may start before the one
    /// before it has finished: each entry point's first statement must be `grid_dependency()`,
    /// or `wait_then_launch()`, or `launch_dependents()` in a kernel that loads its weights first
    /// and then calls `wait_for_dependencies()` (the GEMVs; `cuda_ops` under PDL checks them).
    #[test]
    fn every_entry_point_waits_for_the_kernel_before_it() {
        let mut seen = 0;
        for f in FILES {
            for (at, _) in f.src.match_indices("extern \"C\" __global__") {
                let body = &f.src[at..][f.src[at..].find('{').unwrap() + 1..];
                let first = body.trim_start_matches(|c: char| c.is_whitespace() || c == '\\');
                let line = f.src[..at].lines().count() + 1;
                let firsts = [
                    "grid_dependency();",
                    "wait_then_launch();",
                    "launch_dependents();",
                ];
                assert!(
                    firsts.iter().any(|w| first.starts_with(w)),
                    "{}.cu:{line}: an entry point that does not start with grid_dependency() or its parts",
                    f.name
                );
                seen += 1;
            }
        }
        assert!(seen >= 41, "only {seen} entry points found");
    }
}
