//! A dataset directory: embedding stores plus comparison splits, and their index encoding.
//!
//! ```text
//! DIR/items.safetensors      item embeddings            (required)
//! DIR/prompts.safetensors    prompt embeddings          (PAL-B)
//! DIR/train.jsonl            seen users, training
//! DIR/val.jsonl              seen users, early stopping (optional)
//! DIR/test.jsonl             seen users, held out
//! DIR/unseen_train.jsonl     new users, few-shot pool   (optional)
//! DIR/unseen_test.jsonl      new users, held out        (optional)
//! DIR/card.json              dataset card               (optional)
//! DIR/content.json           item/prompt texts, images  (optional, see `content`)
//! DIR/images/                thumbnails content.json names
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pal_math::store::EmbeddingStore;
use pal_math::{PalError, Result};

use crate::comparison::{Comparison, for_each_jsonl, read_jsonl};

pub const ITEMS_FILE: &str = "items.safetensors";
pub const PROMPTS_FILE: &str = "prompts.safetensors";
pub const CARD_FILE: &str = "card.json";

/// A named split of a dataset directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Train,
    Val,
    Test,
    UnseenTrain,
    UnseenTest,
}

impl Split {
    /// Every split, in the order a dataset lists them.
    pub const ALL: [Split; 5] = [
        Split::Train,
        Split::Val,
        Split::Test,
        Split::UnseenTrain,
        Split::UnseenTest,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.jsonl",
            Split::Val => "val.jsonl",
            Split::Test => "test.jsonl",
            Split::UnseenTrain => "unseen_train.jsonl",
            Split::UnseenTest => "unseen_test.jsonl",
        }
    }
}

/// Comparisons resolved to row indices (users into a model, items/prompts into stores).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    pub users: Vec<u32>,
    pub prompts: Vec<u32>,
    pub left: Vec<u32>,
    pub right: Vec<u32>,
    pub labels: Vec<u8>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Self {
        let pick = |v: &[u32]| idx.iter().map(|&i| v[i]).collect();
        Self {
            users: pick(&self.users),
            prompts: pick(&self.prompts),
            left: pick(&self.left),
            right: pick(&self.right),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

/// Embedding stores of a dataset directory (splits are read on demand).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub items: EmbeddingStore,
    pub prompts: Option<EmbeddingStore>,
}

impl Dataset {
    /// Loads the stores of `dir`; a missing directory or item store is an error.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(PalError::file(dir, "dataset directory not found"));
        }
        let items = EmbeddingStore::load(&dir.join(ITEMS_FILE))?;
        let prompts_path = dir.join(PROMPTS_FILE);
        let prompts = if prompts_path.exists() {
            Some(EmbeddingStore::load(&prompts_path)?)
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            items,
            prompts,
        })
    }

    pub fn split_path(&self, split: Split) -> PathBuf {
        self.dir.join(split.file_name())
    }

    pub fn has_split(&self, split: Split) -> bool {
        self.split_path(split).exists()
    }

    /// Reads a split; an empty split is an error.
    pub fn read(&self, split: Split) -> Result<Vec<Comparison>> {
        let path = self.split_path(split);
        let rows = read_jsonl(&path)?;
        if rows.is_empty() {
            return Err(PalError::file(&path, "dataset split has no comparisons"));
        }
        Ok(rows)
    }

    pub fn prompt_dim(&self) -> usize {
        self.prompts.as_ref().map_or(0, EmbeddingStore::dim)
    }

    /// Resolves comparisons to indices. `users` maps user id → model row; unknown users,
    /// items or prompts are errors naming the id and `context` (usually the file).
    pub fn encode(
        &self,
        rows: &[Comparison],
        users: &HashMap<String, usize>,
        context: &str,
    ) -> Result<Encoded> {
        let mut enc = Encoded::default();
        for (n, c) in rows.iter().enumerate() {
            let at = || format!("{context}, comparison {}", n + 1);
            let u = *users.get(&c.user).ok_or_else(|| unknown_user(c, &at()))?;
            self.push_encoded(c, u, &at, &mut enc)?;
        }
        Ok(enc)
    }

    fn push_encoded(
        &self,
        c: &Comparison,
        user: usize,
        at: &dyn Fn() -> String,
        enc: &mut Encoded,
    ) -> Result<()> {
        let item = |id: &str| {
            self.items
                .position(id)
                .ok_or_else(|| PalError::Data(format!("{}: unknown item `{id}`", at())))
        };
        let prompt = match (&self.prompts, &c.prompt) {
            (Some(store), Some(p)) => store
                .position(p)
                .ok_or_else(|| PalError::Data(format!("{}: unknown prompt `{p}`", at())))?,
            _ => 0,
        };
        enc.users.push(user as u32);
        enc.prompts.push(prompt as u32);
        enc.left.push(item(&c.left)? as u32);
        enc.right.push(item(&c.right)? as u32);
        enc.labels.push(c.label);
        Ok(())
    }

    /// Reads and encodes a split in one pass without keeping its rows (what training needs at
    /// 1M+ comparisons). With `grow`, users not yet in `users` get the next rows (training);
    /// otherwise they are errors. An empty split is an error.
    pub fn read_encoded(&self, split: Split, users: &mut UserIndex, grow: bool) -> Result<Encoded> {
        let path = self.split_path(split);
        let context = format!("{} split", split.file_name().trim_end_matches(".jsonl"));
        let mut enc = Encoded::default();
        for_each_jsonl(&path, |c| {
            let n = enc.len() + 1;
            let at = || format!("{context}, comparison {n}");
            let u = match users.map.get(&c.user) {
                Some(&u) => u,
                None if grow => {
                    users.map.insert(c.user.clone(), users.ids.len());
                    users.ids.push(c.user.clone());
                    users.ids.len() - 1
                }
                None => return Err(unknown_user(&c, &at())),
            };
            self.push_encoded(&c, u, &at, &mut enc)
        })?;
        if enc.is_empty() {
            return Err(PalError::file(&path, "dataset split has no comparisons"));
        }
        Ok(enc)
    }
}

fn unknown_user(c: &Comparison, at: &str) -> PalError {
    PalError::UnknownUser {
        user: c.user.clone(),
        context: format!("{at}: not in the model"),
    }
}

/// User ids and their model rows, in order of first appearance (as [`user_ids`]).
#[derive(Debug, Clone, Default)]
pub struct UserIndex {
    pub ids: Vec<String>,
    map: HashMap<String, usize>,
}

/// Distinct user ids in order of first appearance.
pub fn user_ids(rows: &[Comparison]) -> Vec<String> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for c in rows {
        if seen.insert(c.user.clone(), ()).is_none() {
            out.push(c.user.clone());
        }
    }
    out
}

/// Map id → position.
pub fn index_map(ids: &[String]) -> HashMap<String, usize> {
    ids.iter()
        .enumerate()
        .map(|(i, u)| (u.clone(), i))
        .collect()
}
