//! Kernel compilation: NVRTC turns a `.cu` source into a CUBIN for the device's architecture
//! (`sm_90a` on Hopper), cached on disk keyed by source, architecture, options and NVRTC version,
//! so only the first start on a machine pays for it. Runs with no GPU at all (CI compiles every
//! kernel for `sm_80` and `sm_90a` this way).

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cudarc::nvrtc::{result, sys};

/// Whether libnvrtc can be loaded (cudarc looks it up by name on the library path).
pub fn available() -> bool {
    // SAFETY: only tries to dlopen candidate names.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's `(major, minor)`.
pub fn version() -> Result<(i32, i32)> {
    ensure_available()?;
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: two out-pointers to live integers.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .context("nvrtcVersion")?;
    Ok((major, minor))
}

fn ensure_available() -> Result<()> {
    if !available() {
        bail!(
            "libnvrtc was not found: install the CUDA toolkit's NVRTC (or `pip install nvidia-cuda-nvrtc==13.0.88`) and put its lib directory on LD_LIBRARY_PATH"
        );
    }
    Ok(())
}

/// Where the CUDA headers that kernels include (`cuda_bf16.h`, `cuda_fp16.h`, `cuda_fp8.h`)
/// are: `$FERRUM_CUDA_INCLUDE`, `$CUDA_HOME/include`, `$CUDA_PATH/include`, then
/// `/usr/local/cuda/include`. NVRTC has them not built in.
pub fn cuda_include_dir() -> Result<PathBuf> {
    let mut tried = Vec::new();
    let candidates = [
        std::env::var_os("FERRUM_CUDA_INCLUDE").map(PathBuf::from),
        std::env::var_os("CUDA_HOME").map(|p| Path::new(&p).join("include")),
        std::env::var_os("CUDA_PATH").map(|p| Path::new(&p).join("include")),
        Some(PathBuf::from("/usr/local/cuda/include")),
    ];
    for dir in candidates.into_iter().flatten() {
        if dir.join("cuda_bf16.h").is_file() {
            return Ok(dir);
        }
        tried.push(dir.display().to_string());
    }
    bail!(
        "the CUDA headers (cuda_bf16.h) were not found in {}: set FERRUM_CUDA_INCLUDE to the directory holding them",
        tried.join(", ")
    )
}

/// A compiled kernel module: CUBIN for a real architecture (`sm_XX`), PTX for a virtual one
/// (`compute_XX`).
#[derive(Clone, Debug)]
pub struct Compiled {
    pub image: Vec<u8>,
    pub cubin: bool,
    /// Taken from the disk cache rather than compiled now.
    pub cached: bool,
}

/// The options every kernel is compiled with (part of the cache key).
fn options(arch: &str, include: &Path) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".into(),
        // no --use_fast_math: it would turn sincosf (rotary angles reach 1e5) and divisions into
        // approximations; kernels call the fast intrinsics (__expf) where they are wanted
        "--extra-device-vectorization".into(),
        format!("--include-path={}", include.display()),
    ]
}

/// 64-bit FNV-1a: a stable hash for cache file names (std's hasher may change between releases).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // separator, so ("ab", "c") and ("a", "bc") differ
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The kernel cache directory: `$FERRUM_KERNEL_CACHE`, else `$XDG_CACHE_HOME/ferrum/kernels`,
/// else `~/.cache/ferrum/kernels`; `None` (no caching) where none can be named.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FERRUM_KERNEL_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("ferrum").join("kernels"))
}

/// The options `src` compiles with for `arch`, and its file in the disk cache (`None`: no
/// cache), keyed by source, architecture, options and NVRTC version.
fn cache_entry(name: &str, src: &str, arch: &str) -> Result<(Vec<String>, Option<PathBuf>)> {
    let (major, minor) = version()?;
    let include = cuda_include_dir()?;
    let opts = options(arch, &include);
    let nv = format!("nvrtc {major}.{minor}");
    let key = fnv1a(&[
        src.as_bytes(),
        arch.as_bytes(),
        opts.join(" ").as_bytes(),
        nv.as_bytes(),
    ]);
    let ext = if arch.starts_with("sm_") {
        "cubin"
    } else {
        "ptx"
    };
    let file = cache_dir().map(|d| d.join(format!("{name}-{arch}-{key:016x}.{ext}")));
    Ok((opts, file))
}

