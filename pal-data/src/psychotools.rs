//! Real paired comparisons made by people: the `paircomp` data sets that R's psychotools and
//! psychotree packages ship (read from Debian's `.deb` with `pal_rdata`, no R involved).
//! Users are respondents (SoundQuality: the listener `id`, whose rows are pooled), items are the
//! compared objects, one-hot or their names embedded as text; ties and missing answers are
//! dropped and counted in the card, respondent covariates go to `user_features.json`.

use std::collections::BTreeMap;
use std::path::Path;

use pal_embed::{EmbedInput, Embedder};
use pal_format::dataset::{ITEMS_FILE, PROMPTS_FILE};
use pal_format::{Comparison, Split, UserFeatures};
use pal_math::store::EmbeddingStore;
use pal_rdata::RObject;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::json;

use crate::{Built, Content, DataError, ItemContent, Progress};

/// The paircomp sets of psychotools 0.7-2 and psychotree 0.16-0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsychoSet {
    /// The name `pal data psychotools --set` takes.
    pub name: &'static str,
    /// `psychotools` or `psychotree` (the pinned asset's name).
    pub package: &'static str,
    /// The `.rda` file in the package's `data/` folder and the data frame it holds.
    pub object: &'static str,
    /// The paircomp column.
    pub column: &'static str,
    /// The column naming the respondent when one person answered on several rows.
    pub respondent: Option<&'static str>,
    /// What the respondents were asked (the prompt).
    pub question: &'static str,
}

/// Every set, by name.
pub const SETS: [PsychoSet; 6] = [
    PsychoSet {
        name: "soundquality",
        package: "psychotools",
        object: "SoundQuality",
        column: "preference",
        respondent: Some("id"),
        question: "Which of the two recordings sounds better?",
    },
    PsychoSet {
        name: "firstnames",
        package: "psychotools",
        object: "FirstNames",
        column: "preference",
        respondent: None,
        question: "Which first name for a boy do you prefer?",
    },
    PsychoSet {
        name: "germanparties",
        package: "psychotools",
        object: "GermanParties2009",
        column: "preference",
        respondent: None,
        question: "Which party would you rather vote for?",
    },
    PsychoSet {
        name: "topmodel",
        package: "psychotree",
        object: "Topmodel2007",
        column: "preference",
        respondent: None,
        question: "Which candidate would you rather see as Germany's next topmodel?",
    },
    PsychoSet {
        name: "cems",
        package: "psychotree",
        object: "CEMSChoice",
        column: "preference",
        respondent: None,
        question: "Which university would you rather spend your exchange semester at?",
    },
    PsychoSet {
        name: "europeanvalues",
        package: "psychotree",
        object: "EuropeanValuesStudy",
        column: "paircomp",
        respondent: None,
        question: "Which goal should your country's government rather pursue?",
    },
];

impl PsychoSet {
    /// The set called `name`, or an error listing the known names.
    pub fn named(name: &str) -> Result<PsychoSet, DataError> {
        SETS.iter()
            .copied()
            .find(|s| s.name == name)
            .ok_or_else(|| DataError::Config {
                field: "set",
                reason: format!(
                    "no paircomp set called `{name}`; known: {}",
                    SETS.map(|s| s.name).join(", ")
                ),
            })
    }

    /// The `.rda` file inside the package's site-library folder.
    pub fn file(&self) -> String {
        format!("{}.rda", self.object)
    }
}

/// How items are represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemsAs {
    /// One-hot vectors (as the psychometric models see them).
    OneHot,
    /// The object's name embedded by MiniLM.
    Text,
}

/// What to build from a set.
#[derive(Debug, Clone)]
pub struct PsychoConfig {
    pub set: PsychoSet,
    pub items: ItemsAs,
    /// Share of respondents held out as new users.
    pub unseen_share: f32,
    /// Comparisons per new user in the few-shot pool (the rest are their held-out test).
    pub unseen_pool: usize,
    /// Keep only this many respondents (after shuffling): small slices for tests.
    pub respondents: Option<usize>,
    pub seed: u64,
}

