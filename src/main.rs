use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEADGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // The tokenizers crate traces every character it normalizes, which would write
        // the text of a prompt to the log.
        .add_directive("tokenizers=warn".parse().expect("a valid directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = leadgate::cli::Cli::parse();
    match leadgate::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit_code(&error)
        }
    }
}

/// Returns exit status 3 when the database key is missing or wrong, so scripts can tell
/// that case apart, and 1 for any other error.
fn exit_code(error: &anyhow::Error) -> ExitCode {
    let key_problem = error.chain().any(|cause| {
        cause.is::<leadgate::config::KeyError>()
            || matches!(
                cause.downcast_ref::<leadgate::store::StoreError>(),
                Some(leadgate::store::StoreError::WrongKey)
            )
    });
    if key_problem {
        ExitCode::from(3)
    } else {
        ExitCode::FAILURE
    }
}
