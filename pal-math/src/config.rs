//! Typed, validated model configuration shared by the reference math, burn and exports.

use serde::{Deserialize, Serialize};

use crate::error::PalError;

/// Which PAL model form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Ideal-point form: reward is the negative distance to the user's ideal point.
    A,
    /// Reward form: reward is `s · cos(f(x), Σ w_k g_k(c))`.
    B,
}

/// Where PAL-A prototypes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdealPoint {
    /// Prototypes in item-embedding space, ideal point `a = f(Σ w_k p_k)` (paper default).
    FPw,
    /// Prototypes directly in preference space, ideal point `a = Σ w_k p_k`.
    Pw,
}

/// How a reward difference becomes a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Link {
    /// Bradley–Terry: `P(left) = σ(logit)`, cross-entropy loss.
    Logistic,
    /// Margin loss `max(0, 1 − y (r_l − r_r))` of the reference PAL-A code.
    Hinge,
}

/// Optional prototype-norm bound `λ · max(0, ‖user point‖ − β)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormBound {
    pub lambda: f32,
    pub beta: f32,
}

/// Shape and form of a PAL model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub variant: Variant,
    /// PAL-A only: where prototypes live.
    pub ideal_point: IdealPoint,
    /// Loss link (PAL-B is always logistic).
    pub link: Link,
    /// Item-embedding dimension D_item.
    pub d_item: usize,
    /// Prompt-embedding dimension D_prompt (PAL-B; ignored by PAL-A).
    pub d_prompt: usize,
    /// Preference-space dimension d.
    pub d: usize,
    /// Hidden width of the MLPs.
    pub hidden: usize,
    /// Number of linear layers in each MLP (GELU between them), ≥ 1.
    pub layers: usize,
    /// Number of prototypes / prompt maps K, ≥ 1.
    pub k: usize,
    /// Dropout probability after each hidden GELU during training.
    pub dropout: f64,
    /// Optional prototype-norm bound added to the loss.
    pub norm_bound: Option<NormBound>,
    /// PAL-B content prior: adds `b · σ(a · (cos(x, c) − t))` on the frozen item and prompt
    /// embeddings to every reward, with `b`, `a` and `t` learned and shared by all users
    /// ([`crate::reference::ContentPrior`]). For datasets whose items and
    /// prompts come from one encoder (`d_item = d_prompt`), so "this item matches this prompt" is
    /// something everyone agrees on and the encoder already knows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub content_prior: bool,
    /// Personal residuals: each user's point is the mixture plus their own `δ_i` (`[d]`), with
    /// the penalty `λ Σ_i ‖δ_i‖²` added to the summed loss (this is `λ`). A user with few
    /// comparisons stays near the prototypes' simplex; one with many can leave it. PAL-B then
    /// uses the unit mixture `m/‖m‖ + δ_i`, so `λ` means the same whatever the maps' scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<f32>,
    /// The residual penalty used when fitting *new* users few-shot (default: `residual`).
    /// `--k auto` chooses it by fitting held-out respondents as new users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_user_residual: Option<f32>,
}

impl ModelConfig {
    /// A PAL-B config with the reference 3-layer maps and hidden width = d.
    pub fn pal_b(d_item: usize, d_prompt: usize, d: usize, k: usize) -> Self {
        Self {
            variant: Variant::B,
            ideal_point: IdealPoint::FPw,
            link: Link::Logistic,
            d_item,
            d_prompt,
            d,
            hidden: d,
            layers: 3,
            k,
            dropout: 0.0,
            norm_bound: None,
            content_prior: false,
            residual: None,
            new_user_residual: None,
        }
    }

    /// A PAL-A config (f(Pw), logistic link) with the reference 3-layer map.
    pub fn pal_a(d_item: usize, d: usize, k: usize) -> Self {
        Self {
            variant: Variant::A,
            d_prompt: 0,
            ..Self::pal_b(d_item, 0, d, k)
        }
    }

    /// Checks every field once; everything downstream relies on it.
    pub fn validate(&self) -> Result<(), PalError> {
        let bad = |field: &'static str, reason: String| Err(PalError::Config { field, reason });
        if self.d_item == 0 {
            return bad("d_item", "must be ≥ 1".into());
        }
        if self.variant == Variant::B && self.d_prompt == 0 {
            return bad("d_prompt", "PAL-B needs prompt embeddings (≥ 1)".into());
        }
        if self.variant == Variant::B && self.link != Link::Logistic {
            return bad(
                "link",
                "PAL-B uses the logistic (Bradley–Terry) link".into(),
            );
        }
        if self.d == 0 {
            return bad("d", "must be ≥ 1".into());
        }
        if self.hidden == 0 {
            return bad("hidden", "must be ≥ 1".into());
        }
        if self.layers == 0 || self.layers > 8 {
            return bad("layers", format!("must be in 1..=8, got {}", self.layers));
        }
        if self.k == 0 || self.k > 64 {
            return bad("k", format!("must be in 1..=64, got {}", self.k));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            );
        }
        if let Some(nb) = self.norm_bound
            && (!nb.lambda.is_finite() || nb.lambda < 0.0 || !nb.beta.is_finite() || nb.beta < 0.0)
        {
            return bad(
                "norm_bound",
                "lambda and beta must be finite and ≥ 0".into(),
            );
        }
        if self.content_prior && self.variant != Variant::B {
            return bad(
                "content_prior",
                "the content prior is a PAL-B term (it compares items with prompts)".into(),
            );
        }
        if self.content_prior && self.d_item != self.d_prompt {
            return bad(
                "content_prior",
                format!(
                    "needs items and prompts from one encoder (d_item = d_prompt), got {} and {}",
                    self.d_item, self.d_prompt
                ),
            );
        }
        if let Some(l) = self.residual
            && (!l.is_finite() || l < 0.0)
        {
            return bad("residual", format!("λ must be finite and ≥ 0, got {l}"));
        }
        if let Some(l) = self.new_user_residual
            && (!l.is_finite() || l < 0.0 || self.residual.is_none())
        {
            return bad(
                "new_user_residual",
                format!("must be finite and ≥ 0, on a model with residuals (got {l})"),
            );
        }
        Ok(())
    }

    /// Input dimension of each prompt map g_k or, for PAL-A, of prototypes.
    pub fn prototype_dim(&self) -> usize {
        match (self.variant, self.ideal_point) {
            (Variant::A, IdealPoint::FPw) => self.d_item,
            (Variant::A, IdealPoint::Pw) => self.d,
            (Variant::B, _) => self.d_prompt,
        }
    }

    /// Layer widths `[in, hidden…, d]` of an MLP with input `d_in`.
    pub fn widths(&self, d_in: usize) -> Vec<usize> {
        let mut w = vec![d_in];
        w.extend(std::iter::repeat_n(self.hidden, self.layers - 1));
        w.push(self.d);
        w
    }

    /// A short human name, e.g. `PAL-B (K=2)`.
    pub fn name(&self) -> String {
        let v = match self.variant {
            Variant::A => "A",
            Variant::B => "B",
        };
        match self.residual {
            None => format!("PAL-{v} (K={})", self.k),
            Some(l) => format!("PAL-{v} (K={}, residual λ={l})", self.k),
        }
    }
}
