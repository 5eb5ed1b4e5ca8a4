//! The sampler on the GPU: the velocity network and the NS update in hand-written WGSL compute
//! shaders (`shaders/`), run through wgpu — Vulkan natively (Mesa's lavapipe on CPU-only
//! machines), the browser's WebGPU in wasm.
//!
//! * [`Gpu`]: the device, its limits, the compute pipelines (created once) and a buffer pool.
//! * [`kernels`]: one Rust op per kernel on shaped [`kernels::GpuTensor`]s, recorded into a
//!   [`kernels::Plan`] that becomes one submission.
//! * `network`: the velocity network behind one trait (weights uploaded once per model, one
//!   evaluation recorded into a plan); `mlp` and `unet`: the MLP and the U-Net, its
//!   implementations.
//! * [`sample`](mod@sample): a whole guided sample (every step) in as few submissions as the
//!   device's limits allow, read back once.
//! * `pool`: buffers kept between samples, leased per sample.
//!
//! Results agree with the CPU path to rounding (the dense layers sum in another order); the CPU
//! path stays the bit-exact reference. Nothing here panics on a missing adapter or a lost
//! device: both are [`Error`]s, and the caller falls back to the CPU path.

pub mod kernels;
mod mlp;
mod network;
mod pool;
pub mod sample;
mod unet;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::{Error, Result};
pub use kernels::Kernels;
use pool::Pool;
pub use sample::{sample, GpuSamples};

/// Origin of GPU errors.
const ORIGIN: &str = "gpu";

/// A GPU device ready to run the kernels.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    kernels: Kernels,
    /// How this device keeps the weights of a model stored in half precision: read as `f16`
    /// where the device has `shader-f16`, else packed in `u32` words.
    half_weights: kernels::Encoding,
    pool: Mutex<Pool>,
    /// The network of the last model used, by model id (uploaded once per model).
    model: Mutex<Option<network::CachedNetwork>>,
    lost: Arc<Mutex<Option<String>>>,
    busy: AtomicBool,
}

