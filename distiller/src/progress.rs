//! Progress of long jobs: a live bar with figures on a terminal, and a line every 5% of the work
//! when stderr is a log file (so a job run in the background still says how far it got).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    /// For logs: the job's name, its length and the last position printed.
    log: Option<(String, u64, u64)>,
    /// What the positions count ("steps", "pairs", …), printed after them.
    unit: String,
    started: Instant,
    message: String,
}

impl Progress {
    /// A job named `name` (e.g. "train") of `len` units, each one `unit` (plural, e.g. "steps":
    /// the bar and the log lines read `train 500/10000 steps`); `show = false` hides it entirely.
    pub fn new(name: &str, len: u64, unit: &str, show: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = if show && terminal {
            let bar = ProgressBar::new(len);
            let template = format!(
                "{name} {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  [{{elapsed_precise}} < {{eta_precise}}]"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        let log = (show && !terminal).then(|| (name.to_string(), len, 0));
        Progress {
            bar,
            log,
            unit: unit.to_string(),
            started: Instant::now(),
            message: String::new(),
        }
    }

    pub fn set_position(&mut self, position: u64) {
        self.bar.set_position(position);
        if let Some((name, len, last)) = &mut self.log {
            let every = (*len / 20).max(1);
            if position >= *last + every || position == *len {
                *last = position;
                let seconds = self.started.elapsed().as_secs_f64();
                eprintln!(
                    "{name} {position}/{len} {}  {}  [{seconds:.0} s]",
                    self.unit, self.message
                );
            }
        }
    }

    pub fn set_message(&mut self, message: String) {
        self.bar.set_message(message.clone());
        self.message = message;
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
