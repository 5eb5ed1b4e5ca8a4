//! Where candle runs: `--device cpu|cuda` and `--threads`, shared by every command that trains or
//! distills.

use anyhow::{bail, Result};
use candle_core::Device;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// The CPU (default)
    Cpu,
    /// The first NVIDIA GPU (needs a build with `--features cuda`)
    Cuda,
}

impl DeviceKind {
    /// The flag's value: `cpu` or `cuda`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// Keeps candle's element-wise CPU operations on the calling thread (unless
/// `CANDLE_NUM_THREADS` says otherwise). candle runs them on a pool of its own whose workers spin
/// for a while after every operation; on two cores the spinning took the core that the U-Net's
/// convolutions and the matrix products (rayon, `--threads`) needed: a training step of the
/// default U-Net took 1.10 s with it and 0.88–1.02 s without, at 2 threads. Call before candle's
/// first operation (the pool is sized once).
pub fn candle_elementwise_on_the_calling_thread() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

#[derive(Args, Clone, Debug)]
pub struct ComputeArgs {
    /// Device for the heavy work: training, ground truth (`truth`: the candle network and
    /// DOPRI5's state on the GPU) and distillation
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// CPU threads (default: all cores; on a busy 2-core machine 1 is often as fast)
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ComputeArgs {
    /// `--threads` as given, refused if it is 0.
    fn given_threads(&self) -> Result<Option<usize>> {
        match self.threads {
            Some(0) => bail!("--threads must be at least 1"),
            given => Ok(given),
        }
    }

    /// The CPU threads to use: `--threads`, or every core when it is not given.
    pub fn thread_count(&self) -> Result<usize> {
        Ok(self
            .given_threads()?
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())))
    }

    /// Applies `--threads` and opens the device.
    pub fn open(&self) -> Result<Device> {
        if let Some(n) = self.given_threads()? {
            // candle's CPU kernels and its matrix multiply read this before their first use.
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
        candle_elementwise_on_the_calling_thread();
        match self.device {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda => {
                if !candle_core::utils::cuda_is_available() {
                    bail!(
                        "--device cuda: this bns was built without CUDA support; build it with \
                         `make cuda` (README, \"On an NVIDIA GPU\")"
                    );
                }
                // candle's error carries a backtrace after its first line: keep the line.
                Device::new_cuda(0).map_err(|e| {
                    let text = e.to_string();
                    anyhow::anyhow!(
                        "--device cuda: cannot open GPU 0: {}; check that `nvidia-smi` sees it and \
                         that libcuda.so.1 is the driver's",
                        text.lines().next().unwrap_or("unknown error")
                    )
                })
            }
        }
    }
}
