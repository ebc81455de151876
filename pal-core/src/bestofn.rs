//! Best-of-n, the downstream check of a reward model: under each prompt, each user's pick among
//! the prompt's candidates (its declared `content.json` candidates, e.g. a paper's summaries) by
//! their personalised reward, against the pick of one shared reward (BTL), both scored by the
//! user's own group's utility (`tastes.json`, where the dataset's builder knows it). Reward
//! accuracy alone predicts such downstream choices poorly; this measures them directly.

use pal_format::candidates::Candidates;
use pal_format::content::{CONTENT_FILE, Content};
use pal_format::taste::GroupTaste;
use serde::{Deserialize, Serialize};

use crate::{Dataset, Result, TrainedModel};

/// One group's picks by personalised rewards vs by BTL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestOfN {
    pub group: String,
    /// `seen` (users the model learned) or `new` (fitted few-shot).
    pub users: String,
    pub n_users: usize,
    /// (user, prompt) choices made.
    pub choices: usize,
    /// Share of choices where the pick is the user's favourite candidate.
    pub personal_best: f32,
    pub btl_best: f32,
    /// Share of choices where the personal pick has higher / equal / lower utility for the user
    /// than BTL's.
    pub wins: f32,
    pub ties: f32,
    pub losses: f32,
}

/// A candidate under one prompt for one model: f(x) and the content prior (the same for every
/// user, so computed once per prompt).
struct Scored {
    fx: Vec<f32>,
    prior: f32,
}

/// Index of the highest reward among `candidates` (ties to the earlier one) for `user` of
/// `model` under `prompt`.
fn pick(model: &TrainedModel, user: usize, prompt: &[f32], candidates: &[Scored]) -> usize {
    let w = &model.weights;
    let point = w.known_user_point(user, prompt);
    let mut best = (f32::NEG_INFINITY, 0);
    for (n, c) in candidates.iter().enumerate() {
        let r = w.reward_of_features(&point, &c.fx) + c.prior;
        if r > best.0 {
            best = (r, n);
        }
    }
    best.1
}

/// Best-of-n for the users of `model` that `include` accepts, in each group of `tastes` (`who`
/// names them), with `btl`'s one user as the shared reward; `None` without declared candidates
/// or prompts.
pub fn best_of_n(
    model: &TrainedModel,
    btl: &TrainedModel,
    data: &Dataset,
    tastes: &[GroupTaste],
    (who, include): (&str, &dyn Fn(&str) -> bool),
) -> Result<Option<Vec<BestOfN>>> {
    let Some(prompts) = &data.prompts else {
        return Ok(None);
    };
    if !data.dir.join(CONTENT_FILE).is_file() || btl.users.is_empty() {
        return Ok(None);
    }
    let Some(cands) = Candidates::declared(&Content::read(&data.dir)?) else {
        return Ok(None);
    };
    // Per prompt: its row, its candidates' rows and f(x) under each model.
    let mut pools = vec![];
    for (p, ids) in &cands.prompts {
        let Some(at) = prompts.position(p) else {
            continue;
        };
        let rows: Vec<usize> = ids
            .iter()
            .filter_map(|id| data.items.position(id))
            .collect();
        let row = prompts.row(at);
        let of = |m: &TrainedModel| -> Vec<Scored> {
            rows.iter()
                .map(|&i| Scored {
                    fx: m.weights.item_map.forward(data.items.row(i)),
                    prior: m.weights.prior_term(row, data.items.row(i)),
                })
                .collect()
        };
        let (mine, shared) = (of(model), of(btl));
        pools.push((row, rows, mine, shared));
    }
    let mut out = vec![];
    for g in tastes {
        let users: Vec<usize> = g
            .users
            .iter()
            .filter(|u| include(u))
            .filter_map(|u| model.user_index(u))
            .collect();
        let utility = |i: usize| {
            g.utility
                .get(&data.items.ids()[i])
                .copied()
                .unwrap_or(f64::NEG_INFINITY)
        };
        let (mut n, mut pb, mut bb, mut win, mut tie) = (0usize, 0usize, 0usize, 0usize, 0usize);
        for (prompt, rows, mine, shared) in &pools {
            let top = rows
                .iter()
                .map(|&i| utility(i))
                .fold(f64::NEG_INFINITY, f64::max);
            let b = utility(rows[pick(btl, 0, prompt, shared)]);
            for &u in &users {
                let a = utility(rows[pick(model, u, prompt, mine)]);
                n += 1;
                pb += usize::from(a == top);
                bb += usize::from(b == top);
                win += usize::from(a > b);
                tie += usize::from(a == b);
            }
        }
        if n == 0 {
            continue;
        }
        let share = |x: usize| x as f32 / n as f32;
        out.push(BestOfN {
            group: g.group.clone(),
            users: who.to_string(),
            n_users: users.len(),
            choices: n,
            personal_best: share(pb),
            btl_best: share(bb),
            wins: share(win),
            ties: share(tie),
            losses: share(n - win - tie),
        });
    }
    Ok(Some(out))
}

