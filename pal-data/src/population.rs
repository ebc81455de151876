//! Simulated users: groups with shares (e.g. 7:3 majority/minority), seen and unseen users, and the
//! comparison splits a per-group preference rule produces for them.

use pal_format::{Comparison, Split};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::DataError;

/// A preference group and its share of the population.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    pub rule: String,
    pub share: f32,
}

/// How many users and comparisons to simulate.
#[derive(Debug, Clone, Serialize)]
pub struct PopulationConfig {
    pub seen_users: usize,
    pub unseen_users: usize,
    /// Comparisons per seen user, split 70/10/20 into train/val/test.
    pub pairs_per_user: usize,
    /// Few-shot pool per unseen user.
    pub unseen_train_pairs: usize,
    /// Held-out comparisons per unseen user.
    pub unseen_test_pairs: usize,
    pub seed: u64,
}

impl PopulationConfig {
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field, reason: &str| {
            Err(DataError::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.seen_users < 2 {
            return bad("seen_users", "need at least 2 seen users");
        }
        if self.pairs_per_user < 10 {
            return bad(
                "pairs_per_user",
                "need at least 10 comparisons per seen user (70/10/20 split)",
            );
        }
        if self.unseen_users > 0 && (self.unseen_train_pairs == 0 || self.unseen_test_pairs == 0) {
            return bad(
                "unseen_train_pairs",
                "unseen users need both a few-shot pool and held-out pairs",
            );
        }
        Ok(())
    }
}

/// Users and their (hidden) groups: seen users first, then unseen.
#[derive(Debug, Clone, Serialize)]
pub struct Population {
    pub groups: Vec<Group>,
    pub seen: Vec<(String, usize)>,
    pub unseen: Vec<(String, usize)>,
}

/// Group of each of `n` users: exact shares by largest remainder, then shuffled.
fn assign(n: usize, groups: &[Group], rng: &mut StdRng) -> Vec<usize> {
    let total: f32 = groups.iter().map(|g| g.share).sum();
    let exact: Vec<f32> = groups.iter().map(|g| g.share / total * n as f32).collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for &g in order.iter().cycle().take(n - counts.iter().sum::<usize>()) {
        counts[g] += 1;
    }
    let mut out: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(g, &c)| std::iter::repeat_n(g, c))
        .collect();
    out.shuffle(rng);
    out
}

impl Population {
    pub fn new(
        cfg: &PopulationConfig,
        groups: Vec<Group>,
        rng: &mut StdRng,
    ) -> Result<Self, DataError> {
        cfg.validate()?;
        if groups.is_empty() || groups.iter().any(|g| g.share.is_nan() || g.share <= 0.0) {
            return Err(DataError::Config {
                field: "groups",
                reason: "every group needs a positive share".into(),
            });
        }
        let seen = assign(cfg.seen_users, &groups, rng)
            .into_iter()
            .enumerate()
            .map(|(i, g)| (format!("u{i:03}"), g));
        let unseen = assign(cfg.unseen_users, &groups, rng)
            .into_iter()
            .enumerate()
            .map(|(i, g)| (format!("new{i:03}"), g));
        Ok(Self {
            seen: seen.collect(),
            unseen: unseen.collect(),
            groups,
        })
    }

