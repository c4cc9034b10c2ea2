//! The `rumor` binary (agent, CLI, simulator front end): filled in by later issues.

fn main() {
    println!(
        "rumor {}: the agent is not built yet",
        env!("CARGO_PKG_VERSION")
    );
}
