//! Progress on stderr: bars while seeding, a timer while a load phase runs.
//!
//! Drawn only when stderr is a terminal (indicatif hides itself otherwise) and not turned
//! off with `--no-progress` ([`set_enabled`]). Colour follows the same rule and `NO_COLOR`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turn every bar off (`--no-progress`).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

/// Whether bars may be drawn: enabled, and stderr is a terminal.
pub fn enabled() -> bool {
    use std::io::IsTerminal;
    ENABLED.load(Ordering::SeqCst) && std::io::stderr().is_terminal()
}

/// ANSI colour on stderr: only on a terminal, and never when `NO_COLOR` is set
/// (<https://no-color.org>).
pub fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn target() -> ProgressDrawTarget {
    if enabled() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

fn style(template: &str) -> ProgressStyle {
    let template = if colour() {
        template.to_string()
    } else {
        // Strip indicatif's colour specs ("{bar:30.cyan}" -> "{bar:30}").
        template
            .split('{')
            .map(|part| match part.split_once('}') {
                Some((spec, rest)) => {
                    let spec = spec.split('.').next().unwrap_or(spec);
                    format!("{spec}}}{rest}")
                }
                None => part.to_string(),
            })
            .collect::<Vec<_>>()
            .join("{")
    };
    ProgressStyle::with_template(&template)
        .expect("valid template")
        .progress_chars("=> ")
}

/// A bar for `len` items (rows seeded, pages walked).
pub fn bar(len: u64, label: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target());
    pb.set_style(style(
        "{prefix:>12.bold} [{bar:30.cyan}] {human_pos}/{human_len} {per_sec} eta {eta}",
    ));
    pb.set_prefix(label.to_string());
    pb
}

/// A spinner for steps of unknown length (index builds, VACUUM).
pub fn spinner(label: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target());
    pb.set_style(style("{spinner} {msg} {elapsed}"));
    pb.set_message(label.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A load phase: its name and elapsed / planned time, ticking on its own.
pub fn phase(label: &str, planned: Option<Duration>) -> ProgressBar {
    let pb = match planned {
        Some(p) => {
            let pb = ProgressBar::with_draw_target(Some(p.as_millis() as u64), target());
            pb.set_style(style(
                "{prefix:>12.bold} [{bar:30.green}] {elapsed} / {msg} {spinner}",
            ));
            pb.set_message(format!("{:.0?}", p));
            pb
        }
        None => {
            let pb = ProgressBar::with_draw_target(None, target());
            pb.set_style(style("{prefix:>12.bold} {spinner} {elapsed} {msg}"));
            pb
        }
    };
    pb.set_prefix(label.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}