impl Gpu {
    /// Opens the first GPU adapter: Vulkan natively, WebGPU in a browser. Errors (never panics)
    /// when there is none, e.g. a browser without WebGPU or a machine without a Vulkan driver.
    pub async fn new() -> Result<Gpu> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        descriptor.backends = wgpu::Backends::VULKAN | wgpu::Backends::BROWSER_WEBGPU;
        let instance = wgpu::Instance::new(descriptor);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::new(ORIGIN, no_adapter(&e)))?;
        let info = adapter.get_info();
        #[cfg(target_arch = "wasm32")]
        let info = wgpu::AdapterInfo {
            name: if info.name.is_empty() {
                browser_adapter_name().await
            } else {
                info.name.clone()
            },
            ..info
        };
        let offered = adapter.limits();
        // WebGPU's default limits, except the two that bound the batch: as large as offered.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: offered.max_storage_buffer_binding_size,
            max_buffer_size: offered.max_buffer_size,
            ..wgpu::Limits::default()
        };
        // `shader-f16` where offered: half-precision weights are then read as WGSL f16.
        let features = adapter.features() & wgpu::Features::SHADER_F16;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("bns"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::new(
                    ORIGIN,
                    format!("the adapter {:?} gave no device: {e}", info.name),
                )
            })?;
        let lost = Arc::new(Mutex::new(None));
        let flag = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut lost) = flag.lock() {
                *lost = Some(format!("{reason:?}: {message}"));
            }
        });
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let kernels = Kernels::new(&device);
        if let Some(e) = scope.pop().await {
            return Err(Error::new(
                ORIGIN,
                format!("the kernels do not compile on {:?}: {e}", info.name),
            ));
        }
        let half_weights = if device.features().contains(wgpu::Features::SHADER_F16) {
            kernels::Encoding::F16
        } else {
            kernels::Encoding::PackedF16
        };
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            kernels,
            half_weights,
            pool: Mutex::new(Pool::default()),
            model: Mutex::new(None),
            lost,
            busy: AtomicBool::new(false),
        })
    }

    /// Adapter name and backend, e.g. `"llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)"`.
    pub fn adapter(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// The adapter's name alone, e.g. `"llvmpipe (LLVM 15.0.6, 256 bits)"` or, in a browser that
    /// gives no description, its architecture and vendor (`"swiftshader (google)"`).
    pub fn adapter_name(&self) -> &str {
        &self.info.name
    }

    /// How this device reads the weights of a model stored in half precision:
    /// [`Encoding::F16`](kernels::Encoding::F16) where it has `shader-f16`, else
    /// [`Encoding::PackedF16`](kernels::Encoding::PackedF16).
    pub fn half_weights(&self) -> kernels::Encoding {
        self.half_weights
    }

    /// A weight matrix of `shape` for the kernels that read weights (`linear`, `conv2d`): the
    /// values as `f32`, or, for a model stored in half precision (`dtype` F16, so every value
    /// is an `f16` already), as halves read in this device's [`half_weights`](Self::half_weights)
    /// encoding.
    pub(crate) fn weights(
        &self,
        label: &str,
        values: &[f32],
        shape: &[usize],
        dtype: crate::model::WeightDtype,
    ) -> Result<kernels::GpuTensor> {
        if dtype == crate::model::WeightDtype::F32 {
            return self.tensor(label, values, shape);
        }
        let halves: Vec<u8> = crate::model::f16_le_bytes(values).collect();
        let buffer = self.buffer_with(label, &halves, wgpu::BufferUsages::STORAGE);
        kernels::GpuTensor::halves(&buffer, shape, self.half_weights)
    }

    /// A storage tensor of `shape` holding `values` as `f32` (a network's weights, biases and
    /// tables, uploaded once).
    pub(crate) fn tensor(
        &self,
        label: &str,
        values: &[f32],
        shape: &[usize],
    ) -> Result<kernels::GpuTensor> {
        let buffer = self.buffer_with(
            label,
            bytemuck::cast_slice(values),
            wgpu::BufferUsages::STORAGE,
        );
        kernels::GpuTensor::new(&buffer, shape)
    }

    /// The software renderer behind the adapter, if it is one (`"SwiftShader"`, `"llvmpipe"`,
    /// `"lavapipe"`, or the adapter's name for another CPU or fallback adapter): such an adapter
    /// runs the kernels on the CPU, slower than the CPU path.
    pub fn software_renderer(&self) -> Option<String> {
        software_renderer(&self.info)
    }

    /// Why the device was lost, if it was; a lost device never comes back.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|lost| lost.clone())
    }

    /// Destroys the device (as a driver reset would); later calls fail with "device lost".
    pub fn destroy(&self) {
        self.device.destroy();
        if let Ok(mut lost) = self.lost.lock() {
            lost.get_or_insert_with(|| "destroyed".to_string());
        }
    }

    /// A buffer holding `contents` (at least 4 bytes, zero beyond the contents), written through
    /// the queue (unlike `create_buffer_init`, this cannot panic when the device is lost).
    pub(crate) fn buffer_with(
        &self,
        label: &str,
        contents: &[u8],
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let size = (contents.len() as u64).max(4).div_ceil(4) * 4;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if contents.len().is_multiple_of(4) {
            self.queue.write_buffer(&buffer, 0, contents);
        } else {
            let mut padded = contents.to_vec();
            padded.resize(size as usize, 0);
            self.queue.write_buffer(&buffer, 0, &padded);
        }
        buffer
    }

    /// The same device reading half-precision weights as `encoding` (to test every variant
    /// on one adapter; [`Encoding::F16`](kernels::Encoding::F16) needs `shader-f16`).
    #[cfg(test)]
    pub(crate) fn with_half_weights(&self, encoding: kernels::Encoding) -> Gpu {
        let mut gpu = self.with_binding_limit(self.limits.max_storage_buffer_binding_size);
        gpu.half_weights = encoding;
        gpu
    }

    /// Whether the device has `shader-f16`.
    #[cfg(test)]
    pub(crate) fn has_shader_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// The same device with a smaller storage-binding limit, to exercise batch splitting.
    #[cfg(test)]
    pub(crate) fn with_binding_limit(&self, bytes: u64) -> Gpu {
        let mut limits = self.limits.clone();
        limits.max_storage_buffer_binding_size = bytes;
        Gpu {
            device: self.device.clone(),
            queue: self.queue.clone(),
            info: self.info.clone(),
            limits,
            kernels: Kernels::new(&self.device),
            half_weights: self.half_weights,
            pool: Mutex::new(Pool::default()),
            model: Mutex::new(None),
            lost: Arc::clone(&self.lost),
            busy: AtomicBool::new(false),
        }
    }

    /// The error for work on a lost device.
    fn check_alive(&self) -> Result<()> {
        match self.lost() {
            Some(reason) => Err(Error::new(
                ORIGIN,
                format!("the GPU device was lost ({reason})"),
            )),
            None => Ok(()),
        }
    }

    /// Runs `work` — which writes buffers and submits command buffers through the function it
    /// is given — with validation and out-of-memory errors captured, then reads `readback` (a
    /// MAP_READ buffer) back once the GPU is done. Returns the bytes and what `work` returned.
    pub(crate) async fn run<T>(
        &self,
        readback: &wgpu::Buffer,
        work: impl FnOnce(&mut dyn FnMut(wgpu::CommandBuffer)) -> Result<T>,
    ) -> Result<(Vec<u8>, T)> {
        self.check_alive()?;
        let memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut submit = |commands: wgpu::CommandBuffer| {
            self.queue.submit([commands]);
        };
        let outcome = work(&mut submit);
        let mapped = Oneshot::default();
        if outcome.is_ok() {
            let sender = mapped.clone();
            readback.map_async(wgpu::MapMode::Read, .., move |result| sender.send(result));
        }
        let validation = validation.pop();
        let memory = memory.pop();
        let outcome = outcome?;
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::new(ORIGIN, format!("waiting for the GPU failed: {e}")))?;
        if let Some(e) = validation.await {
            return Err(Error::new(ORIGIN, format!("GPU validation error: {e}")));
        }
        if let Some(e) = memory.await {
            return Err(Error::new(
                ORIGIN,
                format!("the GPU ran out of memory: {e}"),
            ));
        }
        let mapped = mapped.await;
        self.check_alive()?;
        mapped.map_err(|e| Error::new(ORIGIN, format!("reading the result back failed: {e}")))?;
        let bytes = readback
            .get_mapped_range(..)
            .map_err(|e| Error::new(ORIGIN, format!("reading the result back failed: {e}")))?
            .to_vec();
        readback.unmap();
        Ok((bytes, outcome))
    }

    /// Whether a sample is running on this device right now.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Marks the device busy for the life of the guard; a second concurrent call is an error
    /// rather than a corrupted buffer pool.
    pub(crate) fn claim(&self) -> Result<BusyGuard<'_>> {
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(Error::new(
                ORIGIN,
                "the GPU is still generating: wait for the previous call to finish",
            ));
        }
        Ok(BusyGuard(&self.busy))
    }
}

