//! The `rumor-sim` binary: see [`rumor_sim::cli`].

fn main() {
    std::process::exit(rumor_sim::cli::main_with_args(std::env::args_os()));
}
