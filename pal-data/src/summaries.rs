//! `summaries`: TL;DR-style preferences over real human summaries of ACL papers (PyPI `aclsum`).
//!
//! Each paper has three one-sentence human summaries (challenge, approach, outcome). The candidates
//! for a paper are every non-empty combination of them in that order (7 texts from 1 to 3 sentences);
//! the prompt is the paper's title and abstract. Users prefer by a rule of their group, as the paper
//! simulates TL;DR: by default a 7:3 majority preferring the longer and a minority preferring the
//! shorter summary; or aspect groups preferring summaries that state the approach (resp. outcome).

use std::path::Path;

use pal_embed::{EmbedInput, Embedder};
use pal_format::Comparison;
use pal_format::taste::GroupTaste;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{
    Built, Content, DataError, Group, ItemContent, Population, PopulationConfig, Progress,
};

const ASPECTS: [&str; 3] = ["challenge", "approach", "outcome"];

/// Which groups of users to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SummaryGroups {
    /// 70% prefer the longer summary, 30% the shorter (the paper's TL;DR setting).
    Length,
    /// 70% prefer summaries that state the approach, 30% the outcome (ties: the shorter one).
    Aspect,
}

/// Options of `pal data summaries`.
#[derive(Debug, Clone, Serialize)]
pub struct SummariesConfig {
    pub groups: SummaryGroups,
    pub population: PopulationConfig,
    /// Use only the first N papers (small slices for tests); all 247 by default.
    pub papers: Option<usize>,
    /// Fraction of comparisons everyone agrees on, drawn first: under a paper, a summary of it
    /// beats a summary of another paper (relevance), in [0, 1].
    pub relevance: f32,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    Longer,
    Shorter,
    States(usize),
}

struct Candidate {
    id: String,
    text: String,
    words: usize,
    aspects: [bool; 3],
}

struct Paper {
    id: String,
    prompt: String,
    candidates: Vec<Candidate>,
}

impl Rule {
    fn score(self, c: &Candidate) -> i64 {
        match self {
            Rule::Longer => c.words as i64,
            Rule::Shorter => -(c.words as i64),
            Rule::States(a) => i64::from(c.aspects[a]) * 10_000 - c.words as i64,
        }
    }
}

/// Undoes the source's tokenised spacing (" , " → ", ").
fn detokenize(s: &str) -> String {
    let mut out = s.to_string();
    for (a, b) in [
        (" ,", ","),
        (" .", "."),
        (" ;", ";"),
        (" :", ":"),
        ("( ", "("),
        (" )", ")"),
        (" '", "'"),
    ] {
        out = out.replace(a, b);
    }
    out
}

fn read_papers(dir: &Path, limit: Option<usize>) -> Result<Vec<Paper>, DataError> {
    let mut papers = Vec::new();
    for split in ["train", "val", "test"] {
        let path = dir.join(format!("{split}.jsonl"));
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::Source {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let bad = |reason: &str| DataError::Source {
                path: path.clone(),
                reason: format!("line {}: {reason}", n + 1),
            };
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
            let id = v["id"].as_str().ok_or_else(|| bad("no `id`"))?.to_string();
            let title = v["title"].as_str().unwrap_or_default();
            let abs: Vec<&str> = v["sentences"]["abstract"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str())
                .collect();
            let parts: Vec<String> = ASPECTS
                .iter()
                .map(|a| {
                    v["summary"][a]
                        .as_str()
                        .map(|s| s.trim().to_string())
                        .ok_or_else(|| bad(&format!("no summary `{a}`")))
                })
                .collect::<Result<_, _>>()?;
            let candidates = (1u8..8)
                .map(|mask| {
                    let aspects = [mask & 1 != 0, mask & 2 != 0, mask & 4 != 0];
                    let text = (0..3)
                        .filter(|&a| aspects[a])
                        .map(|a| parts[a].as_str())
                        .collect::<Vec<_>>()
                        .join(" ");
                    let tag: String = (0..3)
                        .filter(|&a| aspects[a])
                        .map(|a| &ASPECTS[a][..1])
                        .collect();
                    Candidate {
                        id: format!("{id}#{tag}"),
                        words: text.split_whitespace().count(),
                        text,
                        aspects,
                    }
                })
                .collect();
            let prompt = format!("{title}. {}", detokenize(&abs.join(" ")));
            papers.push(Paper {
                id,
                prompt,
                candidates,
            });
        }
    }
    if let Some(n) = limit {
        if n == 0 {
            return Err(DataError::Config {
                field: "papers",
                reason: "must be at least 1".into(),
            });
        }
        papers.truncate(n);
    }
    Ok(papers)
}

