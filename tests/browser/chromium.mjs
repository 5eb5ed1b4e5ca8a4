// Launching Debian's Chromium for the browser tests: headless (the new headless mode), without
// Chromium's sandbox, with its background traffic and first-run work turned off (QUIC,
// component updates, sync, background networking), and, when WebGPU is wanted,
// --enable-unsafe-webgpu, which gives WebGPU on SwiftShader.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Launches headless Chromium (playwright gives every launch a fresh, temporary profile); `webgpu` adds --enable-unsafe-webgpu (SwiftShader's WebGPU). */
export async function launch({ webgpu = true } = {}) {
  const args = [
    '--headless=new',
    '--no-sandbox',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  return chromium.launch({ executablePath: CHROMIUM, args, headless: true });
}
