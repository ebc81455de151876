//! Real photos from Debian's `mate-backgrounds` (the MATE desktop's nature wallpapers, GPL-2+)
//! for the photo gallery, each with a prompt describing it and its copyright holders and license
//! read from the package's machine-readable `debian/copyright` file (stanzas of `Files:`,
//! `Copyright:` and `License:`). GNOME's 43.1 backgrounds are illustrations (SVG, WebP), not
//! photos, so they are not used.

use std::path::{Path, PathBuf};

use crate::DataError;

/// The photos used, as (file in `nature/`, a prompt that describes it).
pub const MATE_PHOTOS: [(&str, &str); 12] = [
    ("Aqua.jpg", "a drop splashing into water"),
    ("Blinds.jpg", "a close-up of a green leaf with its veins"),
    ("Dune.jpg", "dune grass in front of the sea"),
    ("FreshFlower.jpg", "a close-up of orange flower petals"),
    ("Garden.jpg", "a red and yellow marigold flower"),
    ("GreenMeadow.jpg", "a field of young green grass"),
    (
        "LadyBird.jpg",
        "a ladybird on a grass stem among small blue flowers",
    ),
    ("RainDrops.jpg", "rain drops on green leaves"),
    ("Storm.jpg", "storm clouds over a road"),
    ("TwoWings.jpg", "dandelion seeds in front of orange flowers"),
    ("Wood.jpg", "pale wooden planks"),
    ("YellowFlower.jpg", "a yellow flower with long petals"),
];

/// One photo of the gallery: file, prompt, and who holds its copyright under which license.
#[derive(Debug, Clone, PartialEq)]
pub struct Photo {
    pub path: PathBuf,
    /// Item id prefix (lower case, no extension).
    pub stem: String,
    pub prompt: String,
    pub credit: String,
}

/// `(files, copyright, license)` of each stanza of a Debian machine-readable copyright file.
pub fn copyright_stanzas(text: &str) -> Vec<(Vec<String>, String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut files, mut copyright, mut license) = (vec![], vec![], String::new());
        let mut field = "";
        for line in stanza.lines() {
            let (key, value) = match line.split_once(':') {
                Some((k, v)) if !line.starts_with(char::is_whitespace) => (k.trim(), v.trim()),
                _ => (field, line.trim()),
            };
            field = key;
            match key {
                "Files" => files.extend(value.split_whitespace().map(str::to_string)),
                "Copyright" if !value.is_empty() => copyright.push(value.to_string()),
                "License" if license.is_empty() => license = value.to_string(),
                _ => {}
            }
        }
        if !files.is_empty() {
            out.push((files, copyright.join("; "), license));
        }
    }
    out
}

/// The MATE nature photos in `nature_dir`, credited from the package's `copyright` file.
pub fn mate(nature_dir: &Path, copyright_file: &Path) -> Result<Vec<Photo>, DataError> {
    let text = std::fs::read_to_string(copyright_file)
        .map_err(|e| pal_math::PalError::io(copyright_file, e))?;
    let stanzas = copyright_stanzas(&text);
    MATE_PHOTOS
        .iter()
        .map(|(file, prompt)| {
            let key = format!("nature/{file}");
            let (_, holders, license) = stanzas
                .iter()
                .rev()
                .find(|(files, _, _)| files.contains(&key))
                .ok_or_else(|| DataError::Source {
                    path: copyright_file.to_path_buf(),
                    reason: format!("no copyright stanza names {key}"),
                })?;
            Ok(Photo {
                path: nature_dir.join(file),
                stem: format!("mate-{}", file.trim_end_matches(".jpg").to_lowercase()),
                prompt: prompt.to_string(),
                credit: format!("© {holders}; {license} (Debian mate-backgrounds)"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copyright_stanzas_give_each_files_holders_and_license() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                    Upstream-Name: X\n\n\
                    Files: nature/A.jpg\n       nature/B.jpg\n\
                    Copyright: 2008, Ann <a@x>\n           2009, Bob\n\
                    License: GPL-2+\n\
                    Comment: see AUTHORS\n\n\
                    Files: *\nCopyright: 2010, Team\nLicense: GPL-2+\n \
                    This program is free software\n";
        let s = copyright_stanzas(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, ["nature/A.jpg", "nature/B.jpg"]);
        assert_eq!(s[0].1, "2008, Ann <a@x>; 2009, Bob");
        assert_eq!(s[0].2, "GPL-2+");
        assert_eq!(s[1].2, "GPL-2+");
    }
}
