//! `sluice` — the command-line entry point (the command line itself is
//! `sluice::cli`, in the library).

fn main() -> anyhow::Result<()> {
    sluice::cli_main()
}
