//! The `nightjar` binary: everything lives in the library; this sets the allocator (jemalloc, see
//! `Cargo.toml`) and hands over to the CLI.

#![forbid(unsafe_code)]

#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    nightjar::cli::main()
}
