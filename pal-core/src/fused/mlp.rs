//! One MLP (Linear → GELU → … → Linear) forward with the activations kept for its hand-derived
//! backward pass: `dW = Hᵀ·dZ`, `db = Σ_rows dZ`, `dH = dZ·Wᵀ`, `dZ_prev = dH ⊙ gelu'(Z_prev)`.

use pal_cpu::Products;

use super::kernels;
use super::params::MlpAt;

/// Activations of one forward pass, reused across steps (buffers only grow).
#[derive(Debug, Default)]
pub(crate) struct MlpCache {
    /// Pre-activations `Z_i` of every layer; the last one is the MLP's output.
    z: Vec<Vec<f32>>,
    /// Inputs `H_i = gelu(Z_{i−1})` of layers `i ≥ 1` (`h[0]` unused: layer 0 reads the input).
    h: Vec<Vec<f32>>,
    /// Gradient scratch for the backward pass.
    grad: Vec<f32>,
}

fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.resize(len, 0.0);
    &mut buf[..len]
}

impl MlpCache {
    /// Runs the MLP on `x` (`n` rows); the output is [`MlpCache::output`].
    pub fn forward(&mut self, ops: Products, p: &[f32], mlp: &MlpAt, x: &[f32], n: usize) {
        let layers = mlp.layers.len();
        self.z.resize_with(layers, Vec::new);
        self.h.resize_with(layers, Vec::new);
        for (i, l) in mlp.layers.iter().enumerate() {
            let input: &[f32] = if i == 0 { x } else { &self.h[i][..n * l.d_in] };
            let z = sized(&mut self.z[i], n * l.d_out);
            kernels::linear(ops, input, &p[l.weight()], &p[l.bias()], z);
            if i + 1 < layers {
                let h = sized(&mut self.h[i + 1], n * l.d_out);
                kernels::gelu(ops, &self.z[i][..n * l.d_out], h);
            }
        }
    }

    /// The last forward pass's output, `n × d_out`.
    pub fn output(&self, mlp: &MlpAt, n: usize) -> &[f32] {
        &self.z[mlp.layers.len() - 1][..n * mlp.d_out()]
    }

    /// Back-propagates `dout` (`n × d_out`, consumed as scratch) through the last forward pass
    /// on `x` (exactly `n` rows),
    /// writing every layer's weight and bias gradient into `grads` at the layout's offsets; with
    /// `dx = Some((r, buf))` also the input gradient of rows `r..n` into `buf`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &mut self,
        ops: Products,
        p: &[f32],
        grads: &mut [f32],
        mlp: &MlpAt,
        x: &[f32],
        dout: &mut Vec<f32>,
        dx: Option<(usize, &mut Vec<f32>)>,
    ) {
        let n = x.len() / mlp.layers[0].d_in;
        let (mut dz, mut dx) = (std::mem::take(dout), dx);
        for (i, l) in mlp.layers.iter().enumerate().rev() {
            let input: &[f32] = if i == 0 { x } else { &self.h[i][..n * l.d_in] };
            let dzs = &dz[..n * l.d_out];
            kernels::weight_grad(ops, input, dzs, &mut grads[l.weight()], l.d_in);
            kernels::bias_grad(dzs, &mut grads[l.bias()]);
            if i == 0
                && let Some((r, buf)) = dx.take()
            {
                let rows = &dzs[r * l.d_out..];
                let out = sized(buf, (n - r) * l.d_in);
                kernels::input_grad(ops, rows, &p[l.weight()], out, l.d_out);
                break;
            }
            if i > 0 {
                let dh = sized(&mut self.grad, n * l.d_in);
                kernels::input_grad(ops, dzs, &p[l.weight()], dh, l.d_out);
                kernels::gelu_backward(ops, &self.z[i - 1][..n * l.d_in], dh);
                std::mem::swap(&mut self.grad, &mut dz);
            }
        }
        *dout = dz;
    }
}
