/** What to do without WebGPU: shown by the page and by the worker's GPU report. */
export const NO_WEBGPU_ADVICE = [
  'Use a recent Chrome or Edge (version 113 or newer) on Windows, macOS or ChromeOS; Safari 26 and Firefox 141 on Windows also have WebGPU.',
  'On Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu turned on (and Vulkan drivers).',
  'Open the page over https or http://localhost: WebGPU exists only in secure contexts.',
  'No browser at hand? The same engine runs in Deno: npx tandem generate --model synthetic:opt-125m:1 --prompt "Hello"',
];