impl PsychoConfig {
    pub fn validate(&self) -> Result<(), DataError> {
        crate::check_share("unseen_share", self.unseen_share)?;
        if self.unseen_pool == 0 {
            return Err(DataError::Config {
                field: "unseen_pool",
                reason: "new users need at least one comparison to learn from".into(),
            });
        }
        if self.respondents.is_some_and(|n| n < 4) {
            return Err(DataError::Config {
                field: "respondents",
                reason: "need at least 4 respondents".into(),
            });
        }
        Ok(())
    }
}

/// The comparisons of one paircomp matrix, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct PairComp {
    pub labels: Vec<String>,
    /// Per row: (first object, second object, answer); answers > 0 prefer the first object.
    pub rows: Vec<Vec<(usize, usize, i32)>>,
    /// Answers that were NA.
    pub missing: usize,
}

fn source_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Source {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The object pair of each paircomp column: 1:2, 1:3, 2:3, 1:4, … and, when `ordered`, the same
/// sequence reversed (2:1, 3:1, 3:2, …) after it. Zero-based.
pub fn column_pairs(n_objects: usize, ordered: bool) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for j in 1..n_objects {
        for i in 0..j {
            pairs.push((i, j));
        }
    }
    if ordered {
        let rev: Vec<_> = pairs.iter().map(|&(i, j)| (j, i)).collect();
        pairs.extend(rev);
    }
    pairs
}

/// Decodes a `paircomp` object (an integer matrix with `labels`, `mscale`, `ordered`).
pub fn decode_paircomp(obj: &RObject, path: &Path) -> Result<PairComp, DataError> {
    if !obj.inherits("paircomp") {
        return Err(source_err(path, "the column is not of class paircomp"));
    }
    let labels: Vec<String> = obj
        .attr("labels")
        .and_then(RObject::strings)
        .ok_or_else(|| source_err(path, "paircomp without `labels`"))?
        .iter()
        .map(|s| s.clone().unwrap_or_default())
        .collect();
    let ordered = obj
        .attr("ordered")
        .and_then(RObject::logicals)
        .and_then(|v| v.first().copied().flatten())
        .unwrap_or(false);
    let values = obj
        .integers()
        .ok_or_else(|| source_err(path, "paircomp data is not an integer matrix"))?;
    let pairs = column_pairs(labels.len(), ordered);
    let (n_rows, n_cols) = match obj.dim().as_deref() {
        Some([r, c]) => (*r, *c),
        _ if values.len() == pairs.len() => (1, pairs.len()),
        _ => return Err(source_err(path, "paircomp without a two-dimensional `dim`")),
    };
    if n_cols != pairs.len() || n_rows * n_cols != values.len() {
        return Err(source_err(
            path,
            format!(
                "paircomp has {n_cols} columns; {} objects need {}",
                labels.len(),
                pairs.len()
            ),
        ));
    }
    let mut missing = 0;
    let rows = (0..n_rows)
        .map(|r| {
            // R matrices are column-major.
            (0..n_cols)
                .filter_map(|c| match values[c * n_rows + r] {
                    Some(v) => Some((pairs[c].0, pairs[c].1, v)),
                    None => {
                        missing += 1;
                        None
                    }
                })
                .collect()
        })
        .collect();
    Ok(PairComp {
        labels,
        rows,
        missing,
    })
}

/// One respondent: their comparisons and covariates.
struct Respondent {
    id: String,
    rows: Vec<(usize, usize, i32)>,
    covariates: BTreeMap<String, String>,
}

