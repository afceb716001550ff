/// mimalloc instead of the system allocator: a sync allocates and frees millions of
/// small values, and glibc's malloc spent about a third of an import's CPU time in
/// allocation, freeing and consolidation (measured with `perf` on `bench sync`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    syncledger_api::cli::main().await
}