/// Builds the dataset into `out`: embeddings (cached), splits, card, content.
pub fn build(
    cfg: &SummariesConfig,
    source: &Path,
    text: &Embedder,
    out: &Path,
    progress: Progress,
) -> Result<Built, DataError> {
    crate::check_share("relevance", cfg.relevance)?;
    let papers = read_papers(source, cfg.papers)?;
    let (groups, rules) = match cfg.groups {
        SummaryGroups::Length => (
            vec![
                Group {
                    name: "longer".into(),
                    rule: "prefers the summary with more words".into(),
                    share: 0.7,
                },
                Group {
                    name: "shorter".into(),
                    rule: "prefers the summary with fewer words".into(),
                    share: 0.3,
                },
            ],
            [Rule::Longer, Rule::Shorter],
        ),
        SummaryGroups::Aspect => (
            vec![
                Group {
                    name: "approach".into(),
                    rule: "prefers summaries that state the approach; then the shorter".into(),
                    share: 0.7,
                },
                Group {
                    name: "outcome".into(),
                    rule: "prefers summaries that state the outcome; then the shorter".into(),
                    share: 0.3,
                },
            ],
            [Rule::States(1), Rule::States(2)],
        ),
    };
    let mut rng = StdRng::seed_from_u64(cfg.population.seed);
    let pop = Population::new(&cfg.population, groups, &mut rng)?;
    let splits = pop.simulate(&cfg.population, &mut rng, &mut |g, rng| {
        let at = rng.random_range(0..papers.len());
        let p = &papers[at];
        // Drawn only when asked for, so `relevance` 0 leaves the earlier datasets bit for bit.
        if cfg.relevance > 0.0 && rng.random::<f32>() < cfg.relevance {
            if papers.len() < 2 {
                return None;
            }
            // Relevance against taste: the group's least liked summary of this paper against its
            // favourite of another paper, so the data says which of the two wins when they pull
            // apart (with random draws, taste and relevance mostly agree or barely differ).
            let other = crate::other_than(rng, papers.len(), at);
            let by_taste = |c: &&Candidate| rules[g].score(c);
            let mine = p
                .candidates
                .iter()
                .min_by_key(by_taste)
                .expect("7 candidates");
            let o = &papers[other];
            let theirs = o
                .candidates
                .iter()
                .max_by_key(by_taste)
                .expect("7 candidates");
            let mine_left = rng.random::<bool>();
            let (l, r) = if mine_left {
                (mine, theirs)
            } else {
                (theirs, mine)
            };
            return Some(Comparison {
                user: String::new(),
                prompt: Some(p.id.clone()),
                left: l.id.clone(),
                right: r.id.clone(),
                label: u8::from(mine_left),
            });
        }
        let (i, j) = (rng.random_range(0..7), rng.random_range(0..7));
        let (l, r) = (&p.candidates[i], &p.candidates[j]);
        let (sl, sr) = (rules[g].score(l), rules[g].score(r));
        (sl != sr).then(|| Comparison {
            user: String::new(),
            prompt: Some(p.id.clone()),
            left: l.id.clone(),
            right: r.id.clone(),
            label: u8::from(sl > sr),
        })
    })?;
    let items: Vec<EmbedInput> = papers
        .iter()
        .flat_map(|p| {
            p.candidates.iter().map(|c| EmbedInput::Text {
                id: c.id.clone(),
                text: c.text.clone(),
            })
        })
        .collect();
    let prompts: Vec<EmbedInput> = papers
        .iter()
        .map(|p| EmbedInput::Text {
            id: p.id.clone(),
            text: p.prompt.clone(),
        })
        .collect();
    let (ri, rp) = crate::embed_stores(out, (text, &items), (text, &prompts), progress)?;
    let mut content = Content::default();
    for p in &papers {
        content.prompts.insert(p.id.clone(), p.prompt.clone());
        // A person compares the summaries of the paper they read.
        content.candidates.insert(
            p.id.clone(),
            p.candidates.iter().map(|c| c.id.clone()).collect(),
        );
        for c in &p.candidates {
            content
                .items
                .insert(c.id.clone(), ItemContent::Text(c.text.clone()));
        }
    }
    let asset = pal_embed::Asset::named("aclsum")?;
    let card = serde_json::json!({
        "name": "summaries",
        "source": asset.source(),
        "license": "MIT (aclsum texts); simulated preferences CC0-1.0",
        "items": format!("{} candidate summaries: every non-empty combination of a paper's human challenge/approach/outcome sentences", items.len()),
        "prompts": format!("{} papers: title + abstract", prompts.len()),
        "encoder": "all-MiniLM-L6-v2 (384-d, mean pooled, L2-normalised) for items and prompts",
        "rule": format!("with prob. r={:.2}: under a paper, the group's least liked summary of it against the group's favourite summary of another paper, everyone prefers the paper's own (relevance); otherwise two summaries of one paper, deterministic per group, ties redrawn (see users.groups)", cfg.relevance),
        "config": cfg,
    });
    let built = Built::finish(out, splits, card, content, &pop, (ri, rp))?;
    // Each group's utility of every summary: what `pal report`'s best-of-n check scores by.
    let tastes: Vec<GroupTaste> = pop
        .groups
        .iter()
        .enumerate()
        .map(|(g, grp)| GroupTaste {
            group: grp.name.clone(),
            users: pop.members(g),
            utility: papers
                .iter()
                .flat_map(|p| &p.candidates)
                .map(|c| (c.id.clone(), rules[g].score(c) as f64))
                .collect(),
        })
        .collect();
    pal_format::taste::write(out, &tastes)?;
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(words: usize, aspects: [bool; 3]) -> Candidate {
        Candidate {
            id: String::new(),
            text: String::new(),
            words,
            aspects,
        }
    }

    #[test]
    fn rules_order_candidates_as_documented() {
        let (short_a, long_o) = (
            cand(10, [false, true, false]),
            cand(30, [false, false, true]),
        );
        assert!(Rule::Longer.score(&long_o) > Rule::Longer.score(&short_a));
        assert!(Rule::Shorter.score(&short_a) > Rule::Shorter.score(&long_o));
        assert!(Rule::States(1).score(&short_a) > Rule::States(1).score(&long_o));
        assert!(Rule::States(2).score(&long_o) > Rule::States(2).score(&short_a));
        let both = cand(40, [false, true, true]);
        assert!(
            Rule::States(2).score(&long_o) > Rule::States(2).score(&both),
            "ties go to the shorter"
        );
    }

    #[test]
    fn detokenize_fixes_spacing() {
        assert_eq!(
            detokenize("In this paper , we ( briefly ) test ."),
            "In this paper, we (briefly) test."
        );
    }
}
