//! Turns a model path into a loaded model: a GGUF file, or a Hugging Face folder (config.json +
//! safetensors), or — with `--load-format dummy` — a config.json alone with random weights.

use crate::config::ModelConfig;
use crate::model::CausalLm;
use crate::params::ParamLoader;
use crate::weights::{DummySource, GgufSource, SafetensorsSource, WeightSource};
use anyhow::{Context, Result, bail};
use ferrum_backend::{Backend, CpuBackend, DryRun, Shard, WeightBytes};
use ferrum_gguf::GgufFile;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadFormat {
    Auto,
    Safetensors,
    Gguf,
    Dummy,
}

impl std::str::FromStr for LoadFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => LoadFormat::Auto,
            "safetensors" => LoadFormat::Safetensors,
            "gguf" => LoadFormat::Gguf,
            "dummy" => LoadFormat::Dummy,
            other => {
                return Err(format!(
                    "unsupported load format `{other}`; supported: auto, safetensors, gguf, dummy"
                ));
            }
        })
    }
}

/// How to load: the format, the dummy seed, vLLM's `--hf-overrides`, this process's shard, and
/// memory to keep free beside the weights (workspace and the smallest KV cache) when checking
/// that the model fits.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub format: LoadFormat,
    pub seed: u64,
    /// Merged into config.json before it is read (objects merged key by key).
    pub hf_overrides: Option<serde_json::Value>,
    pub shard: Shard,
    pub reserve_bytes: u64,
}

impl LoadOptions {
    pub fn new(format: LoadFormat, seed: u64) -> LoadOptions {
        LoadOptions {
            format,
            seed,
            hf_overrides: None,
            shard: Shard::WHOLE,
            reserve_bytes: 0,
        }
    }
}

pub struct LoadedModel<B: Backend = CpuBackend> {
    pub model: CausalLm<B>,
    /// The open GGUF file when the model came from one (its metadata also holds the tokenizer).
    pub gguf: Option<GgufFile>,
    /// The Hugging Face folder when the model came from one (tokenizer files live there).
    pub hf_dir: Option<PathBuf>,
    /// Storage type of the weights as found on disk, for the start-up summary.
    pub weight_dtype: String,
    /// Bytes the weights take on the backend.
    pub weight_bytes: usize,
}

impl<B: Backend> LoadedModel<B> {
    pub fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }
}

/// A model on the CPU backend (tests, tools).
pub fn load(path: &Path, format: LoadFormat, seed: u64) -> Result<LoadedModel> {
    load_on(path, &LoadOptions::new(format, seed), &CpuBackend::new())
}

/// What a model path holds, read without loading weights: its config (overrides applied), the
/// GGUF file or Hugging Face folder it came from, and the weights' storage type.
pub struct ModelFiles {
    pub cfg: ModelConfig,
    pub gguf: Option<GgufFile>,
    pub hf_dir: Option<PathBuf>,
    pub weight_dtype: String,
}

pub fn inspect(path: &Path, opts: &LoadOptions) -> Result<ModelFiles> {
    let format = opts.format;
    if !path.exists() {
        bail!("model path {} does not exist", path.display());
    }
    let gguf_path = if path.is_file() {
        Some(path.to_path_buf())
    } else if !path.join("config.json").exists() {
        single_gguf_in(path)?
    } else {
        None
    };
    if let Some(p) = gguf_path {
        if format == LoadFormat::Safetensors {
            bail!(
                "--load-format safetensors given, but {} is a GGUF file",
                p.display()
            );
        }
        if opts.hf_overrides.is_some() {
            bail!(
                "--hf-overrides edits a config.json; {} is a GGUF file",
                p.display()
            );
        }
        let file =
            GgufFile::open(&p).with_context(|| format!("cannot read GGUF file {}", p.display()))?;
        let cfg = ModelConfig::from_gguf(&file).with_context(|| format!("in {}", p.display()))?;
        let weight_dtype = if format == LoadFormat::Dummy {
            "dummy (random bf16)".to_string()
        } else {
            gguf_weight_type(&file)
        };
        return Ok(ModelFiles {
            cfg,
            gguf: Some(file),
            hf_dir: None,
            weight_dtype,
        });
    }
    if format == LoadFormat::Gguf {
        bail!(
            "--load-format gguf given, but {} is a folder without a .gguf file",
            path.display()
        );
    }
    let cfg_path = path.join("config.json");
    let mut raw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&cfg_path).with_context(|| format!("cannot read {}", cfg_path.display()))?,
    )
    .with_context(|| format!("{} is not valid JSON", cfg_path.display()))?;
    if let Some(o) = &opts.hf_overrides {
        merge(&mut raw, o);
    }
    let cfg = ModelConfig::from_hf(&raw).with_context(|| format!("in {}", cfg_path.display()))?;
    let declared = raw["torch_dtype"]
        .as_str()
        .or(raw["dtype"].as_str())
        .unwrap_or("unknown");
    let weight_dtype = match (format, cfg.fp8_block) {
        (LoadFormat::Dummy, Some((r, c))) => {
            format!("dummy (random fp8 e4m3 projections, {r}×{c} block scales; bf16 elsewhere)")
        }
        (LoadFormat::Dummy, None) => "dummy (random bf16)".to_string(),
        (_, Some((r, c))) => format!("fp8 e4m3 ({r}×{c} block scales), {declared} elsewhere"),
        _ => declared.to_string(),
    };
    Ok(ModelFiles {
        cfg,
        gguf: None,
        hf_dir: Some(path.to_path_buf()),
        weight_dtype,
    })
}

