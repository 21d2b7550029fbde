//! Turns a model path into a loaded model: a GGUF file, or a Hugging Face folder (config.json +
//! safetensors), or — with `--load-format dummy` — a config.json alone with random weights.

use crate::config::ModelConfig;
use crate::decoder::{Decoder, tensor_count};
use crate::weights::{DummySource, GgufSource, SafetensorsSource, WeightSource};
use anyhow::{Context, Result, bail};
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

pub struct LoadedModel {
    pub decoder: Decoder,
    /// The open GGUF file when the model came from one (its metadata also holds the tokenizer).
    pub gguf: Option<GgufFile>,
    /// The Hugging Face folder when the model came from one (tokenizer files live there).
    pub hf_dir: Option<PathBuf>,
    /// Storage type of the weights as found on disk, for the start-up summary.
    pub weight_dtype: String,
}

impl LoadedModel {
    pub fn config(&self) -> &ModelConfig {
        &self.decoder.cfg
    }
}

pub fn load(path: &Path, format: LoadFormat, seed: u64) -> Result<LoadedModel> {
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
        let file =
            GgufFile::open(&p).with_context(|| format!("cannot read GGUF file {}", p.display()))?;
        let cfg = ModelConfig::from_gguf(&file).with_context(|| format!("in {}", p.display()))?;
        let decoder = if format == LoadFormat::Dummy {
            with_progress(cfg, &DummySource { seed })?
        } else {
            with_progress(cfg, &GgufSource { file: &file })?
        };
        let weight_dtype = gguf_weight_type(&file);
        return Ok(LoadedModel {
            decoder,
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
    let raw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&cfg_path).with_context(|| format!("cannot read {}", cfg_path.display()))?,
    )
    .with_context(|| format!("{} is not valid JSON", cfg_path.display()))?;
    let cfg = ModelConfig::from_hf(&raw).with_context(|| format!("in {}", cfg_path.display()))?;
    let declared = raw["torch_dtype"]
        .as_str()
        .or(raw["dtype"].as_str())
        .unwrap_or("unknown")
        .to_string();
    let (decoder, weight_dtype) = if format == LoadFormat::Dummy {
        (
            with_progress(cfg, &DummySource { seed })?,
            "dummy (random f32)".to_string(),
        )
    } else {
        (
            with_progress(cfg, &SafetensorsSource::open(path)?)?,
            declared,
        )
    };
    Ok(LoadedModel {
        decoder,
        gguf: None,
        hf_dir: Some(path.to_path_buf()),
        weight_dtype,
    })
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

fn with_progress(cfg: ModelConfig, src: &dyn WeightSource) -> Result<Decoder> {
    let bar = ProgressBar::new(tensor_count(&cfg) as u64);
    bar.set_style(
        ProgressStyle::with_template("loading weights {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let decoder = Decoder::load(cfg, src, &|name| {
        bar.set_message(name.to_string());
        bar.inc(1);
    });
    bar.finish_and_clear();
    decoder
}
