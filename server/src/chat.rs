//! OpenRLHF's queries as pal's (prompt, response): a query is the chat-templated prompt and the
//! generated response as one decoded text. With the request's `prompts[i]`, the response is what
//! follows that prompt in the query; without, what follows the last assistant-turn marker
//! (`pal serve --reward-split`). Both parts then lose the template's special tokens
//! (`<|…|>`, `<s>`, `</s>`, `[INST]`, `[/INST]`, `<start_of_turn>`, `<end_of_turn>`, `<bos>`,
//! `<eos>`), the role names those tokens open, and system turns, so the encoder sees the texts a
//! person wrote and read — as the model's dataset was embedded.

/// Tokens that open a turn: a role name may follow.
const TURN: [&str; 3] = ["<|im_start|>", "<|start_header_id|>", "<start_of_turn>"];
const ROLES: [&str; 5] = ["system", "user", "assistant", "model", "developer"];
const PLAIN: [&str; 8] = [
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "<end_of_turn>",
    "<bos>",
    "<eos>",
    "<<SYS>>",
];

/// The special token at the start of `s`, if any: its length.
fn special_at(s: &str) -> Option<usize> {
    if let Some(rest) = s.strip_prefix("<|")
        && let Some(end) = rest.find("|>")
        && end <= 40
        && !rest[..end].contains(char::is_whitespace)
    {
        return Some(end + 4);
    }
    TURN.iter()
        .chain(&PLAIN)
        .chain(&["<</SYS>>"])
        .find(|t| s.starts_with(**t))
        .map(|t| t.len())
}

/// `text` without template tokens, the role names they open, and system turns; trimmed.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_system = false;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if let Some(n) = special_at(rest) {
            let token = &rest[..n];
            i += n;
            if TURN.contains(&token) {
                let after = &text[i..];
                let role = ROLES.iter().find(|r| after.starts_with(**r));
                in_system = role == Some(&"system");
                if let Some(r) = role {
                    i += r.len();
                    if text[i..].starts_with("<|end_header_id|>") {
                        i += "<|end_header_id|>".len();
                    }
                }
            } else if token == "<<SYS>>" {
                in_system = true;
            } else if token == "<</SYS>>" {
                in_system = false;
            }
            if !out.ends_with(char::is_whitespace) && !out.is_empty() {
                out.push(' ');
            }
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        if !in_system {
            out.push(c);
        }
        i += c.len_utf8();
    }
    out.trim().to_string()
}

/// Why a query cannot be split (the caller names the field).
#[derive(Debug, Clone, PartialEq)]
pub enum SplitError {
    /// `prompts[i]` is not part of `query[i]`.
    PromptNotInQuery,
    /// No `prompts` and no marker in the query.
    NoMarker,
}

/// `(prompt, response)` of a query, cleaned; `prompt` is the request's `prompts[i]` when given.
pub fn split(
    query: &str,
    prompt: Option<&str>,
    markers: &[String],
) -> Result<(String, String), SplitError> {
    match prompt {
        Some(p) => {
            let at = query.find(p).ok_or(SplitError::PromptNotInQuery)?;
            Ok((clean(p), clean(&query[at + p.len()..])))
        }
        None => {
            let (at, m) = markers
                .iter()
                .filter(|m| !m.is_empty())
                .find_map(|m| query.rfind(m.as_str()).map(|at| (at, m.len())))
                .ok_or(SplitError::NoMarker)?;
            Ok((clean(&query[..at]), clean(&query[at + m..])))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_SPLIT_MARKERS;

    fn markers() -> Vec<String> {
        DEFAULT_SPLIT_MARKERS.map(String::from).to_vec()
    }

    #[test]
    fn chat_templates_split_into_the_texts_people_wrote() {
        let chatml = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n\
                      Summarise the paper.<|im_end|>\n<|im_start|>assistant\nA short summary.<|im_end|>";
        let llama3 = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nSummarise the \
                      paper.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA short summary.<|eot_id|>";
        let llama2 = "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nSummarise the paper. [/INST] A short summary. </s>";
        let gemma = "<bos><start_of_turn>user\nSummarise the paper.<end_of_turn>\n<start_of_turn>model\nA short summary.<end_of_turn>";
        let plain = "Human: Summarise the paper.\n\nAssistant: A short summary.";
        for q in [chatml, llama3, llama2, gemma] {
            let (p, r) = split(q, None, &markers()).unwrap();
            assert_eq!(p, "Summarise the paper.", "{q}");
            assert_eq!(r, "A short summary.", "{q}");
        }
        let (p, r) = split(plain, None, &markers()).unwrap();
        assert_eq!(
            (p.as_str(), r.as_str()),
            ("Human: Summarise the paper.", "A short summary.")
        );
        assert_eq!(
            split("no marker", None, &markers()),
            Err(SplitError::NoMarker)
        );
    }

    #[test]
    fn a_given_prompt_splits_where_it_ends_even_after_a_bos_token() {
        let (p, r) = split(
            "<s>Title: X. Abstract: Y. A summary.",
            Some("Title: X. Abstract: Y."),
            &[],
        )
        .unwrap();
        assert_eq!(
            (p.as_str(), r.as_str()),
            ("Title: X. Abstract: Y.", "A summary.")
        );
        assert_eq!(
            split("abc", Some("zz"), &[]),
            Err(SplitError::PromptNotInQuery)
        );
        // Text that only looks like a token stays.
        assert_eq!(clean("a <| b |> c <|x"), "a <| b |> c <|x");
        assert_eq!(clean("Größe <|eot_id|>"), "Größe");
    }
}
