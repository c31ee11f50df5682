//! `sluice-mock`: runs the mock LLM provider as a standalone server.

use clap::Parser;
use sluice_bench::mock::MockProvider;

/// Mock OpenAI/Anthropic-compatible provider for gateway tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "sluice-mock", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:9000", env = "SLUICE_MOCK_LISTEN")]
    listen: String,
    /// Records kept for `GET /mock/requests`, oldest evicted first; 0 turns recording off.
    #[arg(long, default_value_t = sluice_bench::mock::DEFAULT_MAX_RECORDS)]
    max_records: usize,
    /// Tokio worker threads; defaults to the number of CPUs.
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    builder.build()?.block_on(async {
        let mock = MockProvider::start(&args.listen).await?;
        mock.set_max_records(args.max_records);
        // Scripts that start the mock on port 0 read the address from this line.
        println!("sluice-mock listening on {}", mock.addr());
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}
