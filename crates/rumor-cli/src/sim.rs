//! `rumor sim`: the deterministic simulator.
//!
//! Built with the `sim` feature, the simulator runs in this process. The
//! default build leaves it out (it would add its plotting, image codecs and
//! progress bars to every agent's binary) and hands the arguments to the
//! `rumor-sim` executable: the one beside this binary (as `cargo build
//! --release --workspace` leaves them), else the first on `PATH`.

use std::process::ExitCode;

/// Runs the simulator with `args` (everything after `rumor sim`).
#[cfg(feature = "sim")]
pub fn run(args: Vec<String>) -> ExitCode {
    let argv = std::iter::once("rumor sim".to_string()).chain(args);
    let code = rumor_sim::cli::main_with_args(argv);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs the simulator with `args` (everything after `rumor sim`).
#[cfg(not(feature = "sim"))]
pub fn run(args: Vec<String>) -> ExitCode {
    use std::os::unix::process::CommandExt;

    const SIM: &str = "rumor-sim";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(SIM)))
        .filter(|path| path.is_file());
    let program = beside.unwrap_or_else(|| SIM.into());
    // `exec` returns only when it failed.
    let err = std::process::Command::new(&program)
        .arg0("rumor sim")
        .args(args)
        .exec();
    if err.kind() == std::io::ErrorKind::NotFound {
        eprintln!(
            "rumor: this build has no simulator and found no `{SIM}` beside it or on PATH: \
             build it with `cargo build --release -p rumor-sim`, or build rumor with `--features sim`"
        );
    } else {
        eprintln!("rumor: cannot run {}: {err}", program.display());
    }
    ExitCode::from(2)
}
