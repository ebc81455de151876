//! The fused engine's optimizer state on disk: both AdamW moments as safetensors, the groups'
//! step counts in its metadata; a state of another shape is refused.

use std::path::Path;

use super::FusedTrainer;
use crate::error::{PalError, Result};

impl FusedTrainer {
    /// Writes the optimizer state (moments and step counts) as safetensors.
    pub fn save_state(&self, path: &Path) -> Result<Vec<u8>> {
        use safetensors::tensor::{Dtype, TensorView};
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (m, v) = (bytes(&self.m), bytes(&self.v));
        let shape = vec![self.m.len()];
        fn view(b: &[u8], shape: Vec<usize>) -> TensorView<'_> {
            TensorView::new(Dtype::F32, shape, b).expect("a view sized from its data")
        }
        let steps: Vec<String> = self.groups.iter().map(|s| s.steps.to_string()).collect();
        let meta = std::collections::HashMap::from([("steps".to_string(), steps.join(","))]);
        safetensors::serialize(
            [("m", view(&m, shape.clone())), ("v", view(&v, shape))],
            Some(meta),
        )
        .map_err(|e| PalError::file(path, format!("saving optimizer state: {e}")))
    }

    /// Restores what [`FusedTrainer::save_state`] wrote; a state of another shape is an error.
    pub fn load_state(&mut self, bytes: &[u8], path: &Path) -> Result<()> {
        use safetensors::SafeTensors;
        let bad = |why: String| PalError::file(path, format!("optimizer state: {why}"));
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let read = |name: &str| -> Result<Vec<f32>> {
            let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if v.len() != self.params.len() {
                return Err(bad(format!(
                    "{name} has {} values, the model has {}",
                    v.len(),
                    self.params.len()
                )));
            }
            Ok(v)
        };
        let (m, v) = (read("m")?, read("v")?);
        let steps: Vec<u64> = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("steps"))
            .ok_or_else(|| bad("no step counts".into()))?
            .split(',')
            .map(|s| s.parse().map_err(|_| bad(format!("bad step count {s:?}"))))
            .collect::<Result<_>>()?;
        if steps.len() != self.groups.len() {
            return Err(bad(format!(
                "{} groups saved, {} trained",
                steps.len(),
                self.groups.len()
            )));
        }
        for (s, t) in self.groups.iter_mut().zip(steps) {
            s.steps = t;
        }
        (self.m, self.v) = (m, v);
        Ok(())
    }
}