/// Whether the disk cache holds `src` compiled for `arch`.
pub fn is_cached(name: &str, src: &str, arch: &str) -> bool {
    cache_entry(name, src, arch).is_ok_and(|(_, f)| f.is_some_and(|f| f.is_file()))
}

/// Every program of `programs` compiled for activations of `dtype` and for `arch` (through the
/// disk cache), each on its own thread: NVRTC programs are independent, and a first start
/// compiles them all (a part of attention.cu alone takes seconds). In `programs`' order.
pub fn compile_all(
    programs: &[super::kernels::Program],
    dtype: &str,
    arch: &str,
) -> Vec<Result<Compiled>> {
    std::thread::scope(|s| {
        let threads: Vec<_> = programs
            .iter()
            .map(|p| s.spawn(move || compile(&p.name(), &p.source(dtype), arch)))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a kernel compile thread panicked")))
            })
            .collect()
    })
}

/// Compiles `src` (named `name` in messages) for `arch`, through the disk cache.
pub fn compile(name: &str, src: &str, arch: &str) -> Result<Compiled> {
    let (opts, file) = cache_entry(name, src, arch)?;
    let cubin = arch.starts_with("sm_");
    if let Some(f) = &file
        && let Ok(image) = std::fs::read(f)
        && !image.is_empty()
    {
        return Ok(Compiled {
            image,
            cubin,
            cached: true,
        });
    }
    let image = compile_uncached(name, src, &opts, cubin)?;
    if let Some(f) = &file {
        // a cache that cannot be written only costs the next start a compile
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        let written = f
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| std::fs::write(&tmp, &image))
            .and_then(|_| std::fs::rename(&tmp, f));
        if let Err(e) = written {
            tracing::debug!("kernel cache {}: {e}", f.display());
        }
    }
    Ok(Compiled {
        image,
        cubin,
        cached: false,
    })
}

/// One NVRTC program: create, compile, read CUBIN or PTX, destroy (also on error).
fn compile_uncached(name: &str, src: &str, opts: &[String], cubin: bool) -> Result<Vec<u8>> {
    let c_src = CString::new(src).context("kernel source holds a NUL byte")?;
    let c_name = CString::new(format!("{name}.cu"))?;
    let prog = result::create_program(&c_src, Some(&c_name))
        .with_context(|| format!("nvrtcCreateProgram for {name}"))?;
    struct Guard(sys::nvrtcProgram);
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: created above, destroyed once here.
            let _ = unsafe { result::destroy_program(self.0) };
        }
    }
    let guard = Guard(prog);
    // SAFETY: `prog` is live until `guard` drops.
    if let Err(e) = unsafe { result::compile_program(guard.0, opts) } {
        let log = unsafe { result::get_program_log(guard.0) }
            .map(|l| c_text(&l))
            .unwrap_or_default();
        bail!("NVRTC could not compile kernel {name} ({e:?}):\n{log}");
    }
    let mut size = 0usize;
    // SAFETY: `prog` compiled; the buffer is sized from NVRTC's answer.
    unsafe {
        if cubin {
            sys::nvrtcGetCUBINSize(guard.0, &mut size).result()?;
            let mut buf = vec![0u8; size];
            sys::nvrtcGetCUBIN(guard.0, buf.as_mut_ptr() as *mut c_char).result()?;
            Ok(buf)
        } else {
            let ptx = result::get_ptx(guard.0)?;
            Ok(ptx.iter().map(|&c| c as u8).collect())
        }
    }
}

fn c_text(bytes: &[c_char]) -> String {
    let raw: Vec<u8> = bytes.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&raw)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&raw).into_owned())
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn cache_key_separates_parts() {
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_eq!(fnv1a(&[b"x"]), fnv1a(&[b"x"]));
    }
}
