// Launching Debian's Chromium for the browser tests (flags from DESIGN §6).
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