/// Reads the set's data frame from `file` and groups its rows into respondents.
fn respondents(set: &PsychoSet, file: &Path) -> Result<(PairComp, Vec<Respondent>), DataError> {
    let bytes = std::fs::read(file).map_err(|e| pal_math::PalError::io(file, e))?;
    let objects = pal_rdata::read_rda(&bytes).map_err(|e| source_err(file, e.to_string()))?;
    let (_, frame) = objects
        .iter()
        .find(|(n, _)| n == set.object)
        .ok_or_else(|| source_err(file, format!("no object `{}` in the file", set.object)))?;
    let column = frame.field(set.column).ok_or_else(|| {
        source_err(
            file,
            format!("no paircomp column `{}` in `{}`", set.column, set.object),
        )
    })?;
    let pc = decode_paircomp(column, file)?;
    let names = frame.names();
    let elements = frame.elements().unwrap_or_default();
    let covariate_columns: Vec<(&String, &RObject)> = names
        .iter()
        .zip(elements)
        .filter(|(n, o)| {
            *n != set.column
                && Some(n.as_str()) != set.respondent
                && !o.inherits("paircomp")
                && o.dim().is_none()
                && o.len() == pc.rows.len()
        })
        .collect();
    let ids: Vec<String> = match set.respondent {
        Some(col) => {
            let c = frame
                .field(col)
                .ok_or_else(|| source_err(file, format!("no respondent column `{col}`")))?;
            (0..pc.rows.len())
                .map(|r| c.text_at(r).unwrap_or_else(|| "NA".into()))
                .collect()
        }
        None => (0..pc.rows.len()).map(|r| format!("{}", r + 1)).collect(),
    };
    let mut by_id: BTreeMap<String, Respondent> = BTreeMap::new();
    let mut order = Vec::new();
    let row_covariates = |r: usize| -> BTreeMap<String, String> {
        covariate_columns
            .iter()
            .filter_map(|(n, o)| Some(((*n).clone(), o.text_at(r)?)))
            .collect()
    };
    for (r, id) in ids.iter().enumerate() {
        match by_id.get_mut(id) {
            Some(p) => {
                // A respondent's covariates are the columns constant over their rows (the
                // SoundQuality listener's, not the row's recording or session).
                let here = row_covariates(r);
                p.covariates.retain(|k, v| here.get(k) == Some(v));
                p.rows.extend(pc.rows[r].iter().copied());
            }
            None => {
                order.push(id.clone());
                by_id.insert(
                    id.clone(),
                    Respondent {
                        id: format!("{}-{id}", set.name),
                        rows: pc.rows[r].clone(),
                        covariates: row_covariates(r),
                    },
                );
            }
        }
    }
    let people = order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect();
    Ok((pc, people))
}