/// Software renderers by a word of their adapter names, and the name they go by.
const SOFTWARE_RENDERERS: [(&str, &str); 3] = [
    ("swiftshader", "SwiftShader"),
    ("llvmpipe", "llvmpipe"),
    ("lavapipe", "lavapipe"),
];

/// The software renderer an adapter is, if it is one: by its name, or by its type (wgpu reports a
/// browser's fallback adapter as [`wgpu::DeviceType::Cpu`]).
fn software_renderer(info: &wgpu::AdapterInfo) -> Option<String> {
    let name = info.name.to_lowercase();
    if let Some((_, known)) = SOFTWARE_RENDERERS
        .iter()
        .find(|(word, _)| name.contains(word))
    {
        return Some((*known).to_string());
    }
    (info.device_type == wgpu::DeviceType::Cpu).then(|| {
        if info.name.is_empty() {
            "a fallback adapter".to_string()
        } else {
            info.name.clone()
        }
    })
}

/// The adapter's name from the browser's `GPUAdapterInfo` (wgpu keeps only its description,
/// which Chromium leaves empty): the description, else "architecture (vendor)", e.g.
/// "swiftshader (google)"; "" when the browser says nothing. It asks for the adapter again, as
/// wgpu did.
#[cfg(target_arch = "wasm32")]
async fn browser_adapter_name() -> String {
    use wasm_bindgen::{JsCast, JsValue};
    let get = |target: &JsValue, key: &str| {
        js_sys::Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    };
    let gpu = get(&get(&js_sys::global(), "navigator"), "gpu");
    let Ok(request) = get(&gpu, "requestAdapter").dyn_into::<js_sys::Function>() else {
        return String::new();
    };
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(
        &options,
        &JsValue::from_str("powerPreference"),
        &JsValue::from_str("high-performance"),
    );
    let Ok(promise) = request.call1(&gpu, &options) else {
        return String::new();
    };
    let Ok(adapter) =
        wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&promise)).await
    else {
        return String::new();
    };
    let info = get(&adapter, "info");
    let text = |key| get(&info, key).as_string().unwrap_or_default();
    let (description, architecture, vendor) =
        (text("description"), text("architecture"), text("vendor"));
    match (
        description.is_empty(),
        architecture.is_empty(),
        vendor.is_empty(),
    ) {
        (false, _, _) => description,
        (true, false, false) => format!("{architecture} ({vendor})"),
        (true, false, true) => architecture,
        _ => vendor,
    }
}

