//! The distiller behind the `bns` command: training flow models, ground truth by an adaptive
//! solver, BNS distillation, evaluation and publishing. `main.rs` is only the command line;
//! everything it runs is here, one module per concept and one per subcommand (`commands`).
//!
//! It reads and writes models and solvers only through `web_sampler`'s types, so a file the
//! CLI writes is a file the page reads.

pub mod bns;
pub mod checkpoint;
pub mod classifier;
pub mod commands;
pub mod compute;
pub mod data;
pub mod dopri5;
pub mod files;
pub mod frechet;
pub mod metrics;
pub mod network;
pub mod network_args;
pub mod optim;
pub mod pairs;
pub mod picture;
pub mod plot;
pub mod progress;
pub mod psnr_cache;
pub mod shard;

// glibc's malloc costs up to 2× in candle's many small allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (whose deprecated entries keep their
/// places, so the numbers stay put).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells the allocator to keep memory that is freed for the next allocation instead of returning
/// it to the OS a second later (mimalloc 3's default). A U-Net training step frees and allocates
/// hundreds of megabytes of activations over more than a second; returned, every page came back
/// zeroed by the kernel, which took ~12% of the step. The process keeps its peak, which the next step needs again.
/// `bns` and the benchmarks call this first.
pub fn keep_freed_memory() {
    // SAFETY: setting an option is a plain store in mimalloc; any value is valid for this one.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reading an option is a plain load in mimalloc.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        // The default of mi_option_purge_delay in mimalloc 3's options.c (unless the environment
        // set it): this is the option named by the constant.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), 1000);
        }
        super::keep_freed_memory();
        assert_eq!(get(), -1);
    }
}