/// Builds the dataset into `out` from the package's `data/` folder. `text` embeds the object
/// names and the question when `cfg.items` is [`ItemsAs::Text`].
pub fn build(
    cfg: &PsychoConfig,
    data_dir: &Path,
    text: Option<&Embedder>,
    out: &Path,
    progress: Progress,
) -> Result<Built, DataError> {
    cfg.validate()?;
    let file = data_dir.join(cfg.set.file());
    progress("reading the R data", 0, 1);
    let (pc, mut people) = respondents(&cfg.set, &file)?;
    progress("reading the R data", 1, 1);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    people.shuffle(&mut rng);
    if let Some(n) = cfg.respondents {
        people.truncate(n);
    }
    let ties: usize = people
        .iter()
        .map(|p| p.rows.iter().filter(|r| r.2 == 0).count())
        .sum();
    people.iter_mut().for_each(|p| p.rows.retain(|r| r.2 != 0));
    people.retain(|p| p.rows.len() >= 2);
    if people.len() < 4 {
        return Err(source_err(
            &file,
            "fewer than 4 respondents with 2+ untied answers",
        ));
    }
    let n_unseen =
        ((people.len() as f32 * cfg.unseen_share).round() as usize).min(people.len() - 2);
    let n_seen = people.len() - n_unseen;
    let item_id = |i: usize| format!("o{i}");
    let prompt = "q".to_string();
    let cmp = |user: &str, (a, b, v): (usize, usize, i32)| Comparison {
        user: user.to_string(),
        prompt: Some(prompt.clone()),
        left: item_id(a),
        right: item_id(b),
        label: u8::from(v > 0),
    };
    let mut splits: BTreeMap<u8, Vec<Comparison>> = BTreeMap::new();
    for (u, p) in people.iter_mut().enumerate() {
        p.rows.shuffle(&mut rng);
        let m = p.rows.len();
        let rows: Vec<Comparison> = p.rows.iter().map(|&r| cmp(&p.id, r)).collect();
        if u < n_seen {
            let test = ((m as f32 * 0.2).round() as usize).max(1);
            let val = (m as f32 * 0.1).round() as usize;
            let train = m - test - val;
            splits
                .entry(0)
                .or_default()
                .extend_from_slice(&rows[..train]);
            splits
                .entry(1)
                .or_default()
                .extend_from_slice(&rows[train..train + val]);
            splits
                .entry(2)
                .or_default()
                .extend_from_slice(&rows[train + val..]);
        } else {
            let pool = cfg.unseen_pool.min(m - 1);
            splits
                .entry(3)
                .or_default()
                .extend_from_slice(&rows[..pool]);
            splits
                .entry(4)
                .or_default()
                .extend_from_slice(&rows[pool..]);
        }
    }
    let splits: Vec<(Split, Vec<Comparison>)> = splits
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (Split::ALL[k as usize], v))
        .collect();
    std::fs::create_dir_all(out).map_err(|e| pal_math::PalError::io(out, e))?;
    let n = pc.labels.len();
    let ids: Vec<String> = (0..n).map(item_id).collect();
    let mut content = Content::default();
    for (id, label) in ids.iter().zip(&pc.labels) {
        content
            .items
            .insert(id.clone(), ItemContent::Text(label.clone()));
    }
    content
        .prompts
        .insert(prompt.clone(), cfg.set.question.to_string());
    content.candidates.insert(prompt.clone(), ids.clone());
    let encoder = match (cfg.items, text) {
        (ItemsAs::OneHot, _) => {
            let mut eye = vec![0.0f32; n * n];
            (0..n).for_each(|i| eye[i * n + i] = 1.0);
            EmbeddingStore::new(ids.clone(), n, eye)?.save(&out.join(ITEMS_FILE))?;
            EmbeddingStore::new(vec![prompt.clone()], 1, vec![1.0])?
                .save(&out.join(PROMPTS_FILE))?;
            "one-hot items (no encoder), one constant prompt".to_string()
        }
        (ItemsAs::Text, Some(enc)) => {
            let items: Vec<EmbedInput> = ids
                .iter()
                .zip(&pc.labels)
                .map(|(id, l)| EmbedInput::Text {
                    id: id.clone(),
                    text: l.clone(),
                })
                .collect();
            let prompts = [EmbedInput::Text {
                id: prompt.clone(),
                text: cfg.set.question.to_string(),
            }];
            crate::embed_stores(out, (enc, &items), (enc, &prompts), progress)?;
            "all-MiniLM-L6-v2 (384-d) of the object names and the question".to_string()
        }
        (ItemsAs::Text, None) => {
            return Err(DataError::Config {
                field: "items",
                reason: "text items need the text encoder".into(),
            });
        }
    };
    let comparisons: usize = people.iter().map(|p| p.rows.len()).sum();
    let features = UserFeatures {
        users: people
            .iter()
            .map(|p| (p.id.clone(), p.covariates.clone()))
            .collect(),
    };
    let card = json!({
        "name": format!("psychotools-{}", cfg.set.name),
        "source": format!("R package {} (Debian r-cran-{}), data/{}, column `{}`",
            cfg.set.package, cfg.set.package, cfg.set.file(), cfg.set.column),
        "preferences": "real: made by the survey's respondents (no simulation)",
        "objects": pc.labels,
        "question": cfg.set.question,
        "items": encoder,
        "respondents": {
            "total": people.len(),
            "seen": n_seen,
            "unseen": n_unseen,
            "respondent_column": cfg.set.respondent,
            "comparisons": comparisons,
            "ties_dropped": ties,
            "missing_dropped": pc.missing,
        },
        "split": {
            "seen": "each seen respondent's answers shuffled, 70/10/20 train/val/test",
            "unseen": format!("first {} answers of each new respondent are the few-shot pool, the rest their test", cfg.unseen_pool),
            "seed": cfg.seed,
        },
        "covariates": {
            "file": pal_format::user_features::USER_FEATURES_FILE,
            "names": features.names(),
        },
    });
    features.write(out)?;
    Built::written(out, splits, card, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_paircomp_order() {
        assert_eq!(
            column_pairs(4, false),
            vec![(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
        );
        let o = column_pairs(3, true);
        assert_eq!(o[3..], [(1, 0), (2, 0), (2, 1)]);
    }

    #[test]
    fn unknown_set_names_the_known_ones() {
        let e = PsychoSet::named("nope").unwrap_err().to_string();
        assert!(e.contains("`set`") && e.contains("firstnames"), "{e}");
        assert!(!e.contains('\n'));
    }
}