/// Why there is no adapter: wgpu's own message natively.
#[cfg(not(target_arch = "wasm32"))]
fn no_adapter(error: &wgpu::RequestAdapterError) -> String {
    format!("no GPU adapter: {error}")
}

/// Why there is no adapter, in the browser's terms rather than wgpu's list of native backends.
#[cfg(target_arch = "wasm32")]
fn no_adapter(_: &wgpu::RequestAdapterError) -> String {
    use wasm_bindgen::JsValue;
    let navigator = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("navigator"));
    let has_gpu = navigator
        .and_then(|n| js_sys::Reflect::get(&n, &JsValue::from_str("gpu")))
        .is_ok_and(|gpu| !gpu.is_undefined() && !gpu.is_null());
    if has_gpu {
        "no GPU adapter: navigator.gpu.requestAdapter() found none (Chromium on Linux may need --enable-unsafe-webgpu)".into()
    } else {
        "this browser has no WebGPU: navigator.gpu is missing".into()
    }
}

/// Clears [`Gpu`]'s busy flag when dropped.
pub(crate) struct BusyGuard<'a>(&'a AtomicBool);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A one-value channel whose receiving end is a future (what `map_async`'s callback reports).
struct Oneshot<T> {
    slot: Arc<Mutex<(Option<T>, Option<Waker>)>>,
}

impl<T> Default for Oneshot<T> {
    fn default() -> Self {
        Oneshot {
            slot: Arc::new(Mutex::new((None, None))),
        }
    }
}

impl<T> Clone for Oneshot<T> {
    fn clone(&self) -> Self {
        Oneshot {
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<T> Oneshot<T> {
    fn send(&self, value: T) {
        if let Ok(mut slot) = self.slot.lock() {
            slot.0 = Some(value);
            if let Some(waker) = slot.1.take() {
                waker.wake();
            }
        }
    }
}

impl<T> Future for Oneshot<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Ok(mut slot) = self.slot.lock() else {
            return Poll::Pending;
        };
        match slot.0.take() {
            Some(value) => Poll::Ready(value),
            None => {
                slot.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Runs a future to completion on this thread (native only: tests, benchmarks, the CLI).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: Future>(future: F) -> F::Output {
    pollster::block_on(future)
}
