//! Hugging Face safetensors, single file or sharded (`model.safetensors.index.json`), memory-mapped.
//! Each shard's header is parsed and validated once, at open; tensors are then plain byte ranges.

use super::{WeightSource, check_shape};
use anyhow::{Context, Result, bail};
use ferrum_backend::{HostDtype, HostTensor};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

pub struct SafetensorsSource {
    shards: Vec<Mmap>,
    index: HashMap<String, Entry>,
}

/// Where one tensor's bytes are, as the shard's (validated) header says.
struct Entry {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: std::ops::Range<usize>,
}

impl SafetensorsSource {
    pub fn open(dir: &Path) -> Result<SafetensorsSource> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<String> = if index_path.exists() {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path)?)
                .with_context(|| format!("{} is not valid JSON", index_path.display()))?;
            let map = v["weight_map"]
                .as_object()
                .with_context(|| format!("{} has no `weight_map`", index_path.display()))?;
            let mut f: Vec<String> = map
                .values()
                .filter_map(|x| x.as_str().map(String::from))
                .collect();
            f.sort();
            f.dedup();
            f
        } else if dir.join("model.safetensors").exists() {
            vec!["model.safetensors".into()]
        } else {
            bail!(
                "{} has neither model.safetensors nor model.safetensors.index.json",
                dir.display()
            );
        };
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let path = dir.join(f);
            let file = std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            // SAFETY: the file is only read; a concurrent truncation by another process is outside our control, as for every mmap reader.
            let mmap = unsafe { Mmap::map(&file) }
                .with_context(|| format!("cannot map {}", path.display()))?;
            // deserialize validates the header against the file (offsets, sizes, dtypes)
            SafeTensors::deserialize(&mmap)
                .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
            let (header_len, meta) = SafeTensors::read_metadata(&mmap)?;
            let data_start = 8 + header_len;
            for (name, info) in meta.tensors() {
                let (a, b) = info.data_offsets;
                let entry = Entry {
                    shard: i,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    bytes: data_start + a..data_start + b,
                };
                index.insert(name, entry);
            }
            shards.push(mmap);
        }
        Ok(SafetensorsSource { shards, index })
    }
}

impl WeightSource for SafetensorsSource {
    fn tensor(&self, name: &str, shape: &[usize], dry: bool) -> Result<HostTensor<'_>> {
        let e = self
            .index
            .get(name)
            .with_context(|| format!("weight `{name}` is missing from the safetensors files"))?;
        check_shape(name, shape, &e.shape)?;
        let dtype = match e.dtype {
            Dtype::F32 => HostDtype::F32,
            Dtype::F16 => HostDtype::F16,
            Dtype::BF16 => HostDtype::BF16,
            Dtype::F8_E4M3 => HostDtype::F8E4M3,
            other => {
                bail!("weight `{name}` has dtype {other:?}; supported: F32, F16, BF16, F8_E4M3")
            }
        };
        let bytes = if dry {
            &[][..]
        } else {
            &self.shards[e.shard][e.bytes.clone()]
        };
        Ok(HostTensor {
            name: name.to_string(),
            dtype,
            shape: e.shape.clone(),
            bytes: Cow::Borrowed(bytes),
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}
