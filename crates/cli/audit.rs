//! `foresight audit export`: the audit stream replicas share on NATS JetStream, copied into the
//! JSON-lines file one machine's service writes, so `backtest --from-audit` and `report
//! --from-audit` read it unchanged.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use foresight_serve::journal::export_stream;
use foresight_serve::nats::{AUDIT_STREAM, NatsOptions};

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Copy the shared audit stream, as it is now, into an audit log file.
    Export {
        /// The NATS server(s) the replicas use (their `state`), e.g. nats://127.0.0.1:4222.
        #[arg(long, value_name = "URL")]
        nats: String,
        /// A `.creds` file for NATS.
        #[arg(long, value_name = "FILE")]
        credentials: Option<PathBuf>,
        /// PEM root certificate(s) of the NATS servers (TLS on).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// The file to write (replaced whole).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Export { nats, credentials, ca, out } => {
            let options = NatsOptions { credentials, ca, ..NatsOptions::new(nats) };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let lines = runtime.block_on(export_stream(&options, AUDIT_STREAM, &out))?;
            println!("{}: {lines} audit lines from {} on {}", out.display(), AUDIT_STREAM, options.url);
            Ok(())
        }
    }
}
