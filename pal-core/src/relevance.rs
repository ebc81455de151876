//! Relevance of a model's rankings: for users and prompts, the share of the top-k items (over
//! every item of the dataset) that are the prompt's own — the candidates its `content.json`
//! declares (the versions of the photo it describes, the summaries of its paper). Personal
//! rankings should be relevant first, then ordered by taste.

use std::collections::HashSet;

use pal_format::candidates::Candidates;
use pal_format::content::CONTENT_FILE;
use pal_format::content::Content;

use crate::{Dataset, Result, TrainedModel, Variant};

/// Mean share of the prompt's own items among each (user, prompt) top `k`, over at most
/// `max_pairs` (user, prompt) pairs taken in order; `None` when the dataset declares no
/// candidates (or is PAL-A: rankings there do not depend on a prompt).
pub fn relevance_at(
    model: &TrainedModel,
    data: &Dataset,
    k: usize,
    max_pairs: usize,
) -> Result<Option<f32>> {
    let (Some(prompts), Variant::B) = (&data.prompts, model.weights.config.variant) else {
        return Ok(None);
    };
    if !data.dir.join(CONTENT_FILE).is_file() {
        return Ok(None);
    }
    let Some(cands) = Candidates::declared(&Content::read(&data.dir)?) else {
        return Ok(None);
    };
    let w = &model.weights;
    let features: Vec<Vec<f32>> = (0..data.items.len())
        .map(|i| w.item_map.forward(data.items.row(i)))
        .collect();
    let pools: Vec<(usize, HashSet<usize>)> = cands
        .prompts
        .iter()
        .filter_map(|(p, ids)| {
            let own: HashSet<usize> = ids
                .iter()
                .filter_map(|id| data.items.position(id))
                .collect();
            Some((prompts.position(p)?, own)).filter(|(_, own)| own.len() >= k)
        })
        .collect();
    let users = model.users.len();
    if pools.is_empty() || users == 0 || k == 0 {
        return Ok(None);
    }
    let (mut sum, mut n) = (0.0f64, 0usize);
    'outer: for (p, own) in &pools {
        // The content prior is the same for every user: once per prompt.
        let prior: Vec<f32> = (0..data.items.len())
            .map(|i| w.prior_term(prompts.row(*p), data.items.row(i)))
            .collect();
        for u in 0..users {
            if n >= max_pairs {
                break 'outer;
            }
            let point = w.user_point(&w.user_weights(u), prompts.row(*p));
            let mut scored: Vec<(f32, usize)> = features
                .iter()
                .enumerate()
                .map(|(i, fx)| (w.reward_of_features(&point, fx) + prior[i], i))
                .collect();
            // The top k as a set (best first, ties to the lower index): a partial selection, not a
            // sort of every item. `k` ≤ the pool size ≤ the item count.
            let order =
                |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
            if k < scored.len() {
                scored.select_nth_unstable_by(k - 1, order);
            }
            let hits = scored[..k].iter().filter(|(_, i)| own.contains(i)).count();
            sum += hits as f64 / k as f64;
            n += 1;
        }
    }
    Ok(Some((sum / n as f64) as f32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmbeddingStore, ModelConfig, PalWeights};

    #[test]
    fn relevance_counts_the_prompts_own_items_in_the_top_k() {
        let dir = tempfile::tempdir().unwrap();
        // 1-d items: the model's reward grows with the item value for every prompt (identity
        // maps), so the top 2 are always items 3 and 2.
        let mut cfg = ModelConfig::pal_b(1, 1, 1, 1);
        cfg.layers = 1;
        let mut weights = PalWeights::init(&cfg, 1, 0);
        weights.item_map.layers[0].weight = vec![1.0];
        weights.item_map.layers[0].bias = vec![0.0];
        if let crate::reference::Head::PromptMaps(maps) = &mut weights.head {
            maps[0].layers[0].weight = vec![0.0];
            maps[0].layers[0].bias = vec![1.0];
        }
        let items = EmbeddingStore::new(
            (0..4).map(|i| format!("i{i}")).collect(),
            1,
            vec![-1.0, -0.5, 0.5, 1.0],
        )
        .unwrap();
        let prompts = EmbeddingStore::new(vec!["p".into(), "q".into()], 1, vec![0.0, 1.0]).unwrap();
        let data = Dataset {
            dir: dir.path().to_path_buf(),
            items,
            prompts: Some(prompts),
        };
        let model = TrainedModel::new(weights, vec!["u".into()], serde_json::json!({}));
        assert_eq!(
            relevance_at(&model, &data, 2, 10).unwrap(),
            None,
            "no content.json"
        );
        let mut content = Content::default();
        content
            .candidates
            .insert("p".into(), vec!["i2".into(), "i3".into()]);
        content
            .candidates
            .insert("q".into(), vec!["i0".into(), "i2".into()]);
        content.write(dir.path()).unwrap();
        // p: top 2 = {i3, i2}, both own → 1; q: one own (i2) → 0.5.
        let r = relevance_at(&model, &data, 2, 10).unwrap().unwrap();
        assert!((r - 0.75).abs() < 1e-6, "{r}");
        assert!((relevance_at(&model, &data, 2, 1).unwrap().unwrap() - 1.0).abs() < 1e-6);
    }
}
