//! Every command's result: pretty JSON on stdout with `--json`, else the human text.

use crate::args::Cli;

/// Prints `value` as JSON (`--json`) or the text `human` makes.
pub fn print(cli: &Cli, value: serde_json::Value, human: impl FnOnce() -> String) {
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&value).expect("json"));
    } else {
        print!("{}", human());
    }
}
