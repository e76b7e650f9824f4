//! pantheros: deploy, roll back and provision a NixOS fleet from one flake.
//! Parse, set up logging and the runtime, run the command, exit with its code.

use clap::Parser;

use pantheros::cli::Cli;
use pantheros::error::exit;

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let display = pantheros::report::Display::new(cli.color, cli.verbose > 0);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            std::process::exit(exit::FAILED_NOTHING_CHANGED);
        }
    };
    let json = cli.wants_json();
    let code = match rt.block_on(pantheros::command::run(cli, display)) {
        Ok(code) => code,
        Err(e) => {
            pantheros::report::print_error(&e);
            if json {
                // --json prints one document for every exit, early errors too.
                println!("{}", pantheros::report::error_document(&e));
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "pantheros=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PANTHEROS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