    /// Draws every user's comparisons from `pair(group, rng)`, which returns `None` for a tie
    /// (redrawn; a rule that ties 1000 times in a row is an error).
    pub fn simulate(
        &self,
        cfg: &PopulationConfig,
        rng: &mut StdRng,
        pair: &mut dyn FnMut(usize, &mut StdRng) -> Option<Comparison>,
    ) -> Result<Vec<(Split, Vec<Comparison>)>, DataError> {
        let mut draw = |user: &str,
                        group: usize,
                        n: usize,
                        rng: &mut StdRng|
         -> Result<Vec<Comparison>, DataError> {
            let mut rows = Vec::with_capacity(n);
            let mut misses = 0;
            while rows.len() < n {
                match pair(group, rng) {
                    Some(c) => rows.push(Comparison {
                        user: user.to_string(),
                        ..c
                    }),
                    None if misses < 1000 => misses += 1,
                    None => {
                        return Err(DataError::Config {
                            field: "rule",
                            reason: format!(
                                "group `{}` ties on every pair",
                                self.groups[group].name
                            ),
                        });
                    }
                }
            }
            Ok(rows)
        };
        let (mut train, mut val, mut test) = (vec![], vec![], vec![]);
        for (user, g) in &self.seen {
            let rows = draw(user, *g, cfg.pairs_per_user, rng)?;
            let (n_train, n_val) = (cfg.pairs_per_user * 7 / 10, cfg.pairs_per_user / 10);
            train.extend_from_slice(&rows[..n_train]);
            val.extend_from_slice(&rows[n_train..n_train + n_val]);
            test.extend_from_slice(&rows[n_train + n_val..]);
        }
        let mut splits = vec![
            (Split::Train, train),
            (Split::Val, val),
            (Split::Test, test),
        ];
        if !self.unseen.is_empty() {
            let (mut pool, mut held) = (vec![], vec![]);
            for (user, g) in &self.unseen {
                pool.extend(draw(user, *g, cfg.unseen_train_pairs, rng)?);
                held.extend(draw(user, *g, cfg.unseen_test_pairs, rng)?);
            }
            splits.push((Split::UnseenTrain, pool));
            splits.push((Split::UnseenTest, held));
        }
        Ok(splits)
    }

    /// The card section describing users: groups, shares and who is in which group.
    /// Every member of group `g`: its seen users, then its unseen ones.
    pub fn members(&self, g: usize) -> Vec<String> {
        self.seen
            .iter()
            .chain(&self.unseen)
            .filter(|(_, x)| *x == g)
            .map(|(u, _)| u.clone())
            .collect()
    }

    pub fn card(&self) -> serde_json::Value {
        fn members(users: &[(String, usize)], g: usize) -> Vec<&str> {
            users
                .iter()
                .filter(|(_, x)| *x == g)
                .map(|(u, _)| u.as_str())
                .collect()
        }
        let groups: Vec<_> = self
            .groups
            .iter()
            .enumerate()
            .map(|(g, grp)| {
                serde_json::json!({
                    "name": grp.name, "rule": grp.rule, "share": grp.share,
                    "seen_users": members(&self.seen, g), "unseen_users": members(&self.unseen, g),
                })
            })
            .collect();
        serde_json::json!({ "seen_users": self.seen.len(), "unseen_users": self.unseen.len(), "groups": groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shares_are_exact_and_every_user_gets_their_pairs() {
        let groups = vec![
            Group {
                name: "long".into(),
                rule: "r".into(),
                share: 0.7,
            },
            Group {
                name: "short".into(),
                rule: "r".into(),
                share: 0.3,
            },
        ];
        let cfg = PopulationConfig {
            seen_users: 10,
            unseen_users: 20,
            pairs_per_user: 20,
            unseen_train_pairs: 5,
            unseen_test_pairs: 4,
            seed: 1,
        };
        let mut rng = StdRng::seed_from_u64(1);
        let pop = Population::new(&cfg, groups, &mut rng).unwrap();
        assert_eq!(pop.seen.iter().filter(|(_, g)| *g == 0).count(), 7);
        assert_eq!(pop.unseen.iter().filter(|(_, g)| *g == 1).count(), 6);
        let mut pair = |g: usize, _: &mut StdRng| {
            Some(Comparison {
                user: String::new(),
                prompt: None,
                left: format!("g{g}"),
                right: "x".into(),
                label: 1,
            })
        };
        let splits = pop.simulate(&cfg, &mut rng, &mut pair).unwrap();
        let sizes: Vec<usize> = splits.iter().map(|(_, r)| r.len()).collect();
        assert_eq!(sizes, vec![140, 20, 40, 100, 80]);
        // A rule that always ties is an error, not a hang.
        let mut never = |_: usize, _: &mut StdRng| None;
        assert!(pop.simulate(&cfg, &mut rng, &mut never).is_err());
    }
}