/// The rows as a Markdown table.
pub fn to_markdown(rows: &[BestOfN]) -> String {
    let mut s = String::from(
        "\nBest-of-n: under each prompt, each user's pick among its candidates by their personalised reward vs by BTL's one reward, scored by the user's group's utility:\n\n\
         | group | users | choices | personal pick is their favourite | BTL pick is | personal better / tie / worse |\n|---|---|---:|---:|---:|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} ({}) | {} | {:.1}% | {:.1}% | {:.1}% / {:.1}% / {:.1}% |\n",
            r.group,
            r.users,
            r.n_users,
            r.choices,
            100.0 * r.personal_best,
            100.0 * r.btl_best,
            100.0 * r.wins,
            100.0 * r.ties,
            100.0 * r.losses
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmbeddingStore, ModelConfig, PalWeights};

    /// A PAL-B model on 2-d items whose one prompt map points at (1, 0): the reward is the
    /// cosine of the item with (`sign`, 0).
    fn model(sign: f32, users: &[&str]) -> TrainedModel {
        let mut cfg = ModelConfig::pal_b(2, 1, 2, 1);
        cfg.layers = 1;
        let mut w = PalWeights::init(&cfg, users.len(), 0);
        w.item_map.layers[0].weight = vec![sign, 0.0, 0.0, sign];
        w.item_map.layers[0].bias = vec![0.0, 0.0];
        if let crate::reference::Head::PromptMaps(maps) = &mut w.head {
            maps[0].layers[0].weight = vec![0.0, 0.0];
            maps[0].layers[0].bias = vec![1.0, 0.0];
        }
        let users = users.iter().map(|u| u.to_string()).collect();
        TrainedModel::new(w, users, serde_json::json!({}))
    }

    #[test]
    fn picks_are_scored_by_the_pickers_group() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..3).map(|i| format!("i{i}")).collect();
        // Cosines with (1, 0): −0.98, 0.5, 1.
        let rows = vec![-0.98, 0.2, 0.5, 0.866, 1.0, 0.0];
        let items = EmbeddingStore::new(ids.clone(), 2, rows).unwrap();
        let prompts = EmbeddingStore::new(vec!["p".into()], 1, vec![1.0]).unwrap();
        let data = Dataset {
            dir: dir.path().to_path_buf(),
            items,
            prompts: Some(prompts),
        };
        let mut content = Content::default();
        content.candidates.insert("p".into(), ids.clone());
        content.write(dir.path()).unwrap();
        let taste = |group: &str, users: &[&str], sign: f64| GroupTaste {
            group: group.into(),
            users: users.iter().map(|u| u.to_string()).collect(),
            utility: ids
                .iter()
                .zip([-1.0, 0.2, 1.0])
                .map(|(i, v)| (i.clone(), sign * v))
                .collect(),
        };
        // The personal model picks i2, BTL i0.
        let (mine, btl) = (model(1.0, &["a", "b"]), model(-1.0, &["pooled"]));
        let tastes = [taste("high", &["a", "b"], 1.0), taste("low", &["x"], -1.0)];
        let rows = best_of_n(&mine, &btl, &data, &tastes, ("seen", &|_| true))
            .unwrap()
            .unwrap();
        assert_eq!(rows.len(), 1, "group `low` has no user of the model");
        let r = &rows[0];
        assert_eq!((r.n_users, r.choices), (2, 2));
        assert_eq!(
            (r.personal_best, r.btl_best, r.wins, r.ties, r.losses),
            (1.0, 0.0, 1.0, 0.0, 0.0)
        );
        // Scored by the opposite taste, the same picks lose.
        let flipped = [taste("low", &["a"], -1.0)];
        let only_a = |u: &str| u == "a";
        let r = &best_of_n(&mine, &btl, &data, &flipped, ("seen", &only_a))
            .unwrap()
            .unwrap()[0];
        assert_eq!(
            (r.n_users, r.personal_best, r.btl_best, r.losses),
            (1, 0.0, 1.0, 1.0)
        );
        assert!(to_markdown(&rows).contains("| high | seen (2) | 2 | 100.0% | 0.0% |"));
    }
}
