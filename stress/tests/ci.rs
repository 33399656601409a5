//! The stress suite at its CI size, run by `cargo test` (and so by `.ci/run`): the real broker
//! and client binaries of this build, every scenario, figures printed as they come (the child's
//! output is not captured, so they show in the test log).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_stress_suite_passes_at_ci_size() {
    let stress = PathBuf::from(env!("CARGO_BIN_EXE_remoteproxy-stress"));
    let dir = stress.parent().unwrap();
    let (broker, client) = (dir.join("remoteproxy"), dir.join("remoteproxy-client"));
    assert!(
        broker.is_file() && client.is_file(),
        "the workspace's binaries are built with its tests: cargo test --workspace"
    );
    let status = Command::new(&stress)
        .args(["all", "--size", "ci"])
        .arg("--broker")
        .arg(&broker)
        .arg("--client")
        .arg(&client)
        .status()
        .expect("the stress suite runs");
    assert!(status.success(), "a stress check failed (its FAIL lines are above)");
}
