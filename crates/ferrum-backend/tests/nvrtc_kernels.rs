//! Every CUDA kernel compiles with NVRTC for Ampere (`sm_80`) and Hopper (`sm_90a`), and each
//! CUBIN defines every entry point the backend loads. Needs no GPU: NVRTC and the CUDA headers
//! come from the pinned PyPI wheels that `scripts/test.sh` installs (it sets
//! `FERRUM_REQUIRE_NVRTC=1`, so there this test cannot pass by skipping).

use ferrum_backend::cuda::{kernels, nvrtc};

const ARCHS: [&str; 2] = ["sm_80", "sm_90a"];

#[test]
fn every_kernel_compiles_for_ampere_and_hopper() {
    if !nvrtc::available() {
        assert!(
            std::env::var_os("FERRUM_REQUIRE_NVRTC").is_none(),
            "FERRUM_REQUIRE_NVRTC is set but libnvrtc was not found on LD_LIBRARY_PATH"
        );
        eprintln!(
            "SKIPPED: libnvrtc not found; scripts/test.sh installs it (nvidia-cuda-nvrtc==13.0.88) and runs this test"
        );
        return;
    }
    // compile for real every time: a cache hit would not show that the source compiles
    let cache = std::env::temp_dir().join(format!("ferrum-nvrtc-test-{}", std::process::id()));
    // SAFETY: set before any other thread of this test binary reads the environment.
    unsafe { std::env::set_var("FERRUM_KERNEL_CACHE", &cache) };
    let (major, minor) = nvrtc::version().unwrap();
    for arch in ARCHS {
        for dtype in kernels::DTYPES {
            // every program at once for one dtype, as a backend's first start compiles them
            let programs = kernels::programs();
            let t = std::time::Instant::now();
            let all = nvrtc::compile_all(&programs, dtype, arch);
            eprintln!(
                "nvrtc {major}.{minor}: {} programs for {arch}, {dtype} in {:.2?}",
                all.len(),
                t.elapsed()
            );
            for (p, c) in programs.iter().zip(all) {
                let name = p.name();
                let c = c.unwrap_or_else(|e| panic!("{name} for {arch}, {dtype}: {e:#}"));
                assert!(c.cubin && !c.cached && c.image.starts_with(b"\x7fELF"));
                for e in p.entry_points(dtype) {
                    assert!(
                        c.image.windows(e.len()).any(|w| w == e.as_bytes()),
                        "{name} for {arch} defines no `{e}`"
                    );
                }
                eprintln!("  {name}: {} bytes", c.image.len());
            }
        }
    }
    // the second time comes from the cache, byte for byte
    let p = &kernels::programs()[0];
    let (name, src) = (p.name(), p.source("bf16"));
    assert!(nvrtc::is_cached(&name, &src, "sm_90a"));
    let again = nvrtc::compile(&name, &src, "sm_90a").unwrap();
    assert!(again.cached);
    let _ = std::fs::remove_dir_all(&cache);
}
