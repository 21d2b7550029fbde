//! Where weights come from. The model asks for tensors by their Hugging Face names and shapes
//! (`[out, in]` row-major for linear layers); each source maps names and converts to f32.

mod dummy;
mod gguf;
mod safetensors;

pub use dummy::DummySource;
pub use gguf::GgufSource;
pub use safetensors::SafetensorsSource;

use anyhow::Result;
use ferrum_backend::cpu::Weight;

pub trait WeightSource {
    /// The tensor `name` as f32, checked against `shape`.
    fn load(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
    /// The matrix `name` (`[rows, k]`) in the storage the matmul reads; f32 unless the source
    /// keeps a packed format.
    fn load_matrix(&self, name: &str, rows: usize, k: usize) -> Result<Weight> {
        Ok(Weight::f32(rows, k, self.load(name, &[rows, k])?))
    }
    fn contains(&self, name: &str) -> bool;
}

pub(crate) fn check_shape(name: &str, want: &[usize], got: &[usize]) -> Result<()> {
    if want != got {
        // a rank difference usually means a different layout, not just a wrong size: say so
        let rank = if want.len() == got.len() {
            String::new()
        } else {
            format!(" (rank {} where {} is needed)", got.len(), want.len())
        };
        anyhow::bail!(
            "shape mismatch for `{name}`: the model expects {want:?}, the file has {got:?}{rank}"
        );
    }
    Ok(())
}
