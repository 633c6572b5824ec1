//! `p2pchat sim`: run the simulator and report what happened.

use std::io::{IsTerminal, Write};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use p2pchat_sim::{FaultLevel, SimConfig, Summary, World};

use crate::errors::CliError;

/// Options of `p2pchat sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Number of peers.
    #[arg(long, default_value_t = 30)]
    peers: usize,
    /// Messages the simulated users send in all.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// The seed; the same seed and options replay the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fault level: none, light or heavy.
    #[arg(long, default_value = "light")]
    faults: FaultLevel,
    /// Print one JSON object on stdout instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Write every event to FILE (large).
    #[arg(long, value_name = "FILE")]
    trace: Option<std::path::PathBuf>,
}

/// Runs the simulation. An error when an invariant broke (exit code 6).
pub fn run(args: SimArgs) -> Result<(), CliError> {
    if args.peers < 2 {
        return Err(CliError::Usage(
            "--peers must be at least 2 (there is nobody to chat with)".into(),
        ));
    }
    let trace: Option<Box<dyn Write>> = match &args.trace {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(Box::new(std::io::BufWriter::new(f))),
            Err(e) => {
                return Err(CliError::Usage(format!(
                    "cannot create the trace file {}: {e}; choose a writable path",
                    path.display()
                )));
            }
        },
        None => None,
    };
    let config = SimConfig::new(args.seed, args.peers, args.messages, args.faults);
    let replay = replay_command(&args);
    // A panic is a bug in the core or the simulator: report the seed that reproduces it.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut world = World::new(config, trace)?;
        let bar = progress_bar(args.messages);
        let summary = world.run(|p| {
            if let Some(bar) = &bar {
                bar.set_position(p.resolved);
                bar.set_message(format!(
                    "sent {}, virtual {} s",
                    p.sent,
                    p.virtual_ms / 1000
                ));
            }
        });
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok::<Summary, p2pchat_sim::PoolError>(summary)
    }));
    let mut summary = match outcome {
        Ok(Ok(summary)) => summary,
        Ok(Err(e)) => {
            eprintln!("p2pchat sim: {e}. The bundled key pool is damaged; reinstall p2pchat.");
            return Err(CliError::Invariant);
        }
        Err(_) => {
            eprintln!(
                "p2pchat sim: the simulation panicked (a bug). Seed {}; replay with:\n  {replay}",
                args.seed
            );
            return Err(CliError::Invariant);
        }
    };
    summary.faults = args.faults.to_string();
    if args.json {
        match serde_json::to_string(&summary) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("p2pchat sim: could not encode the summary as JSON: {e}"),
        }
    } else {
        print_human(&summary);
    }
    if let Some(e) = &summary.trace_error {
        eprintln!("p2pchat sim: the trace file is incomplete: {e}");
    }
    if summary.invariant_violations > 0 {
        eprintln!(
            "p2pchat sim: {} invariant violation(s) with seed {}. Replay with:\n  {replay}",
            summary.invariant_violations, summary.seed
        );
        for v in &summary.violations {
            eprintln!("  step {} at {} ms: {}", v.step, v.virtual_ms, v.what);
        }
        return Err(CliError::Invariant);
    }
    Ok(())
}

fn replay_command(args: &SimArgs) -> String {
    format!(
        "p2pchat sim --peers {} --messages {} --seed {} --faults {}",
        args.peers, args.messages, args.seed, args.faults
    )
}

/// A progress bar on stderr, only when stderr is a terminal.
fn progress_bar(messages: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(messages);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} resolved, {msg}")
    {
        bar.set_style(style);
    }
    Some(bar)
}

fn print_human(s: &Summary) {
    let rate = if s.wall_ms > 0 {
        s.events as f64 * 1000.0 / s.wall_ms as f64
    } else {
        0.0
    };
    println!(
        "p2pchat sim: seed {}, {} peers, faults {}",
        s.seed, s.peers, s.faults
    );
    println!(
        "  messages: {} sent, {} delivered, {} failed, {} lost in crashes, {} forgotten with a restored disk, {} unresolved",
        s.messages_sent,
        s.delivered,
        s.failed,
        s.lost_in_crash,
        s.forgotten_by_restore,
        s.unresolved
    );
    println!(
        "  receivers: {} duplicates, {} out of order",
        s.duplicates, s.out_of_order
    );
    println!(
        "  connections: {} registrations, {} handshakes (per side), {} rejected, {} requests denied",
        s.registrations, s.handshakes, s.handshakes_rejected, s.requests_denied
    );
    let kinds: Vec<String> = s
        .faults_by_kind
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "  faults: {} injected ({})",
        s.faults_injected,
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds.join(", ")
        }
    );
    println!(
        "  time: {:.1} s virtual, {:.2} s wall, {} events ({:.0} events/s)",
        s.virtual_ms as f64 / 1000.0,
        s.wall_ms as f64 / 1000.0,
        s.events,
        rate
    );
    println!("  trace digest: {}", s.trace_digest);
    println!("  invariant violations: {}", s.invariant_violations);
}
