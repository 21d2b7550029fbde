//! Compiles every schema of a suite file (tests/openai/json_schema_suite/schemas.json) for a
//! GGUF model's tokenizer: which llguidance accepts, which it refuses (and why), and the
//! compile time of each (median, p99), plus the time of one mask at the start.
//!
//! cargo run --release -p ferrum-structured --example schema_suite -- MODEL.gguf SUITE.json [OUT.json]

use std::time::Instant;

use ferrum_engine::sampling::mask_words;
use ferrum_structured::{ConstraintSpec, StructuredOutputs};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let gguf = ferrum_gguf::GgufFile::open(std::path::Path::new(&args[1]))?;
    let tok = ferrum_tokenizer::Tokenizer::from_gguf(&gguf)?;
    let t0 = Instant::now();
    let so = StructuredOutputs::new(&tok, tok.vocab_size())?;
    eprintln!("token trie: {:.3} s", t0.elapsed().as_secs_f64());
    let suite: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[2])?)?;
    let mut out = Vec::new();
    let mut times = Vec::new();
    let mut mask_times = Vec::new();
    for s in suite["schemas"].as_array().unwrap() {
        let spec = ConstraintSpec::JsonSchema {
            schema: s["schema"].clone(),
            strict: true,
        };
        let t = Instant::now();
        let r = so.compile_blocking(&spec);
        let secs = t.elapsed().as_secs_f64();
        let (status, err) = match &r {
            Ok(c) => {
                times.push(secs);
                let mut m = c.0.new_matcher();
                let mut bits = vec![0u32; mask_words(so.vocab_size())];
                let t = Instant::now();
                m.fill_mask(&mut bits).map_err(anyhow::Error::msg)?;
                mask_times.push(t.elapsed().as_secs_f64());
                ("accepted", None)
            }
            Err(e) => ("refused", Some(e.0.clone())),
        };
        println!(
            "{status:8} {:.4}s {} #{} {}{}",
            secs,
            s["file"].as_str().unwrap(),
            s["index"],
            s["description"].as_str().unwrap(),
            err.as_deref()
                .map(|e| format!(" -- {e}"))
                .unwrap_or_default()
        );
        let mut e = s.clone();
        e["expect"] = status.into();
        if let Some(err) = err {
            e["error"] = err.into();
        }
        out.push(e);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    eprintln!(
        "{} accepted, {} refused; compile median {:.2} ms, p99 {:.2} ms, max {:.2} ms; first mask median {:.0} us, p99 {:.0} us",
        times.len(),
        out.len() - times.len(),
        pct(&mut times, 0.5) * 1e3,
        pct(&mut times, 0.99) * 1e3,
        pct(&mut times, 1.0) * 1e3,
        pct(&mut mask_times, 0.5) * 1e6,
        pct(&mut mask_times, 0.99) * 1e6,
    );
    if let Some(p) = args.get(3) {
        let mut suite = suite.clone();
        suite["schemas"] = out.into();
        std::fs::write(p, serde_json::to_string_pretty(&suite)? + "\n")?;
    }
    Ok(())
}
