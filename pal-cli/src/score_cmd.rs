//! `pal score`: rewards of new responses for one user (or the population's mixture) under a
//! typed prompt, as JSON lines — the texts embedded by MiniLM after checking that MiniLM made the
//! model's dataset (a text of it, embedded again, gives its stored row), exactly the arithmetic
//! of the server's `/models/{id}/rewards`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use pal_core::reference::{UserPref, cosine, softmax};
use pal_core::{Dataset, Variant};
use pal_format::content::{Content, SAME_ENCODER_MIN_COSINE};
use pal_format::model_dir::TrainedModel;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Model directory (as `pal train` writes it).
    #[arg(long)]
    pub model: PathBuf,
    /// The model's dataset directory (default: the one the model was trained on, as it records).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A user of the model (default: the population's mixture, the mean of its users' weights).
    #[arg(long)]
    pub user: Option<String>,
    /// The prompt's text (PAL-B models score responses under it; PAL-A ignores it).
    #[arg(long)]
    pub prompt: Option<String>,
    /// JSON lines, one response each: a JSON string, or an object with `text` (or `response`);
    /// `-` reads standard input.
    #[arg(long)]
    pub responses: PathBuf,
    /// Texts per encoder pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

/// Reads the responses: each line a JSON string or `{"text"|"response": …}`; blank lines skipped.
fn read_responses(path: &Path) -> Result<Vec<String>> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut out = vec![];
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let where_ = || format!("{}: line {}", path.display(), n + 1);
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}: not JSON", where_()))?;
        let text = match &v {
            serde_json::Value::String(s) => s.clone(),
            o => match o.get("text").or_else(|| o.get("response")) {
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => bail!("{}: expected a string or {{\"text\": …}}", where_()),
            },
        };
        if text.trim().is_empty() {
            bail!("{}: the response is empty", where_());
        }
        out.push(text);
    }
    if out.is_empty() {
        bail!("{}: no responses", path.display());
    }
    Ok(out)
}

/// Fails unless `enc` re-embeds the sample to its stored row.
fn check_encoder(
    sample: Option<(&str, &[f32])>,
    enc: &pal_embed::TextEncoder,
    side: &str,
) -> Result<()> {
    let Some((text, stored)) = sample else {
        bail!(
            "the model's dataset has no {side} texts (content.json) to check the encoder against"
        );
    };
    let v = enc.embed(&[text])?.pop().unwrap_or_default();
    if v.len() != stored.len() || cosine(&v, stored) < SAME_ENCODER_MIN_COSINE {
        bail!("the model's {side} were not made by all-MiniLM-L6-v2, the text encoder pal has");
    }
    Ok(())
}

pub fn score_cmd(a: &ScoreArgs) -> Result<()> {
    let model = TrainedModel::load(&a.model)
        .with_context(|| format!("loading model {}", a.model.display()))?;
    let data_dir = match &a.data {
        Some(d) => d.clone(),
        None => match model.meta["dataset"].as_str() {
            Some(d) => PathBuf::from(d),
            None => bail!("the model records no dataset: give --data DIR"),
        },
    };
    let data = Dataset::load(&data_dir)
        .with_context(|| format!("loading dataset {} (--data)", data_dir.display()))?;
    let responses = read_responses(&a.responses)?;
    let w = &model.weights;
    let (weights, residual) = match &a.user {
        None => (w.population_weights(), None),
        Some(u) => match model.user_index(u) {
            Some(i) => (softmax(&w.user_logits[i]), w.residual(i)),
            None => bail!("--user: `{u}` is not a user of this model"),
        },
    };
    let content = Content::read(&data.dir).ok();
    let asset = pal_embed::Asset::named("minilm")?.path()?;
    let enc = pal_embed::TextEncoder::load(&asset)?;
    check_encoder(
        content
            .as_ref()
            .and_then(|c| c.item_text_sample(&data.items)),
        &enc,
        "items",
    )?;
    let prompt_row = match (w.config.variant, &a.prompt) {
        (Variant::A, _) => vec![],
        (Variant::B, None) => bail!("--prompt: PAL-B models score responses under a prompt"),
        (Variant::B, Some(p)) => {
            let store = data.prompts.as_ref();
            let sample = content
                .as_ref()
                .zip(store)
                .and_then(|(c, s)| c.prompt_text_sample(s));
            check_encoder(sample, &enc, "prompts")?;
            enc.embed(&[p.trim()])?.pop().unwrap_or_default()
        }
    };
    let texts: Vec<&str> = responses.iter().map(String::as_str).collect();
    let mut rows = Vec::with_capacity(texts.len() * enc.dim());
    for chunk in texts.chunks(a.batch.max(1)) {
        rows.extend(enc.embed(chunk)?.concat());
    }
    let pref = UserPref {
        weights: &weights,
        residual,
    };
    let rewards = pal_infer::cpu::ItemFeatures::new(w, &rows).scores(w, pref, &prompt_row, None);
    let mut out = std::io::stdout().lock();
    for (index, reward) in rewards.iter().enumerate() {
        writeln!(
            out,
            "{}",
            serde_json::json!({"index": index, "reward": reward})
        )?;
    }
    Ok(())
}
