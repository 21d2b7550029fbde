//! Loading a model's parameters: "the linear layer at this prefix" in whatever form the checkpoint
//! holds it there (dense, GGUF blocks, block-FP8 weight + `weight_scale_inv`), this process's
//! tensor-parallel shard of it, handed to the backend's [`Weights`]. Every call is one tick of
//! the progress count, so a dry run of a model's build counts exactly what the real one loads.

use crate::weights::WeightSource;
use anyhow::{Context, Result};
use ferrum_backend::{HostDtype, HostLinear, HostTensor, Shard, Weights};
use std::borrow::Cow;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How a parameter is split across tensor-parallel ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Every rank holds all of it (norms, routers, embeddings today).
    Whole,
    /// Output rows split (column-parallel: q/k/v, gate/up).
    Rows,
    /// Input columns split (row-parallel: o, down); the outputs are summed by an all-reduce.
    Cols,
}

pub struct ParamLoader<'a, W: Weights + ?Sized> {
    pub weights: &'a W,
    src: &'a dyn WeightSource,
    shard: Shard,
    /// Sizes and formats only: no byte is read.
    dry: bool,
    fp8_block: Option<(usize, usize)>,
    on_param: &'a dyn Fn(&str),
    count: Cell<usize>,
    /// Time spent reading (or generating) tensors, handing them to the backend, and stacking
    /// parts on it: where a slow start goes (logged after the load).
    pub(crate) times: LoadTimes,
}

/// [`ParamLoader`]'s time split.
#[derive(Default)]
pub(crate) struct LoadTimes {
    pub(crate) read: Cell<Duration>,
    pub(crate) upload: Cell<Duration>,
    pub(crate) stack: Cell<Duration>,
}

/// Runs `f`, adding its time to `total`.
fn timed<T>(total: &Cell<Duration>, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    total.set(total.get() + t.elapsed());
    out
}

impl<'a, W: Weights + ?Sized> ParamLoader<'a, W> {
    pub fn new(
        weights: &'a W,
        src: &'a dyn WeightSource,
        shard: Shard,
        dry: bool,
        fp8_block: Option<(usize, usize)>,
        on_param: &'a dyn Fn(&str),
    ) -> Self {
        ParamLoader {
            weights,
            src,
            shard,
            dry,
            fp8_block,
            on_param,
            count: Cell::new(0),
            times: LoadTimes::default(),
        }
    }

    /// `name` from the checkpoint (or generated), timed.
    fn read(&self, name: &str, shape: &[usize]) -> Result<HostTensor<'a>> {
        timed(&self.times.read, || self.src.tensor(name, shape, self.dry))
    }

    /// A routed-experts block from its experts' (gate/up, down) weights, timed as stacking, and
    /// its shared expert unless the backend took it among them ([`Weights::experts`]).
    #[allow(clippy::type_complexity)]
    pub fn experts(
        &self,
        routed: Vec<(W::Weight, W::Weight)>,
        shared: Option<(W::Weight, W::Weight)>,
    ) -> Result<(W::Experts, Option<(W::Weight, W::Weight)>)> {
        timed(&self.times.stack, || self.weights.experts(routed, shared))
    }

    /// Parameters loaded so far.
    pub fn count(&self) -> usize {
        self.count.get()
    }

    fn tick(&self, name: &str) {
        self.count.set(self.count.get() + 1);
        (self.on_param)(name);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.src.contains(name)
    }

    /// The linear layer at `prefix` (`{prefix}.weight`, `[rows, k]` before splitting).
    pub fn linear(&self, prefix: &str, rows: usize, k: usize, split: Split) -> Result<W::Weight> {
        let name = format!("{prefix}.weight");
        self.tick(&name);
        let dim = match split {
            Split::Whole => None,
            Split::Rows => Some(0),
            Split::Cols => Some(1),
        };
        let shard = |t: HostTensor<'a>| match dim {
            Some(d) => t.shard(d, self.shard),
            None => Ok(t),
        };
        let weight = shard(self.read(&name, &[rows, k])?)?;
        let scale_name = format!("{prefix}.weight_scale_inv");
        let host = match self.fp8_block {
            Some(block) if self.src.contains(&scale_name) => {
                let grid = [rows.div_ceil(block.0), k.div_ceil(block.1)];
                let scale_inv = self.read(&scale_name, &grid)?;
                // a shard must cut along whole scale blocks
                let scale_inv = match dim {
                    Some(d) if self.shard.world > 1 => {
                        let (len, b) = if d == 0 {
                            (rows, block.0)
                        } else {
                            (k, block.1)
                        };
                        if !(len / self.shard.world).is_multiple_of(b) {
                            anyhow::bail!(
                                "`{name}`: a {}-way split of {len} does not fall on the fp8 blocks of {b}",
                                self.shard.world
                            );
                        }
                        scale_inv.shard(d, self.shard)?
                    }
                    _ => scale_inv,
                };
                HostLinear::Fp8Block {
                    weight,
                    scale_inv,
                    block,
                }
            }
            _ => HostLinear::Dense(weight),
        };
        let format = host.format();
        timed(&self.times.upload, || self.weights.upload_linear(host)).with_context(|| {
            format!(
                "`{name}` ({format}) on the {} backend",
                self.weights.backend_name()
            )
        })
    }

    /// Several linear layers' rows stacked into one weight (q/k/v; gate/up).
    pub fn stacked(&self, parts: &[(&str, usize)], k: usize, split: Split) -> Result<W::Weight> {
        let ws = parts
            .iter()
            .map(|&(p, rows)| self.linear(p, rows, k, split))
            .collect::<Result<Vec<_>>>()?;
        timed(&self.times.stack, || self.weights.stack(ws))
    }

    /// An optional scalar (an FP8 KV-cache `k_scale` / `v_scale`): the first of `names` the
    /// checkpoint holds, stored as a 0-d or a one-element tensor. A dry run gives 1.0.
    pub fn scalar(&self, names: &[String]) -> Result<Option<f32>> {
        let Some(name) = names.iter().find(|n| self.src.contains(n)) else {
            return Ok(None);
        };
        self.tick(name);
        let t = self.read(name, &[]).or_else(|_| self.read(name, &[1]))?;
        if self.dry {
            return Ok(Some(1.0));
        }
        Ok(Some(t.to_f32()?[0]))
    }

    /// A 1-D parameter (norm weight, bias) of `len` values.
    pub fn vector(&self, name: &str, len: usize, split: Split) -> Result<W::Vector> {
        self.tick(name);
        let t = self.read(name, &[len])?;
        let t = if split == Split::Rows {
            t.shard(0, self.shard)?
        } else {
            t
        };
        timed(&self.times.upload, || self.weights.upload_vector(t))
    }

    /// Several 1-D parameters concatenated, as f32 (the q/k/v biases; one tick each).
    pub fn vectors(&self, names: &[(&str, usize)], split: Split) -> Result<W::Vector> {
        let mut values = Vec::new();
        let mut len = 0;
        for &(n, l) in names {
            self.tick(n);
            let t = self.read(n, &[l])?;
            let t = if split == Split::Rows {
                t.shard(0, self.shard)?
            } else {
                t
            };
            len += t.numel();
            if !self.dry {
                values.extend(t.to_f32()?);
            }
        }
        let t = HostTensor {
            name: names.first().map_or("", |n| n.0).to_string(),
            dtype: HostDtype::F32,
            shape: vec![len],
            bytes: Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        };
        timed(&self.times.upload, || self.weights.upload_vector(t))
    }
}