/// Reads the config, builds the model once dry (counting its parameters, checking every format
/// against the backend, summing the bytes it needs there), refuses it if it cannot fit, then
/// loads it with a progress bar.
pub fn load_on<B: Backend + WeightBytes>(
    path: &Path,
    opts: &LoadOptions,
    be: &B,
) -> Result<LoadedModel<B>> {
    load_files(inspect(path, opts)?, opts, be)
}

/// [`load_on`] for a model already inspected.
pub fn load_files<B: Backend + WeightBytes>(
    files: ModelFiles,
    opts: &LoadOptions,
    be: &B,
) -> Result<LoadedModel<B>> {
    let ModelFiles {
        cfg,
        gguf,
        hf_dir,
        weight_dtype,
    } = files;
    let (model, weight_bytes) = match (opts.format, &gguf, &hf_dir) {
        (LoadFormat::Dummy, _, _) => {
            let src = DummySource {
                seed: opts.seed,
                fp8: cfg.fp8_block.is_some(),
            };
            build(cfg, &src, opts, be)?
        }
        (_, Some(file), _) => build(cfg, &GgufSource { file }, opts, be)?,
        (_, None, Some(dir)) => build(cfg, &SafetensorsSource::open(dir)?, opts, be)?,
        (_, None, None) => unreachable!("a model comes from a GGUF file or a folder"),
    };
    Ok(LoadedModel {
        model,
        gguf,
        hf_dir,
        weight_dtype,
        weight_bytes,
    })
}

/// vLLM's `--hf-overrides`: keys replace config.json's; objects merge key by key.
pub fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn single_gguf_in(dir: &Path) -> Result<Option<PathBuf>> {
    let ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    match ggufs.len() {
        0 => bail!(
            "{} has no config.json and no .gguf file: not a model folder",
            dir.display()
        ),
        1 => Ok(Some(ggufs.into_iter().next().unwrap())),
        n => bail!(
            "{} holds {n} .gguf files and no config.json: pass the file itself",
            dir.display()
        ),
    }
}

/// The dominant tensor type of a GGUF file (e.g. "Q4_1"), for the start-up summary.
fn gguf_weight_type(file: &GgufFile) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for t in &file.tensors {
        *counts.entry(t.ggml_type.name().to_string()).or_insert(0u64) += t.n_elements();
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(k, _)| k)
        .unwrap_or_default()
}

fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

/// The dry run, the fit check, then the real load with a progress bar counting the dry run's
/// parameters. Returns the model and the bytes its weights take on the backend.
fn build<B: Backend + WeightBytes>(
    cfg: ModelConfig,
    src: &dyn WeightSource,
    opts: &LoadOptions,
    be: &B,
) -> Result<(CausalLm<B>, usize)> {
    let dry = DryRun::new(be);
    let counter = ParamLoader::new(&dry, src, opts.shard, true, cfg.fp8_block, &|_| {});
    CausalLm::load(cfg.clone(), &counter)?;
    let bytes = dry.bytes.get();
    let need = bytes as u64 + opts.reserve_bytes;
    let mem = be.memory();
    if need > mem.available {
        bail!(
            "the model does not fit: it needs {} ({} of weights on the {} backend + {} of workspace and KV cache) and {} has {} available of {}",
            gb(need),
            gb(bytes as u64),
            be.backend_name(),
            gb(opts.reserve_bytes),
            be.device_name(),
            gb(mem.available),
            gb(mem.total)
        );
    }
    let bar = ProgressBar::new(counter.count() as u64);
    bar.set_style(
        ProgressStyle::with_template("loading weights {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let on_param = |name: &str| {
        bar.set_message(name.to_string());
        bar.inc(1);
    };
    let loader = ParamLoader::new(be, src, opts.shard, false, cfg.fp8_block, &on_param);
    let started = std::time::Instant::now();
    let model = CausalLm::load(cfg, &loader);
    bar.finish_and_clear();
    let t = &loader.times;
    tracing::info!(
        "weights: {} parameters in {:.2?}: reading {:.2?}, to the {} backend {:.2?}, stacking {:.2?}",
        loader.count(),
        started.elapsed(),
        t.read.get(),
        be.backend_name(),
        t.upload.get(),
        t.stack.get()
    );
    Ok((model?, bytes))
}
