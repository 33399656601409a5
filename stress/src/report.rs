//! What a scenario prints: figures (a name, a value, a unit) and checks (a claim and whether it
//! held). Each is one line as it happens, so a run that stalls shows where; the summary at the
//! end lists the failed checks, and the exit code says whether there were any.

use std::fmt::Display;
use std::sync::Mutex;

/// The figures and checks of a run.
#[derive(Default)]
pub struct Report {
    failed: Mutex<Vec<String>>,
    checks: Mutex<usize>,
}

impl Report {
    /// Starts a scenario's block.
    pub fn scenario(&self, name: &str, what: impl Display) {
        println!("\n== {name}: {what}");
    }

    /// A figure: printed, not judged.
    pub fn figure(&self, name: &str, value: impl Display) {
        println!("   {name:<44} {value}");
    }

    /// A check: printed with its outcome, and remembered when it failed.
    pub fn check(&self, claim: &str, held: bool, detail: impl Display) {
        *self.checks.lock().unwrap() += 1;
        let mark = if held { "ok  " } else { "FAIL" };
        println!(" {mark} {claim} ({detail})");
        if !held {
            self.failed.lock().unwrap().push(format!("{claim} ({detail})"));
        }
    }

    /// A step that had to work for the scenario to go on: a check that failed on an error.
    pub fn error(&self, claim: &str, error: impl Display) {
        self.check(claim, false, error);
    }

    /// The failed checks, after printing the summary.
    pub fn finish(&self) -> Vec<String> {
        let failed = self.failed.lock().unwrap().clone();
        let checks = *self.checks.lock().unwrap();
        println!("\n{} checks, {} failed", checks, failed.len());
        for failure in &failed {
            println!(" FAIL {failure}");
        }
        failed
    }
}
