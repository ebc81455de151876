//! `pal`: command line for building datasets, embedding, training, evaluating, adapting,
//! exporting and reporting PAL models, and for running the HTTP service (`pal serve`, from
//! `pal-server`). Errors are printed as one line on stderr with exit code 2.

mod args;
mod bench_cmd;
mod commands;
mod data_args;
mod data_cmd;
mod output;
mod plot;
mod progress;
mod score_cmd;
mod values;

use anyhow::Result;
use clap::Parser;

use args::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn run(cli: &Cli) -> Result<()> {
    // A PAL_CPU_KERNELS this CPU cannot run is refused before any work starts.
    pal_cpu::chosen()?;
    match &cli.command {
        Command::Synth(a) => commands::synth_cmd(cli, a),
        Command::Train(a) => commands::train_cmd(cli, a),
        Command::Eval(a) => commands::eval_cmd(cli, a),
        Command::Adapt(a) => commands::adapt_cmd(cli, a),
        Command::Export(a) => commands::export_cmd(cli, a),
        Command::Report(a) => commands::report_cmd(cli, a),
        Command::Score(a) => score_cmd::score_cmd(a),
        Command::Embed(a) => data_cmd::embed_cmd(cli, a),
        Command::Data(a) => data_cmd::data_cmd(cli, a),
        Command::Serve(a) => Ok(pal_server::cli::run(a)?),
        Command::Bench(a) => bench_cmd::bench_cmd(a),
    }
}
