//! Where weights come from. The model asks for tensors by their Hugging Face names and row-major
//! shapes (`[out, in]` for linear layers); each source maps names and hands back a host view of
//! the bytes as stored (memory-mapped where it can). Converting them is the backend's business.

mod dummy;
mod gguf;
mod safetensors;

pub use dummy::DummySource;
pub use gguf::GgufSource;
pub use safetensors::SafetensorsSource;

use anyhow::Result;
use ferrum_backend::HostTensor;

pub trait WeightSource {
    /// The tensor `name`, checked against `shape`. With `dry`, its type and shape only: no byte
    /// is read (sizing and format checks before loading).
    fn tensor(&self, name: &str, shape: &[usize], dry: bool) -> Result<HostTensor<'_>>;
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
