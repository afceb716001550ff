#[tokio::main]
async fn main() -> std::process::ExitCode {
    syncledger_api::cli::main().await
}
